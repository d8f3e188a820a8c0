"""SVG snapshots of every screen, one class per screen, at 80×24 and a large size.

All the dashboard's snapshot tests live here (their pictures in __snapshots__/test_snapshots/,
named Class.test[size].svg): a screen's tests go in its class. Everything that could vary
between machines or runs is pinned: working folders and homes with fixed contents under
relative paths, fixed training events and run records instead of live runs, a CPU-only
device list, the terminal's cell size. Update only the snapshots you meant to change
(``--snapshot-update`` on those tests) and look at the SVGs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from textual.widgets import Input, Select

from dftui.core.events import RunFailed
from dftui.core.synthetic import SyntheticSpec, make_dataset
from dftui.ui.app import DftuiApp
from dftui.ui.screens.classify import images_in
from dftui.ui.screens.runs import RunDetailScreen
from tests.ui.helpers import pin_cell_size, wait_for
from tests.ui.scenes import show_training, training_events
from tests.ui.test_classify import make_constant_weights, open_classify, verdict_for, wait_model
from tests.ui.test_classify_scene import _judged, _open, make_media_home
from tests.ui.test_runs import write_record
from tests.ui.test_runs_manage import write_runs
from tests.ui.test_small_screens import make_weights_home

SIZES = [(80, 24), (120, 40)]
IDS = ["80x24", "120x40"]
# Prepare and Evaluate have more to lay out: their large size is larger.
WIDE = [(80, 24), (160, 48)]
WIDE_IDS = ["80x24", "160x48"]


def _app(tmp_path: Path, initial: str = "runs", **kwargs) -> DftuiApp:
    return DftuiApp(initial=initial, load_torch=False, settings_path=tmp_path / "s.json", **kwargs)


@contextmanager
def _utc_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> Iterator[None]:
    """DFTUI_HOME at ``home`` and dates shown in UTC, undone after the test (tzset both ways:
    time's zone is process state that monkeypatch alone does not restore)."""
    monkeypatch.setenv("DFTUI_HOME", str(home))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# -- fixtures: fixed homes -----------------------------------------------------------------
@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding Setup's default data folders; no torch cache."""
    make_dataset(tmp_path / "processed_data" / "train_cropped", SyntheticSpec(12, 32, seed=1))
    make_dataset(tmp_path / "processed_data" / "val_cropped", SyntheticSpec(6, 32, seed=2))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent/torch-home")
    # The Device field lists what the machine has ("auto (cuda)" on a GPU box): pin a CPU-only one.
    from dftui.core import devices

    monkeypatch.setattr(devices, "list_devices", lambda: [devices.DeviceInfo("cpu", "cpu")])
    return tmp_path


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory: pytest.TempPathFactory, dataset) -> Path:
    """Three weights of fixed dates and test / val folders (Evaluate)."""
    return make_weights_home(tmp_path_factory.mktemp("weights-home"), dataset["val"])


@pytest.fixture(scope="module")
def classify_home(tmp_path_factory: pytest.TempPathFactory, dataset) -> Path:
    """Weights with fixed metadata (no dates of today), a reference-format file and images,
    all under relative paths, so nothing in the picture depends on the machine."""
    home = tmp_path_factory.mktemp("snap")
    (home / "weights").mkdir()
    model = home / "weights" / "mobilenet_v2_deepfake.pth"
    make_constant_weights(model, 0.8)
    meta = {
        "format": 1, "backbone": "mobilenet_v2", "classes": {"real": 0, "fake": 1},
        "preprocessing": {"input_size": 32, "mean": [0.485, 0.456, 0.406],
                          "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"},
        "created": "2026-01-02T03:04:05+00:00", "best_val_accuracy": 0.975,
    }
    model.with_suffix(".json").write_text(json.dumps(meta))
    shutil.copy(model, home / "weights" / "reference.pth")
    # No metadata: the list dates it by the file's time; pin it (noon UTC, 2 January 2026).
    os.utime(home / "weights" / "reference.pth", (1767355200, 1767355200))
    shutil.copytree(dataset["val"], home / "processed_data" / "val_cropped")
    return home


