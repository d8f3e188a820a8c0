"""SVG snapshots of the Setup, Training and Help screens at 80x24 and 120x40.

Everything that could vary between machines or runs is pinned: the working folder (the
default data folders exist in it), TORCH_HOME, and the training events, which are fixed
values fed to the screen instead of a live run. Update with --snapshot-update after a
deliberate change and look at the SVGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftui.core.events import (
    BatchEnd,
    CheckpointSaved,
    EpochEnd,
    LogMessage,
    RunFailed,
    RunFinished,
    RunStarted,
)
from dftui.core.synthetic import SyntheticSpec, make_dataset
from dftui.ui.app import DftuiApp
from dftui.ui.screens.training import TrainingScreen
from dftui.ui.widgets.run_view import RunView

SIZES = [(80, 24), (120, 40)]
IDS = ["80x24", "120x40"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_dataset(tmp_path / "processed_data" / "train_cropped", SyntheticSpec(12, 32, seed=1))
    make_dataset(tmp_path / "processed_data" / "val_cropped", SyntheticSpec(6, 32, seed=2))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent/torch-home")
    # The Device field lists what the machine has ("auto (cuda)" on a GPU box): pin a CPU-only one.
    from dftui.core import devices

    monkeypatch.setattr(devices, "list_devices", lambda: [devices.DeviceInfo("cpu", "cpu")])
    return tmp_path


def _events(finished: bool) -> list:
    config = {"backbone": "mobilenet_v2", "epochs": 3, "batch_size": 8, "lr": 1e-4}
    events: list = [
        RunStarted("run-1", "runs/run-1", config, "cpu", "CPU", "fp32", True, 24, 12,
                   {"real": 12, "fake": 12}, {"real": 6, "fake": 6}, 3, 0, 2_226_434, 2),
        LogMessage("warning", "skipping unreadable image train/real/broken.png: empty file"),
    ]
    losses = [0.71, 0.66, 0.60, 0.52, 0.47, 0.41, 0.35, 0.31, 0.28]
    metrics = [(0.61, 0.58, 0.75), (0.45, 0.49, 0.833), (0.33, 0.41, 0.917)]
    step = 0
    for epoch in range(1, 4):
        if not finished and epoch == 3:
            events.append(BatchEnd("train", 3, 3, 2, 3, losses[step], 123.0, 0.12, 20.0, 9.0, 812.0))
            break
        for batch in range(1, 4):
            events.append(BatchEnd("train", epoch, 3, batch, 3, losses[step], 123.0, 0.12,
                                   step * 2.0, 30.0 - step * 2, 812.0))
            step += 1
        train_loss, val_loss, acc = metrics[epoch - 1]
        best = epoch if acc >= 0.75 else 1
        events.append(CheckpointSaved("best", "weights/mobilenet_v2_deepfake.pth", epoch))
        events.append(EpochEnd(epoch, 3, train_loss, val_loss, acc, acc, acc, acc, 6.0, 123.0,
                               0.12, True, best))
    if finished:
        events.append(RunFinished("finished", 3, 3, 0.917, "weights/mobilenet_v2_deepfake.pth",
                                  "weights/mobilenet_v2_deepfake.json", "runs/run-1", 18.0))
    return events


async def _show_training(pilot, events, running: bool) -> None:
    app = pilot.app
    screen = await app.open_screen("training")
    assert isinstance(screen, TrainingScreen)
    if running:
        screen.running = True
        screen._show_progress(True)
    for event in events:
        screen.show_event(event)
    screen.refresh_bindings()
    await pilot.pause()
    screen.query_one(RunView)._redraw()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_snapshot_setup(snap_compare, workdir: Path, size) -> None:
    app = DftuiApp()

    async def ready(pilot) -> None:
        setup = pilot.app.screen
        while pilot.app.devices is None or not all(setup.scans.values()):
            await pilot.pause(0.05)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_snapshot_training_running(snap_compare, size) -> None:
    app = DftuiApp(load_torch=False)

    async def run_before(pilot) -> None:
        await _show_training(pilot, _events(finished=False), running=True)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_snapshot_training_finished(snap_compare, size) -> None:
    app = DftuiApp(load_torch=False)

    async def run_before(pilot) -> None:
        await _show_training(pilot, _events(finished=True), running=False)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_snapshot_training_failed(snap_compare) -> None:
    app = DftuiApp(load_torch=False)
    failed = RunFailed("training data: data/train has no fake/ folder (found: real); a data "
                       "set folder holds real/ and fake/ subfolders of face crops")

    async def run_before(pilot) -> None:
        await _show_training(pilot, [failed], running=False)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_help(snap_compare) -> None:
    app = DftuiApp(load_torch=False)
    assert snap_compare(app, terminal_size=(80, 24), press=["f1"])
