"""The Training screen driven through the real app: a run set up on Setup from the keyboard,
watched to the end (table, charts, weights), stopped mid-run, and a failing run whose message
shows while the app stays usable. The engine is the real fit() on a tiny generated set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from dftui.core.events import RunFailed, RunFinished
from dftui.core.events import format_duration as fmt_duration
from dftui.ui.app import DftuiApp
from dftui.ui.screens.setup import SetupScreen
from dftui.ui.screens.training import TrainingScreen
from dftui.ui.widgets.run_view import RunView, smooth
from tests.ui.helpers import one_thread, run_config, wait_for


@pytest.fixture(autouse=True)
def _threads() -> None:
    one_thread()


def _set(app: DftuiApp, widget_id: str, value: str) -> None:
    app.screen.query_one(f"#{widget_id}", Input).value = value


async def test_run_from_setup_to_weights(dataset, standin_weights, tmp_path: Path) -> None:
    weights = tmp_path / "out" / "model.pth"
    app = DftuiApp()
    async with app.run_test(size=(100, 32)) as pilot:
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        device = setup.query_one("#device")
        await wait_for(pilot, lambda: "cpu" in [v for _, v in device._options],
                       what="torch to load and the device list to fill")
        _set(app, "train_dir", str(dataset["train"]))
        _set(app, "val_dir", str(dataset["val"]))
        _set(app, "epochs", "2")
        _set(app, "batch_size", "8")
        _set(app, "img_size", "32")
        _set(app, "workers", "0")
        _set(app, "weights", str(weights))
        setup.query_one("#pretrained").value = "file"
        _set(app, "pretrained_path", str(standin_weights))
        device.value = "cpu"
        # The data set summaries appear once the folders are scanned.
        await wait_for(pilot, lambda: all(setup.scans.values()), what="folder scans")
        note = str(setup.query_one("#train_dir-note", Static).render())
        assert "20 real, 20 fake" in note
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="training screen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.final is not None, what="the run to end")
        assert isinstance(screen.final, RunFinished), screen.final
        assert screen.final.status == "finished"
        view = screen.query_one(RunView)
        assert sorted(view.rows) == [1, 2]
        assert len(view.batch_loss) >= 2  # per-batch points for the loss chart
        table = view.query_one("#epoch-table")
        assert table.row_count == 2
        best = [table.get_cell(str(e), "best") for e in (1, 2)]
        assert best.count("★") == 1
        assert weights.is_file() and weights.with_suffix(".json").is_file()
        assert screen.weights_path == str(weights)
        outcome = str(screen.query_one("#outcome", Static).render())
        assert "Finished 2 epoch(s)" in outcome and str(weights) in outcome
        # The choices were remembered for the next launch.
        saved = json.loads(app.settings.path.read_text())
        assert saved["setup"]["epochs"] == "2"
        # "Keep running if I disconnect" is on by default: this run was a background one.
        assert saved["setup"]["detach"] is True and screen.background
        assert saved["setup"]["train_dir"] == str(dataset["train"])
        # One key opens the classifier with those weights.
        await pilot.press("c")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ClassifyScreen",
                       what="classify screen")
        assert app.screen._initial_weights == weights  # type: ignore[attr-defined]


async def test_stop_mid_run_keeps_best(dataset, standin_weights, tmp_path: Path) -> None:
    app = DftuiApp()
    async with app.run_test(size=(80, 24)) as pilot:
        config = run_config(dataset, standin_weights, tmp_path, epochs=40)
        assert await app.start_training(config, detach=False)
        screen = app.screen
        assert isinstance(screen, TrainingScreen)
        assert app.run_active
        # Let one epoch finish so there are best weights to keep, then stop.
        await wait_for(pilot, lambda: len(screen.query_one(RunView).rows) >= 1, what="epoch 1")
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.final is not None, what="the stop")
        assert isinstance(screen.final, RunFinished)
        assert screen.final.status == "stopped"
        assert screen.final.epochs_completed < 40
        assert Path(screen.final.weights_path).is_file()
        assert not app.run_active
        assert "Stopped" in str(screen.query_one("#outcome", Static).render())


async def test_failed_run_shows_message_and_app_stays_usable(dataset, standin_weights,
                                                             tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    (bad / "real").mkdir(parents=True)
    for src in sorted((dataset["train"] / "real").iterdir())[:3]:
        (bad / "real" / src.name).write_bytes(src.read_bytes())
    app = DftuiApp()
    async with app.run_test(size=(80, 24)) as pilot:
        config = run_config(dataset, standin_weights, tmp_path, train_dir=bad)
        await app.start_training(config, detach=False)
        screen = app.screen
        await wait_for(pilot, lambda: screen.final is not None, what="the failure")
        assert isinstance(screen.final, RunFailed)
        outcome = str(screen.query_one("#outcome", Static).render())
        assert "The run failed" in outcome
        assert "has no fake/ folder" in outcome
        assert not app.run_active
        # Still usable: switch screens and start a good run.
        await pilot.press("f2")
        assert isinstance(app.screen, SetupScreen)
        await pilot.press("f3")
        assert app.screen is screen
        await app.start_training(run_config(dataset, standin_weights, tmp_path, epochs=1),
                                 detach=False)
        await wait_for(pilot, lambda: isinstance(screen.final, RunFinished), what="second run")


async def test_quit_asks_while_a_run_is_active(dataset, standin_weights, tmp_path: Path) -> None:
    app = DftuiApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.start_training(run_config(dataset, standin_weights, tmp_path, epochs=40),
                                 detach=False)
        screen = app.screen
        await wait_for(pilot, lambda: screen.started is not None, what="run start")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmScreen"
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is screen and app.run_active
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.final is not None, what="the interrupted run")
        run_dir = Path(screen.final.run_dir)
    assert screen.final.status == "interrupted"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"


def test_helpers() -> None:
    assert fmt_duration(None) == "--:--"
    assert fmt_duration(75) == "01:15"
    assert fmt_duration(3725) == "1:02:05"
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])
    values = smooth([0.0, 10.0])
    assert 0.0 < values[1] < 10.0
