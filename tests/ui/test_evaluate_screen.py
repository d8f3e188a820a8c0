"""The Evaluate screen through the real app and the Pilot: evaluate two folders with tiny
trained weights, move the threshold, open a misclassified image with its Grad-CAM."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dftui.core.config import TrainConfig
from dftui.core.evaluate import list_evaluations
from dftui.core.events import RunFinished
from dftui.ui.app import DftuiApp
from dftui.ui.screens.evaluate import CamScreen, EvaluateScreen, MetricCard, RobustnessScreen
from dftui.ui.widgets.image_view import ImageView
from dftui.ui.widgets.roc import RocChart
from tests.ui.helpers import pin_cell_size, wait_for


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, dataset, standin_weights) -> dict[str, Path]:
    """weights/ with a tiny fit() result whose metadata asks for 64 px input (so Grad-CAM
    has a 2×2 map) and processed_data/test_{dev,challenge}_cropped."""
    from dftui.core.train import fit

    ws = tmp_path_factory.mktemp("evaluate")
    config = TrainConfig(
        train_dir=dataset["train"], val_dir=dataset["val"], epochs=1, batch_size=8, img_size=32,
        pretrained=str(standin_weights), workers=0, out_dir=ws / "weights", weights_name="tiny.pth",
        runs_dir=ws / "runs", device="cpu",
    )
    final = fit(config)
    assert isinstance(final, RunFinished), final
    meta_path = Path(final.weights_path).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["preprocessing"]["input_size"] = 64
    meta_path.write_text(json.dumps(meta))
    shutil.copytree(dataset["val"], ws / "processed_data" / "test_dev_cropped")
    shutil.copytree(dataset["train"], ws / "processed_data" / "test_challenge_cropped")
    return {"root": ws, "weights": Path(final.weights_path), "run_dir": Path(meta["run_dir"])}


async def test_evaluate_threshold_and_gradcam(workspace, monkeypatch, tmp_path) -> None:
    pin_cell_size()
    monkeypatch.chdir(workspace["root"])
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(140, 48)) as pilot:
        screen = await app.open_screen("evaluate")
        assert isinstance(screen, EvaluateScreen)
        await pilot.pause()
        # The test folders under processed_data/ are offered; the weights are listed.
        assert [f.name for f in screen.folders] == ["test_challenge_cropped", "test_dev_cropped"]
        await pilot.press("r")
        assert "choose weights" in screen.status_text
        screen.choose_weights(workspace["weights"])
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running and len(screen.results) == 2,
                       what="the evaluation of both folders")
        assert "done: 2 folder(s)" in screen.status_text, screen.status_text
        assert [r.metrics.n for r in screen.results] == [40, 20]
        # Saved with the weights' run record.
        records = list_evaluations(workspace["run_dir"])
        assert len(records) == 2
        # Cards show the current result's metrics.
        m = screen.current_metrics()
        acc = screen.query_one("#card-accuracy", MetricCard)
        assert acc.value == f"{m.accuracy:.1%}"
        assert screen.query_one("#eval-roc", RocChart).fpr  # the curve is drawn
        # Threshold keys update the metrics live.
        before = screen.threshold
        await pilot.press("right_square_bracket")
        assert screen.threshold == pytest.approx(before + 0.01)
        await pilot.press("0")
        assert screen.threshold == 0.5
        # Push the threshold down until the tiny model gets images wrong (everything above
        # the threshold is called fake, so at 0 every real image is an error).
        screen.set_threshold(0.0)
        await pilot.pause()
        m0 = screen.current_metrics()
        assert m0.confusion.fp == m0.n_real and acc.value == f"{m0.accuracy:.1%}"
        errors = screen.query_one("#eval-errors")
        assert errors.row_count == m0.confusion.fp + m0.confusion.fn > 0
        # Next folder.
        await pilot.press("n")
        assert screen.current == 0
        # Enter on the first (most confident) error opens it with its Grad-CAM.
        errors.focus()
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CamScreen), what="the Grad-CAM view")
        cam = app.screen
        await wait_for(pilot, lambda: cam.result is not None or cam.error, what="Grad-CAM")
        assert not cam.error, cam.error
        assert cam.result.heatmap.shape[::-1] == cam.result.image.size
        overlay = cam.query_one("#cam-overlay", ImageView)
        assert overlay.image is not None and "evidence for" in overlay.caption
        first_target = cam.result.target
        await pilot.press("c")  # the other class
        await wait_for(pilot, lambda: cam.result is not None and cam.result.target != first_target,
                       what="Grad-CAM of the other class")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="closing the Grad-CAM view")
        # k: the shown folder under every corruption at every severity, in a table.
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, RobustnessScreen),
                       what="the robustness table")
        rob = screen.last_robustness
        assert rob.rows[0].label == "clean" and len(rob.rows) == 13
        def robust_rows() -> int:
            tables = app.screen.query("#robust-table")  # empty until the modal is composed
            return tables.first().row_count if tables else -1

        await wait_for(pilot, lambda: robust_rows() == 13, what="the robustness rows")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="closing the robustness table")


async def test_bad_folder_and_weights_leave_the_screen_usable(workspace, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(workspace["root"])
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not torch")
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await app.open_screen("evaluate", weights=bad, folders=[])
        await pilot.pause()
        assert not screen.add_folder(tmp_path)
        assert "real/ and fake/" in screen.status_text
        screen.add_folder(workspace["root"] / "processed_data" / "test_dev_cropped")
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running, what="the failed evaluation")
        assert "bad.pth" in screen.status_text and "weights" in screen.status_text
        assert screen.query_one("#eval-status").has_class("-error")


async def test_compare_two_weights(workspace, monkeypatch, tmp_path) -> None:
    import torch

    monkeypatch.chdir(workspace["root"])
    # B: A with the head's bias pushed toward fake, so it calls more images fake.
    state = torch.load(workspace["weights"], weights_only=True)
    state["classifier.1.bias"] = state["classifier.1.bias"] + torch.tensor([-4.0, 4.0])
    b_path = tmp_path / "biased.pth"
    torch.save(state, b_path)
    dev = workspace["root"] / "processed_data" / "test_dev_cropped"
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(140, 48)) as pilot:
        screen = await app.open_screen("evaluate", weights=workspace["weights"], folders=[dev])
        await pilot.pause()
        screen.query_one("#eval-compare-path").focus()
        await pilot.press(*str(b_path), "enter")
        assert screen.compare_path == b_path
        screen.query_one("#eval-summary").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running, what="evaluating A and B")
        a, b = screen.results
        assert (Path(a.weights), Path(b.weights)) == (workspace["weights"], b_path)
        assert a.folder == b.folder
        summary = screen.query_one("#eval-summary")
        row_b = [str(c) for c in summary.get_row_at(1)]
        assert row_b[1] == "B biased.pth"
        diff = b.metrics.accuracy - a.metrics.accuracy
        assert row_b[5] == f"{diff:+.1%}"
        assert b.metrics.confusion.fp + b.metrics.confusion.tp >= a.metrics.confusion.fp + a.metrics.confusion.tp


async def test_run_detail_lists_evaluations(workspace, monkeypatch, tmp_path) -> None:
    from dftui.core.evaluate import evaluate_folder, save_evaluation
    from dftui.core.predict import Predictor
    from dftui.core.runs import read_run
    from dftui.ui.screens.runs import RunDetailScreen

    monkeypatch.chdir(workspace["root"])
    dev = workspace["root"] / "processed_data" / "test_dev_cropped"
    result = evaluate_folder(Predictor(workspace["weights"]), dev)
    save_evaluation(result)
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(140, 40)) as pilot:
        await app.push_screen(RunDetailScreen(read_run(workspace["run_dir"])))
        await pilot.pause()
        line = app.screen.query_one("#run-evaluations")
        assert line.display and "test_dev_cropped acc" in line.content.plain
        assert f"{result.metrics.accuracy:.1%}" in line.content.plain
        await pilot.press("e")  # opens the Evaluate screen with the run's weights
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen), what="Evaluate")
        assert app.screen.weights_path == workspace["weights"]


def test_screen_module_does_not_import_torch() -> None:
    code = ("import sys, dftui.ui.screens.evaluate; "
            "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
