"""Issue 12: one damaged record must not take the dashboard down. Damaged run.json files,
a weights metadata file nested 100,000 deep and damaged event lines are shown as damaged,
with the reason, on the Runs, Classify and Evaluate screens; everything else keeps working."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import OptionList

from dftui.ui.app import DftuiApp
from dftui.ui.screens.runs import RunDetailScreen, RunsScreen
from dftui.ui.widgets.run_view import RunView
from tests.ui.helpers import wait_for

DAMAGED = {
    "20260101-000001-mobilenet_v2": "[]",
    "20260101-000002-mobilenet_v2": '{"pid": "abc", "status": "running"}',
    "20260101-000003-mobilenet_v2": '{"started": 5}',
    "20260101-000004-mobilenet_v2": '{"best_val_accuracy": "x", "best_epoch": 1}',
}


def epoch_line(epoch: int, acc) -> str:
    return json.dumps({
        "event": "epoch_end", "epoch": epoch, "epochs": 3, "train_loss": 0.5, "val_loss": 0.4,
        "val_accuracy": acc, "val_precision": 0.7, "val_recall": 0.8, "val_f1": 0.74,
        "seconds": 1.0, "images_per_s": 10.0, "data_wait": 0.1, "is_best": True, "best_epoch": 1,
    })


@pytest.fixture
def damaged_home(isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runs = isolated_home / "dftui" / "runs"
    for name, text in DAMAGED.items():
        (runs / name).mkdir(parents=True)
        (runs / name / "run.json").write_text(text)
    good = runs / "20260102-000000-mobilenet_v2"
    good.mkdir()
    (good / "run.json").write_text(json.dumps({
        "run_id": good.name, "status": "finished", "backbone": "mobilenet_v2",
        "started": "2026-01-02T00:00:00+00:00", "epochs_completed": 3, "epochs": 3,
        "best_val_accuracy": 0.75, "best_epoch": 1}))
    (good / "events.jsonl").write_text("\n".join([
        epoch_line(1, 0.75), epoch_line(2, "abc"), epoch_line(3, None), ""]))
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "deep.pth").write_bytes(b"PK")  # never loaded: only listed
    (weights / "deep.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    monkeypatch.chdir(tmp_path)
    return isolated_home


async def test_damaged_records_are_listed_as_damaged_and_the_app_stays_up(
    damaged_home: Path, tmp_path: Path
) -> None:
    app = DftuiApp(initial="setup", load_torch=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="Runs")
        screen = app.screen
        statuses = sorted(r.status for r in screen.runs.values())
        assert statuses == ["damaged"] * 4 + ["finished"]
        table = screen.query_one("#runs-table")
        assert table.get_row_at(0)[table.get_column_index("status")].plain == "finished"
        table.move_cursor(row=1)
        await pilot.pause()
        info = screen.query_one("#runs-info").content.plain
        assert "run.json" in info and "damaged" in info

        # The good run replays; its two damaged event lines are skipped and said.
        table.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                       and app.screen.events_fed > 0, what="the run detail")
        detail = app.screen
        assert sorted(detail.query_one(RunView).rows) == [1]
        note = detail.query_one("#run-message").content.plain
        assert "2 damaged lines" in note and "val_accuracy" in note
        await pilot.press("escape")

        # Weights metadata nested 100,000 deep: listed as damaged on Classify and Evaluate.
        await pilot.press("f4")
        await pilot.pause()
        prompts = [str(o.prompt) for o in app.screen.query_one("#weights-list", OptionList).options]
        assert any("deep.pth" in p and "damaged metadata" in p for p in prompts), prompts
        await pilot.press("f7")
        await pilot.pause()
        prompts = [str(o.prompt) for o in app.screen.query_one("#eval-weights", OptionList).options]
        assert any("deep.pth" in p and "damaged metadata" in p for p in prompts), prompts
        assert app.is_running


@pytest.mark.parametrize("settings", [
    {"setup": {"backbone": [1]}},
    {"setup": {"backbone": {"a": 1}, "weights": [1], "device": 5, "overwrite": "yes",
               "precision": None, "epochs": [3], "augment": ["x"], "pretrained": {}}},
    {"theme": [1]},
    {"theme": {"a": 1}, "keymap": {"app.help": ["f1"]}},
    {"setup": [1], "keymap": "f1", "prepare": 5},
    {"prepare": {"fmt": {"a": 1}, "root": [1], "out": None}},
])
async def test_settings_of_the_wrong_type_never_stop_the_dashboard(tmp_path: Path, settings) -> None:
    from dftui.ui.screens.setup import SetupScreen
    from dftui.ui.settings import Settings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    loaded = Settings.load(path)
    assert loaded.error and "defaults are used" in loaded.error
    app = DftuiApp(initial="setup", load_torch=False, settings_path=path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, SetupScreen)
        assert app.screen.backbone == "mobilenet_v2"
        await pilot.press("f6")  # Prepare reads its own section
        await pilot.pause()
        assert app.is_running


def test_deeply_nested_settings_are_set_aside(tmp_path: Path) -> None:
    from dftui.ui.settings import Settings

    path = tmp_path / "settings.json"
    path.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    loaded = Settings.load(path)
    assert loaded.data == {} and "nested too deeply" in (loaded.error or "")
    assert (tmp_path / "settings.json.bad").is_file()


@pytest.mark.parametrize("lo,hi", [(1.0, 1.0), (0.0, 0.0), (0.5, 0.5), (-2.0, -2.0)])
def test_a_flat_chart_range_still_gets_ticks(lo: float, hi: float) -> None:
    """One point or a constant series (a resumed run's first batch, a flat accuracy) made
    textual-plot's tick spacing 0 and log10(0) ended the app (seen as a flaky
    test_runs.py::test_resume_continues_a_stopped_run)."""
    from dftui.ui.widgets.charts import FittedFormatter, LogFormatter

    for formatter in (FittedFormatter(), LogFormatter()):
        ticks = formatter.get_ticks(lo, hi)
        assert len(ticks) >= 2 and formatter.get_labels_for_ticks(ticks)
