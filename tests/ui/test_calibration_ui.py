"""Calibration in the dashboard: the Evaluate screen reports ECE and Brier and draws the
reliability diagram; Classify and Evaluate say that a stored temperature is applied, and
warn when a stored one is unusable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dftui.core.calibration import store_calibration
from dftui.ui.app import DftuiApp
from dftui.ui.screens.classify import ClassifyScreen
from dftui.ui.screens.evaluate import EvaluateScreen
from dftui.ui.widgets.reliability import ReliabilityChart
from tests.conftest import train_tiny
from tests.ui.helpers import pin_cell_size, wait_for


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, dataset, standin_weights) -> dict[str, Path]:
    ws = tmp_path_factory.mktemp("calui")
    weights = train_tiny(dataset, standin_weights, ws)
    calibrated = ws / "weights" / "calibrated.pth"
    shutil.copy(weights, calibrated)
    meta = json.loads(weights.with_suffix(".json").read_text())
    meta["weights_file"] = calibrated.name
    calibrated.with_suffix(".json").write_text(json.dumps(meta))
    store_calibration(calibrated, "mobilenet_v2", {"temperature": 1.8, "images": 20})
    broken = ws / "weights" / "broken.pth"
    shutil.copy(weights, broken)
    broken.with_suffix(".json").write_text(json.dumps(
        {**meta, "weights_file": broken.name, "calibration": {"temperature": "hot"}}))
    shutil.copytree(dataset["val"], ws / "processed_data" / "test_dev_cropped")
    return {"root": ws, "calibrated": calibrated, "broken": broken}


def make_app(tmp: Path) -> DftuiApp:
    return DftuiApp(initial="runs", load_torch=False, settings_path=tmp / "settings.json")


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_evaluate_shows_calibration_and_the_reliability_diagram(
    workspace, monkeypatch, tmp_path, size
) -> None:
    pin_cell_size()
    monkeypatch.chdir(workspace["root"])
    monkeypatch.setattr("dftui.core.evaluate.save_evaluation", lambda *a, **k: None)
    app = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        screen = await app.open_screen("evaluate")
        assert isinstance(screen, EvaluateScreen)
        await pilot.pause()
        screen.choose_weights(workspace["calibrated"])
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running and screen.results, what="the results")
        result = screen.results[0]
        assert result.temperature == 1.8
        text = str(screen.query_one("#eval-confusion").content)
        assert "calibrated (T=1.8)" in text
        assert f"ECE {result.ece:.3f}" in text and f"Brier {result.brier:.3f}" in text
        chart = screen.query_one("#eval-reliability", ReliabilityChart)
        assert sum(b.count for b in chart.bins) == 20 and chart.bins
        assert f"ECE {result.ece:.3f}" in chart.title_text.plain
        # The diagram is on screen, not squeezed away: it has room for its chart.
        chart.scroll_visible(animate=False)
        await pilot.pause()
        assert chart.region.width >= 30 and chart.region.height >= 10, chart.region


async def test_classify_names_the_temperature_and_warns_on_a_broken_one(
    workspace, monkeypatch, tmp_path
) -> None:
    pin_cell_size()
    monkeypatch.chdir(workspace["root"])
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await app.open_screen("classify")
        assert isinstance(screen, ClassifyScreen)
        await pilot.pause()
        status = screen.query_one("#model-status")
        screen.load_weights(workspace["calibrated"])
        await wait_for(pilot, lambda: "calibrated (T=1.8)" in str(status.content), what="the model line")
        screen.load_weights(workspace["broken"])
        await wait_for(pilot, lambda: screen.weights_path == workspace["broken"], what="the broken one")
        assert "calibrated" not in str(status.content)
        notes = [n.message for n in app._notifications]
        assert any("not a finite number above 0" in n for n in notes), notes