@pytest.fixture(scope="module")
def media_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A fixed folder name: the file tree shows it, and mktemp's numbering would depend on
    # which other tests made a folder of the same name first.
    home = tmp_path_factory.mktemp("media") / "scene0"
    home.mkdir()
    return make_media_home(home)


@pytest.fixture
def at_media_home(media_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(media_home)
    pin_cell_size()
    return media_home


@pytest.fixture
def fixed_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Three hand-written run records (finished, stopped and resumable, failed)."""
    home = tmp_path / "home"
    runs = home / "runs"
    common = {"train_dir": "processed_data/train_cropped", "val_dir": "processed_data/val_cropped"}
    write_record(runs, "20260102-030405-mobilenet_v2", {
        **common, "status": "finished", "backbone": "mobilenet_v2",
        "started": "2026-01-02T03:04:05+00:00", "epochs": 3, "epochs_completed": 3,
        "best_epoch": 3, "best_val_accuracy": 0.95,
        "weights_path": "weights/mobilenet_v2_deepfake.pth"},
        [(0.62, 0.55, 0.80), (0.41, 0.38, 0.90), (0.30, 0.29, 0.95)])
    write_record(runs, "20260103-101500-xception", {
        **common, "status": "stopped", "backbone": "xception",
        "started": "2026-01-03T10:15:00+00:00", "epochs": 15, "epochs_completed": 2,
        "best_epoch": 2, "best_val_accuracy": 0.875,
        "weights_path": "weights/xception_deepfake.pth"},
        [(0.66, 0.60, 0.70), (0.50, 0.45, 0.875)], resumable=True)
    write_record(runs, "20260104-080000-mobilenet_v2", {
        **common, "status": "failed", "backbone": "mobilenet_v2",
        "started": "2026-01-04T08:00:00+00:00", "epochs": 15, "epochs_completed": 0,
        "message": "processed_data/train_cropped has no fake/ folder"}, [])
    with _utc_home(monkeypatch, home):
        yield home


@pytest.fixture
def managed_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The run-management records (names, tags, settings that differ), under a relative
    path: the pictures must not hold the temporary folder's name."""
    monkeypatch.chdir(tmp_path)
    home = Path("home")
    write_runs(home)
    with _utc_home(monkeypatch, home):
        yield tmp_path / home


# -- the screens ---------------------------------------------------------------------------
class TestSetup:
    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_form(self, snap_compare, workdir: Path, size) -> None:
        app = DftuiApp()

        async def ready(pilot) -> None:
            setup = pilot.app.screen
            while pilot.app.devices is None or not all(setup.scans.values()):
                await pilot.pause(0.05)
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=ready)


class TestTraining:
    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_running(self, snap_compare, size) -> None:
        app = DftuiApp(load_torch=False)

        async def run_before(pilot) -> None:
            await show_training(pilot, training_events(finished=False), running=True)

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_finished(self, snap_compare, size) -> None:
        app = DftuiApp(load_torch=False)

        async def run_before(pilot) -> None:
            await show_training(pilot, training_events(finished=True), running=False)

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    def test_failed(self, snap_compare) -> None:
        app = DftuiApp(load_torch=False)
        failed = RunFailed(
            message="training data: data/train has no fake/ folder (found: real); a data "
            "set folder holds real/ and fake/ subfolders of face crops"
        )

        async def run_before(pilot) -> None:
            await show_training(pilot, [failed], running=False)

        assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)

    def test_maximised_chart(self, snap_compare) -> None:
        app = DftuiApp(load_torch=False)

        async def run_before(pilot) -> None:
            await show_training(pilot, training_events(True), running=False)
            pilot.app.screen.query_one("#epoch-table").focus()
            await pilot.press("f", "f")  # the accuracy chart, full screen
            await pilot.pause(0.3)

        assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)

    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_hardware_panel(self, snap_compare, monkeypatch, size) -> None:
        from dftui.ui.widgets import hardware
        from dftui.ui.widgets.hardware import HardwarePanel
        from tests.ui.test_hardware_panel import FakeSampler

        monkeypatch.setattr(HardwarePanel, "sampler_factory", staticmethod(FakeSampler))
        monkeypatch.setattr(hardware, "SAMPLE_EVERY_S", 0.05)
        app = DftuiApp(load_torch=False)

        async def run_before(pilot) -> None:
            await show_training(pilot, training_events(False), running=True)
            panel = pilot.app.screen.query_one(HardwarePanel)
            await wait_for(pilot, lambda: panel.samples >= 20, 10, "full sparklines")
            panel.styles.display = "block"
            pilot.app.screen.query_one(HardwarePanel).tick = lambda: None  # hold still
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=run_before)


