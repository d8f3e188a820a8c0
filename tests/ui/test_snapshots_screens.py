"""SVG snapshots of the Prepare and Evaluate screens at 80×24 and 160×48 (the Setup,
Training, Help, Classify and Runs screens have theirs in their own test files). Update with
--snapshot-update after a deliberate change, and look at the SVGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftui.ui.app import DftuiApp
from tests.ui.helpers import pin_cell_size, wait_for
from tests.ui.test_small_screens import home  # noqa: F401 - the fixture

SIZES = [(80, 24), (160, 48)]
IDS = ["80x24", "160x48"]


def _app(tmp_path: Path, initial: str) -> DftuiApp:
    return DftuiApp(initial=initial, load_torch=False, settings_path=tmp_path / "s.json")


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_snapshot_prepare(snap_compare, tmp_path, monkeypatch, size) -> None:
    monkeypatch.chdir(tmp_path)
    app = _app(tmp_path, "prepare")

    async def run_before(pilot) -> None:
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_snapshot_evaluate_idle(snap_compare, home, tmp_path, monkeypatch, size) -> None:  # noqa: F811
    monkeypatch.chdir(home)
    app = _app(tmp_path, "evaluate")

    async def run_before(pilot) -> None:
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_snapshot_evaluate_results(snap_compare, home, tmp_path, monkeypatch, size) -> None:  # noqa: F811
    import dftui.core.predict as predict

    class Fp32(predict.Predictor):  # the same scores on every CPU (bf16 rounds differently)
        def __init__(self, weights, device="auto", **kw):
            super().__init__(weights, "cpu", precision="fp32")

    monkeypatch.setattr(predict, "Predictor", Fp32)
    # No record: its folder (a temporary path) would be in the status line.
    monkeypatch.setattr("dftui.core.evaluate.save_evaluation", lambda *a, **k: None)
    monkeypatch.chdir(home)
    pin_cell_size()
    app = _app(tmp_path, "evaluate")

    async def run_before(pilot) -> None:
        screen = app.screen
        await pilot.pause()
        await pilot.press("w", "enter", "r")
        await wait_for(pilot, lambda: not screen.running and screen.results, what="the results")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
