"""Calibration from the command line: `dftui evaluate --calibrate` stores a temperature in
existing weights (never silently replacing one), evaluate and predict then show and use it,
and evaluate reports ECE and the Brier score."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from dftui.cli import main
from dftui.core.checkpoint import read_metadata
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, dataset: dict[str, Path],
            standin_weights: Path) -> Path:
    return train_tiny(dataset, standin_weights, tmp_path_factory.mktemp("calcli"))


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory, dataset: dict[str, Path]) -> Path:
    """The validation set with three real images filed under fake/: some are misclassified,
    so a finite temperature exists."""
    val = tmp_path_factory.mktemp("calnoisy") / "val"
    shutil.copytree(dataset["val"], val)
    for image in sorted((val / "real").iterdir())[:3]:
        image.rename(val / "fake" / ("x" + image.name))
    return val


def test_evaluate_calibrate_stores_then_asks_before_replacing(
    weights: Path, noisy: Path, dataset: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local = tmp_path / weights.name
    shutil.copy(weights, local)
    shutil.copy(weights.with_suffix(".json"), local.with_suffix(".json"))
    before = read_metadata(local)

    assert main(["evaluate", "--weights", str(local), str(noisy), "--plain", "--no-record"]) == 0
    out = capsys.readouterr().out
    assert "uncalibrated" in out and "ECE (15 bins)" in out and "Brier score" in out

    assert main(["evaluate", "--weights", str(local), str(noisy), "--calibrate", "--json",
                 "--no-record"]) == 0
    report = json.loads(capsys.readouterr().out)
    fit = report["calibration_fit"]
    meta = read_metadata(local)
    t = meta["calibration"]["temperature"]
    assert fit["temperature"] == pytest.approx(t) and math.isfinite(t) and t > 0
    assert fit["ece_after"] <= fit["ece_before"] + 1e-9 and fit["images"] == 20
    assert fit["stored_in"] == str(local.with_suffix(".json"))
    # The rest of the metadata is kept (the digest still names the same weights).
    assert {k: v for k, v in meta.items() if k != "calibration"} == before

    # Evaluate and predict now apply it, and say so.
    assert main(["evaluate", "--weights", str(local), str(noisy), "--json", "--no-record"]) == 0
    res = json.loads(capsys.readouterr().out)["results"][0]
    assert res["temperature"] == pytest.approx(t)
    cal = res["calibration"]
    assert cal["applied"] == f"calibrated (T={t:.3g})" and cal["ece_bins"] == 15
    assert cal["ece"] == pytest.approx(fit["ece_after"], abs=1e-4)
    assert sum(b["count"] for b in cal["reliability"]) == 20 and len(cal["reliability"]) == 15
    assert main(["evaluate", "--weights", str(local), str(noisy), "--plain", "--no-record"]) == 0
    assert f"calibrated (T={t:.3g})" in capsys.readouterr().out

    image = sorted((dataset["val"] / "fake").iterdir())[0]
    assert main(["predict", "--weights", str(local), str(image), "--json"]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out)[0]
    assert row["temperature"] == pytest.approx(t)
    assert main(["predict", "--weights", str(local), str(image)]) == 0
    assert f"calibrated (T={t:.3g})" in capsys.readouterr().err

    # Asked again: refused before scoring, the stored temperature unchanged ...
    assert main(["evaluate", "--weights", str(local), str(noisy), "--calibrate", "--no-record"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dftui: error:") and "already calibrated" in err and "--overwrite" in err
    assert read_metadata(local)["calibration"]["temperature"] == t
    # ... replaced with --overwrite (fitted from the raw logits again: the same T).
    assert main(["evaluate", "--weights", str(local), str(noisy), "--calibrate", "--overwrite",
                 "--plain", "--no-record"]) == 0
    assert "stored in" in capsys.readouterr().out
    assert read_metadata(local)["calibration"]["temperature"] == pytest.approx(t, rel=1e-3)


def test_calibrate_refuses_a_set_without_a_finite_temperature(
    weights: Path, dataset: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    local = tmp_path / weights.name
    shutil.copy(weights, local)
    shutil.copy(weights.with_suffix(".json"), local.with_suffix(".json"))
    # The clean validation set is classified without a mistake; real/ alone is one class.
    assert main(["evaluate", "--weights", str(local), str(dataset["val"]), "--calibrate",
                 "--no-record", "--plain"]) == 1
    assert "not calibrated" in capsys.readouterr().err
    assert "calibration" not in read_metadata(local)
    assert main(["evaluate", "--weights", str(local), str(dataset["val"]), "--overwrite",
                 "--no-record"]) == 2
    assert "use it with --calibrate" in capsys.readouterr().err


def test_an_unusable_stored_temperature_is_ignored_with_a_warning(
    weights: Path, noisy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    local = tmp_path / weights.name
    shutil.copy(weights, local)
    meta = json.loads(weights.with_suffix(".json").read_text())
    meta["calibration"] = {"temperature": -2}
    local.with_suffix(".json").write_text(json.dumps(meta))
    assert main(["evaluate", "--weights", str(local), str(noisy), "--json", "--no-record"]) == 0
    captured = capsys.readouterr()
    assert "not a finite number above 0" in captured.err
    assert json.loads(captured.out)["results"][0]["temperature"] is None


def test_the_run_summary_line_and_record_carry_the_temperature() -> None:
    from dftui.cli.printer import _finished_line
    from dftui.core.events import RunFinished, event_from_dict

    done = RunFinished(status="finished", epochs_completed=3, best_epoch=2, best_val_accuracy=0.9,
                       weights_path="w.pth", metadata_path="w.json", run_dir="runs/x", seconds=1.0,
                       temperature=1.8, ece_before=0.12, ece_after=0.03)
    assert "calibrated (T=1.8, validation ECE 0.1200 → 0.0300)" in _finished_line(done)
    assert event_from_dict(json.loads(json.dumps(done.to_dict()))) == done
    plain = RunFinished(status="finished", epochs_completed=3, best_epoch=2, best_val_accuracy=0.9,
                        weights_path="w.pth", metadata_path="w.json", run_dir="runs/x", seconds=1.0)
    assert "calibrated" not in _finished_line(plain)
    # A record written before calibration existed replays without it.
    old = {k: v for k, v in plain.to_dict().items() if k not in ("temperature", "ece_before", "ece_after")}
    assert event_from_dict(old) == plain


def test_the_run_header_says_calibration_follows() -> None:
    from dftui.cli.printer import _started_line
    from dftui.core.config import TrainConfig
    from dftui.core.events import RunStarted

    def header(**config) -> str:  # noqa: ANN003
        event = RunStarted(
            run_id="r",
            run_dir="runs/r",
            config={**TrainConfig().to_dict(), "weights_path": "w.pth", **config},
            device="cpu",
            device_name="CPU",
            precision="fp32",
            channels_last=False,
            train_size=32,
            val_size=16,
            train_counts={"real": 16, "fake": 16},
            val_counts={"real": 8, "fake": 8},
            steps_per_epoch=4,
            start_epoch=0,
            params=1,
            workers=0,
        )
        return _started_line(event)

    assert "temperature calibration on the validation set after training" in header(calibrate=True)
    assert "calibration" not in header()


def test_a_temperature_that_cannot_be_written_is_one_line(
    weights: Path, noisy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import errno

    local = tmp_path / weights.name
    shutil.copy(weights, local)
    shutil.copy(weights.with_suffix(".json"), local.with_suffix(".json"))

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("dftui.core.checkpoint.save_json", full)
    assert main(["evaluate", "--weights", str(local), str(noisy), "--calibrate", "--no-record",
                 "--plain"]) == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]  # after the folder's imbalance warning
    assert last.startswith("dftui: error: could not store the temperature") and "Traceback" not in err
    assert last.endswith("metadata: the disk is full"), err
    assert "calibration" not in read_metadata(local)