class TestHelp:
    def test_help(self, snap_compare, tmp_path) -> None:
        # Over the idle Training screen: its lines do not change when a training option is
        # added (the Setup form showed through the help's edges, and broke this picture).
        app = _app(tmp_path, "training")
        assert snap_compare(app, terminal_size=(80, 24), press=["f1"])


class TestPrepare:
    @pytest.mark.parametrize("size", WIDE, ids=WIDE_IDS)
    def test_dataset_source(self, snap_compare, tmp_path, monkeypatch, size) -> None:
        monkeypatch.chdir(tmp_path)
        app = _app(tmp_path, "prepare")

        async def run_before(pilot) -> None:
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    def test_folder_source(self, snap_compare, tmp_path, monkeypatch) -> None:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "lab" / "real").mkdir(parents=True)
        (tmp_path / "lab" / "fake").mkdir()
        app = DftuiApp(initial="prepare", load_torch=False,
                       settings_path=tmp_path / "settings.json")

        async def run_before(pilot) -> None:
            await pilot.pause()  # run_before starts before the screen is mounted
            screen = app.screen
            screen.query_one("#source", Select).value = "folder"
            await pilot.pause()
            screen.query_one("#root", Input).value = "lab"
            screen._discover()
            await pilot.pause()

        assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


class TestEvaluate:
    @pytest.mark.parametrize("size", WIDE, ids=WIDE_IDS)
    def test_idle(self, snap_compare, weights_home, tmp_path, monkeypatch, size) -> None:
        monkeypatch.chdir(weights_home)
        app = _app(tmp_path, "evaluate")

        async def run_before(pilot) -> None:
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    @pytest.mark.parametrize("size", WIDE, ids=WIDE_IDS)
    def test_results(self, snap_compare, weights_home, tmp_path, monkeypatch, size) -> None:
        import dftui.core.predict as predict

        class Fp32(predict.Predictor):  # the same scores on every CPU (bf16 rounds differently)
            def __init__(self, weights, device="auto", **kw):
                super().__init__(weights, "cpu", precision="fp32")

        monkeypatch.setattr(predict, "Predictor", Fp32)
        # No record: its folder (a temporary path) would be in the status line.
        monkeypatch.setattr("dftui.core.evaluate.save_evaluation", lambda *a, **k: None)
        monkeypatch.chdir(weights_home)
        pin_cell_size()
        app = _app(tmp_path, "evaluate")

        async def run_before(pilot) -> None:
            screen = app.screen
            await pilot.pause()
            await pilot.press("w", "enter", "r")
            await wait_for(pilot, lambda: not screen.running and screen.results, what="the results")
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=run_before)


