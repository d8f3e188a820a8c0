"""`calibrate`: a run fits a temperature with its best weights on the validation set, stores
it in the weights' metadata and reports it; predict then uses it."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from dftui.core.calibration import stored_temperature
from dftui.core.checkpoint import read_metadata
from dftui.core.events import LogMessage, RunFinished
from dftui.core.runs import read_run_info
from dftui.core.train import fit
from tests.conftest import tiny_config


def noisy_validation(dataset: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """The validation set with a few real images filed under fake/: the model gets them
    wrong whatever it learns, so a finite temperature exists."""
    val = tmp_path / "noisy-val"
    shutil.copytree(dataset["val"], val)
    for image in sorted((val / "real").iterdir())[:3]:
        image.rename(val / "fake" / ("x" + image.name))
    return {**dataset, "val": val}


def test_a_calibrated_run_stores_and_reports_its_temperature(
    dataset: dict[str, Path], tmp_path: Path, standin_weights: Path
) -> None:
    events: list = []
    data = noisy_validation(dataset, tmp_path)
    final = fit(tiny_config(data, standin_weights, tmp_path, calibrate=True), events.append,
                threading.Event())
    assert isinstance(final, RunFinished) and final.status == "finished", final
    meta = read_metadata(final.weights_path)
    entry = meta["calibration"]
    t, warning = stored_temperature(meta)
    assert warning is None and t == pytest.approx(final.temperature, rel=1e-5)
    assert entry["images"] == sum(1 for p in data["val"].rglob("*") if p.is_file())
    assert entry["bins"] == 15
    assert final.ece_before == pytest.approx(entry["ece_before"], abs=1e-6)
    assert final.ece_after == pytest.approx(entry["ece_after"], abs=1e-6)
    assert entry["nll_after"] <= entry["nll_before"]
    logs = [e.text for e in events if isinstance(e, LogMessage)]
    assert any(text.startswith("calibrated (T=") for text in logs), logs
    info = read_run_info(Path(final.run_dir))
    assert info["temperature"] == pytest.approx(final.temperature)
    # The stored temperature is the one predict divides by.
    from dftui.core.predict import Predictor

    assert Predictor(final.weights_path, device="cpu").temperature == pytest.approx(final.temperature)


def test_an_uncalibrated_run_writes_no_temperature(
    dataset: dict[str, Path], tmp_path: Path, standin_weights: Path
) -> None:
    final = fit(tiny_config(dataset, standin_weights, tmp_path), lambda e: None, threading.Event())
    assert isinstance(final, RunFinished) and final.temperature is None
    assert "calibration" not in read_metadata(final.weights_path)


def test_a_run_that_cannot_be_calibrated_says_why_and_stores_nothing(
    dataset: dict[str, Path], tmp_path: Path, standin_weights: Path
) -> None:
    # The clean validation set is classified without a mistake: no finite temperature.
    events: list = []
    final = fit(tiny_config(dataset, standin_weights, tmp_path, calibrate=True), events.append,
                threading.Event())
    assert isinstance(final, RunFinished) and final.status == "finished"
    assert final.best_val_accuracy == 1.0 and final.temperature is None
    warnings = [e.text for e in events if isinstance(e, LogMessage) and e.level == "warning"]
    assert any("not calibrated: every validation image is classified correctly" in w for w in warnings)
    assert "calibration" not in read_metadata(final.weights_path)


def test_with_ema_the_saved_averaged_weights_are_the_ones_calibrated(
    dataset: dict[str, Path], tmp_path: Path, standin_weights: Path
) -> None:
    from dftui.core.calibration import calibrate_weights

    data = noisy_validation(dataset, tmp_path)
    config = tiny_config(data, standin_weights, tmp_path, calibrate=True, ema=True, ema_decay=0.9)
    final = fit(config, lambda e: None, threading.Event())
    assert isinstance(final, RunFinished) and final.temperature is not None, final
    # Fitted again on the file as saved (the EMA weights): the temperature stored with it.
    again = calibrate_weights(final.weights_path, data["val"], device="cpu", precision=config.precision)
    assert again.temperature == pytest.approx(final.temperature, rel=0.02)


def test_a_metadata_rewrite_keeps_the_temperature_of_the_same_weights(tmp_path: Path) -> None:
    """A resumed run rewrites the best weights' metadata after every epoch; while the
    weights stay the same file, a temperature fitted on them (evaluate --calibrate) stays
    too. New best weights drop it: it was fitted on others."""
    import torch

    from dftui.core.checkpoint import save_json
    from dftui.core.checkpointer import Checkpointer

    ck = Checkpointer(lambda event: None)
    ck.weights_path = tmp_path / "w.pth"
    ck.save_best({"a": torch.zeros(1)}, {"backbone": "mobilenet_v2"}, 1)
    meta = read_metadata(ck.path)
    save_json({**meta, "calibration": {"temperature": 1.5}}, ck.path.with_suffix(".json"))
    resumed = Checkpointer(lambda event: None)  # a resumed run: no digest of its own yet
    resumed.weights_path = ck.path
    resumed.update_metadata({"backbone": "mobilenet_v2", "epochs": [1, 2]})
    kept = read_metadata(ck.path)
    assert kept["calibration"] == {"temperature": 1.5} and kept["epochs"] == [1, 2]
    ck.update_metadata({"backbone": "mobilenet_v2", "epochs": [1, 2, 3]})
    assert read_metadata(ck.path)["calibration"] == {"temperature": 1.5}
    ck.save_best({"a": torch.ones(1)}, {"backbone": "mobilenet_v2"}, 4)
    assert "calibration" not in read_metadata(ck.path)
