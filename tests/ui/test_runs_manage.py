"""Run management on the Runs screen, through the real app and the keyboard: compare marked
runs (overlaid curves, sortable columns of the settings that differ), name/tags/note saved
and read back, archive and show archived, delete with a confirmation that keeps the weights
unless asked, copy the folder path, export CSV + SVG. Hand-written records, no training."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.widgets import Checkbox, Input

from dftui.core.run_manage import read_user
from dftui.ui.app import DftuiApp
from dftui.ui.screens.compare import CompareScreen, CompareView
from dftui.ui.screens.run_dialogs import DeleteRunScreen, EditRunScreen, ExportScreen
from dftui.ui.screens.runs import RunDetailScreen, RunsScreen
from dftui.ui.widgets.charts import ChartPanel
from tests.ui.helpers import wait_for
from tests.ui.test_runs import write_record

RUNS = [
    # name, backbone, status, epochs (train loss, val loss, acc), config
    ("20260102-030405-mobilenet_v2", "mobilenet_v2", "finished",
     [(0.62, 0.55, 0.80), (0.41, 0.38, 0.90), (0.30, 0.29, 0.95)],
     {"img_size": 64, "batch_size": 8, "lr": 1e-4, "augment": "none"}),
    ("20260103-101500-xception", "xception", "stopped",
     [(0.66, 0.60, 0.70), (0.50, 0.45, 0.875)],
     {"img_size": 96, "batch_size": 16, "lr": 3e-4, "augment": "light"}),
    ("20260104-080000-mobilenet_v2", "mobilenet_v2", "finished",
     [(0.7, 0.65, 0.6), (0.5, 0.5, 0.7), (0.4, 0.45, 0.85), (0.35, 0.4, 0.9)],
     {"img_size": 64, "batch_size": 32, "lr": 1e-3, "augment": "none"}),
]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Relative paths (from tmp_path, the working folder): the snapshots must not hold the
    # temporary folder's name.
    monkeypatch.chdir(tmp_path)
    home = Path("home")
    write_runs(home)
    monkeypatch.setenv("DFTUI_HOME", str(home))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield tmp_path / home
    monkeypatch.undo()
    time.tzset()


def write_runs(home: Path) -> None:
    """The records of RUNS under ``home``/runs, with their weights (the snapshot tests
    use them too)."""
    runs = home / "runs"
    for name, backbone, status, epochs, config in RUNS:
        best = max(range(len(epochs)), key=lambda i: epochs[i][2]) + 1
        weights = home / "weights" / f"{name}.pth"
        write_record(runs, name, {
            "status": status, "backbone": backbone,
            "started": f"{name[:4]}-{name[4:6]}-{name[6:8]}T{name[9:11]}:{name[11:13]}:00+00:00",
            "epochs": len(epochs), "epochs_completed": len(epochs), "best_epoch": best,
            "best_val_accuracy": epochs[best - 1][2], "train_dir": "data/train",
            "val_dir": "data/val", "weights_path": str(weights)}, epochs)
        (runs / name / "config.json").write_text(json.dumps(
            {"backbone": backbone, "epochs": len(epochs), "pretrained": "imagenet", **config}))
        weights.parent.mkdir(parents=True, exist_ok=True)
        weights.write_bytes(b"w")
        weights.with_suffix(".json").write_text("{}")


def make_app(tmp: Path) -> DftuiApp:
    # announce_runs off: a live run would otherwise be offered to follow at start.
    return DftuiApp(initial="runs", load_torch=False, settings_path=tmp / "settings.json",
                    announce_runs=False)


def row_of(screen: RunsScreen, name: str) -> int:
    key = next(k for k in screen.runs if Path(k).name == name)
    return screen.query_one("#runs-table").get_row_index(key)


def go_to(screen: RunsScreen, name: str) -> None:
    screen.query_one("#runs-table").move_cursor(row=row_of(screen, name))


async def test_compare_marked_runs_overlays_curves_and_sorts(home: Path, tmp_path: Path) -> None:
    record = home / "runs" / RUNS[0][0] / "run.json"  # this one ended by early stopping
    record.write_text(json.dumps({**json.loads(record.read_text()), "early_stop_epoch": 2}))
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await pilot.press("v")  # nothing marked: it says what to do
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("space", "space")  # marks the first two and moves down
        assert len(screen.marked) == 2
        assert screen.query_one("#runs-table").get_row_at(0)[0].plain == "◆"
        await pilot.press("up", "space")  # unmark the second again ...
        assert len(screen.marked) == 1
        go_to(screen, RUNS[0][0])
        await pilot.press("space")  # ... and mark the oldest instead
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded,
                       5, "the comparison")
        compare = app.screen
        table = compare.query_one("#compare-table")
        assert table.row_count == 2
        # Only the settings that differ between the two compared runs get a column.
        assert compare.columns[4:] == ["batch_size", "lr", "status"]
        view = compare.query_one(CompareView)
        assert len(view.curves) == 2
        loss = view.query_one("#loss-chart", ChartPanel).chart
        assert len([s for s in loss.data.series if s.marker is None]) == 2  # one line per run
        assert {s.style for s in loss.data.series} == set(compare.run_colors.values())
        # Sorted by best accuracy first (best on top), then s moves to the next column.
        assert [r.best_val_accuracy for r in compare.sorted_runs()] == [0.95, 0.9]
        order = [table.get_row_at(i)[2].plain for i in range(2)]
        assert order == ["95.0%", "90.0%"]
        statuses = sorted(table.get_row_at(i)[-1].plain for i in range(2))
        assert statuses[1] == "finished (early stop at epoch 2)", statuses
        while compare.sort_key != "lr":
            await pilot.press("s")
        assert [compare.value(r, "lr") for r in compare.sorted_runs()] == [1e-4, 1e-3]
        await pilot.press("S")  # reversed
        assert [compare.value(r, "lr") for r in compare.sorted_runs()] == [1e-3, 1e-4]
        assert "▼" in str(table.columns["lr"].label)
        await pilot.press("f")
        assert app.screen.maximized is view.query_one("#loss-chart")
        await pilot.press("escape")
        await pilot.press("escape")
        assert app.screen is screen


async def test_name_tags_note_are_saved_and_read_back(home: Path, tmp_path: Path) -> None:
    run_dir = home / "runs" / RUNS[2][0]
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        go_to(screen, RUNS[2][0])
        await pilot.press("n")
        assert isinstance(app.screen, EditRunScreen)
        app.screen.query_one("#edit-name", Input).value = "lr sweep 1e-3"
        app.screen.query_one("#edit-tags", Input).value = "sweep, #Baseline"
        app.screen.query_one("#edit-note", Input).value = "too high?"
        app.screen.query_one("#edit-note", Input).focus()
        await pilot.press("enter")
        assert app.screen is screen
        info, problem = read_user(run_dir)
        assert (info.name, info.tags, info.note, problem) == (
            "lr sweep 1e-3", ("sweep", "baseline"), "too high?", "")
        assert "lr sweep" in screen.query_one("#runs-table").get_row_at(0)[2].plain
        assert "#sweep" in str(screen.query_one("#runs-info").render())
    # A fresh app reads it back; the run's own run.json was not touched.
    assert "lr sweep" not in (run_dir / "run.json").read_text()
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert "lr sweep 1e-3" in app.screen.query_one("#runs-table").get_row_at(0)[2].plain
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), 5, "the detail")
        assert "too high?" in app.screen.query_one("#run-head").content.plain


async def test_archive_hides_and_h_shows(home: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        go_to(screen, RUNS[1][0])
        await pilot.press("a")
        assert read_user(home / "runs" / RUNS[1][0])[0].archived
        assert screen.query_one("#runs-table").row_count == 2
        assert not any(k.endswith(RUNS[1][0]) for k in screen.runs)
        await pilot.press("h")
        assert screen.query_one("#runs-table").row_count == 3
        go_to(screen, RUNS[1][0])
        assert "[archived]" in screen.query_one("#runs-table").get_row_at(
            screen.query_one("#runs-table").cursor_row)[2].plain
        await pilot.press("a")  # unarchive
        await pilot.press("h")
        assert screen.query_one("#runs-table").row_count == 3


async def test_delete_asks_and_keeps_weights_unless_ticked(home: Path, tmp_path: Path) -> None:
    weights = home / "weights"
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        go_to(screen, RUNS[0][0])
        await pilot.press("delete")
        dialog = app.screen
        assert isinstance(dialog, DeleteRunScreen)
        text = " ".join(str(w.render()) for w in dialog.query("Static"))
        assert f"{RUNS[0][0]}.pth" in text and f"{RUNS[0][0]}.json" in text  # files named
        await pilot.press("n")  # keep
        assert (home / "runs" / RUNS[0][0]).exists()
        await pilot.press("delete")
        await pilot.press("y")
        assert not (home / "runs" / RUNS[0][0]).exists()
        assert (weights / f"{RUNS[0][0]}.pth").exists()  # weights kept
        assert screen.query_one("#runs-table").row_count == 2

        go_to(screen, RUNS[1][0])
        await pilot.press("delete")
        app.screen.query_one(Checkbox).value = True  # also the weights
        await pilot.pause()
        assert "YES" in str(app.screen.query_one(Checkbox).label)
        await pilot.press("y")
        assert not (home / "runs" / RUNS[1][0]).exists()
        assert not (weights / f"{RUNS[1][0]}.pth").exists()
        assert not (weights / f"{RUNS[1][0]}.json").exists()


async def test_delete_refused_while_running(home: Path, tmp_path: Path) -> None:
    import os

    record = home / "runs" / RUNS[2][0] / "run.json"
    info = json.loads(record.read_text())
    record.write_text(json.dumps({**info, "status": "running", "pid": os.getpid()}))
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        go_to(app.screen, RUNS[2][0])
        await pilot.press("delete")
        assert isinstance(app.screen, RunsScreen)  # no dialog
        assert record.exists()


async def test_copy_path_and_export(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = app.screen
        go_to(screen, RUNS[0][0])
        await pilot.press("p")
        assert app.clipboard == str((home / "runs" / RUNS[0][0]).resolve())
        await pilot.press("x")
        dialog = app.screen
        assert isinstance(dialog, ExportScreen)
        dialog.query_one(Input).value = str(out)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                       and app.screen.exported, 10, "the export")
        csv_path, svg_path = app.screen.exported
        assert csv_path == out / f"{RUNS[0][0]}-metrics.csv"
        assert csv_path.read_text().splitlines()[0].startswith("epoch,train_loss")
        assert len(csv_path.read_text().splitlines()) == 4  # header + 3 epochs
        svg = svg_path.read_text()
        assert svg_path.suffix == ".svg" and svg.startswith("<svg") and "val" in svg
        assert app.settings.data["export_dir"] == str(out)  # offered next time
        await pilot.press("x")  # again, from the run's own screen: new names, nothing lost
        app.screen.query_one(Input).value = str(out)
        await pilot.press("enter")
        await pilot.pause(0.5)
        assert (out / f"{RUNS[0][0]}-metrics-2.csv").exists()
        assert (out / f"{RUNS[0][0]}-charts-2.svg").exists()