class TestClassify:
    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_start(self, snap_compare, classify_home, monkeypatch, tmp_path, size) -> None:
        monkeypatch.chdir(classify_home)
        pin_cell_size()
        app = _app(tmp_path, "classify")

        async def run_before(pilot) -> None:
            await pilot.pause()
            tree = app.screen.query_one("#image-tree")
            await wait_for(pilot, lambda: len(tree.root.children) == 2, what="the tree")
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_verdict(self, snap_compare, classify_home, monkeypatch, tmp_path, size) -> None:
        from dftui.core.predict import Predictor

        monkeypatch.chdir(classify_home)
        pin_cell_size()
        original = Predictor.predict_image

        def pinned(self, image):
            # The model really runs, but what it says is pinned for the picture: latency is a
            # timing, and even a constant head's p(fake) differs in the last digit between fp32
            # and bf16 (the automatic precision depends on the CPU).
            made = original(self, image)
            assert made.label == "fake" and abs(made.p_fake - 0.8) < 0.01, made
            return dataclasses.replace(made, p_real=0.2, p_fake=0.8, latency_ms=4.2)

        monkeypatch.setattr(Predictor, "predict_image", pinned)
        app = _app(tmp_path)
        image = Path("processed_data/val_cropped/fake") / images_in(
            classify_home / "processed_data/val_cropped/fake")[0].name

        async def run_before(pilot) -> None:
            screen = await open_classify(app, pilot, weights=Path("weights/mobilenet_v2_deepfake.pth"),
                                         device="cpu")
            await wait_model(pilot, screen)
            tree = screen.query_one("#image-tree")
            await wait_for(pilot, lambda: len(tree.root.children) == 2, what="the tree")
            screen.show_image(image)
            await wait_for(pilot, lambda: verdict_for(screen, image), what="the verdict")
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_photo_with_boxes(self, snap_compare, at_media_home: Path, tmp_path: Path, size) -> None:
        app = _app(tmp_path)

        async def run_before(pilot) -> None:
            screen = await _open(app, pilot)
            tree = screen.query_one("#image-tree")
            await wait_for(pilot, lambda: len(tree.root.children) == 2, what="the tree")
            await _judged(pilot, screen, Path("media/group.png"))

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    def test_video(self, snap_compare, at_media_home: Path, tmp_path: Path) -> None:
        app = _app(tmp_path)

        async def run_before(pilot) -> None:
            screen = await _open(app, pilot)
            tree = screen.query_one("#image-tree")
            await wait_for(pilot, lambda: len(tree.root.children) == 2, what="the tree")
            await _judged(pilot, screen, Path("media/clip.mp4"))

        assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


class TestRuns:
    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_list(self, snap_compare, fixed_runs, tmp_path, size) -> None:
        app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")

        async def run_before(pilot) -> None:
            await pilot.pause()
            assert app.screen.query_one("#runs-table").row_count == 3
            await pilot.press("down")  # the stopped (resumable) run: its hints show

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_detail(self, snap_compare, fixed_runs, tmp_path, size) -> None:
        app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")

        async def run_before(pilot) -> None:
            await pilot.pause()
            await pilot.press("down", "down", "enter")  # the finished run, oldest
            await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                           and app.screen.events_fed > 0, what="the run detail")
            await pilot.pause(0.5)  # the charts redraw on a timer

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_compare(self, snap_compare, managed_runs, tmp_path, size) -> None:
        app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")

        async def run_before(pilot) -> None:
            await pilot.pause()
            await pilot.press("space", "space", "space", "v")
            await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), 5, "compare")
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=run_before)

    @pytest.mark.parametrize("key", ["n", "delete"])
    def test_dialogs(self, snap_compare, managed_runs, tmp_path, key) -> None:
        app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")

        async def run_before(pilot) -> None:
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()

        assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)

    @pytest.mark.parametrize("size", SIZES, ids=IDS)
    def test_status_header_over_runs(self, snap_compare, managed_runs, tmp_path, size) -> None:
        """A run going on the Training screen shows in the header line of the others."""
        app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")

        async def run_before(pilot) -> None:
            training = await pilot.app.open_screen("training")
            training.running = True
            for event in training_events(finished=False):
                training.show_event(event)
            await pilot.app.open_screen("runs")
            await wait_for(pilot, lambda: pilot.app.screen.query_one("NavBar").status is not None,
                           5, "the header line")
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=run_before)
