"""Temperature scaling, ECE and reliability bins on synthetic logits whose right answer is
known: logits of a calibrated model multiplied by k are fixed by T = k."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dftui.core.calibration import (
    CalibrationFit,
    binary_confidence,
    brier_score,
    expected_calibration_error,
    fit_binary,
    fit_temperature,
    margins_from_p_fake,
    reliability_bins,
    stored_temperature,
)


def calibrated_logits(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two-class logits of a perfectly calibrated model: the label is drawn from the very
    probability the logits give."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0.0, 2.0, n)
    p_fake = 1.0 / (1.0 + np.exp(-margin))
    labels = (rng.random(n) < p_fake).astype(np.int64)
    return np.stack([np.zeros(n), margin], axis=1), labels


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_overconfident_and_underconfident_logits_get_their_scale_back(scale: float) -> None:
    logits, labels = calibrated_logits()
    fit = fit_temperature(logits * scale, labels)
    assert fit.ok and fit.images == len(labels)
    assert fit.temperature == pytest.approx(scale, rel=0.06)
    assert fit.ece_after < fit.ece_before / 3
    assert fit.nll_after < fit.nll_before


def test_already_calibrated_logits_keep_t_near_one() -> None:
    logits, labels = calibrated_logits(seed=1)
    fit = fit_temperature(logits, labels)
    assert fit.temperature == pytest.approx(1.0, abs=0.06)
    assert fit.ece_before < 0.02


def test_three_classes_work_too() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1.5, (6000, 3))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(logits * 2.5, labels).temperature == pytest.approx(2.5, rel=0.08)


def test_binary_fit_from_probabilities_scored_at_another_temperature() -> None:
    logits, labels = calibrated_logits(seed=3)
    margins = logits[:, 1] * 3.0
    # Scores already divided by T = 1.5 (weights calibrated before): the margins come back.
    p_fake = 1.0 / (1.0 + np.exp(-margins / 1.5))
    assert np.allclose(margins_from_p_fake(p_fake, 1.5), margins, atol=1e-6)
    assert fit_binary(p_fake, labels, temperature=1.5).temperature == pytest.approx(3.0, rel=0.06)


@pytest.mark.parametrize(
    ("logits", "labels", "why"),
    [
        (np.zeros((0, 2)), np.zeros(0), "no validation image"),
        (np.array([[0.0, 2.0], [0.0, -1.0]]), np.array([1, 1]), "one class only"),
        (np.array([[0.0, 9.0], [4.0, 0.0], [0.0, 0.1]]), np.array([1, 0, 1]), "correctly"),
        (np.array([[0.0, -3.0], [0.0, 2.0]]), np.array([1, 0]), "no better than chance"),
        (np.array([[0.0, np.nan], [0.0, 1.0]]), np.array([1, 0]), "non-finite"),
    ],
)
def test_degenerate_sets_get_no_temperature(logits: np.ndarray, labels: np.ndarray, why: str) -> None:
    fit = fit_temperature(logits, labels)
    assert not fit.ok and fit.temperature is None
    assert why in fit.reason
    assert "not calibrated" in fit.summary()
    with pytest.raises(ValueError):
        fit.to_metadata("validation")


def test_ece_and_bins_by_hand() -> None:
    # Bin (0.6, 0.667]: confidences 0.65 and 0.65, one right -> gap 0.15;
    # bin (0.933, 1]: 0.95 right -> gap 0.05. ECE = (2 * 0.15 + 1 * 0.05) / 3.
    conf = [0.65, 0.65, 0.95]
    ok = [1, 0, 1]
    bins = reliability_bins(conf, ok)
    assert len(bins) == 15 and sum(b.count for b in bins) == 3
    full = [b for b in bins if b.count]
    assert [b.count for b in full] == [2, 1]
    assert full[0].accuracy == pytest.approx(0.5) and full[0].confidence == pytest.approx(0.65)
    assert full[1].lower == pytest.approx(14 / 15) and full[1].upper == 1.0
    assert expected_calibration_error(conf, ok) == pytest.approx((2 * 0.15 + 0.05) / 3)
    assert math.isnan(bins[0].accuracy) and bins[0].to_dict()["accuracy"] is None
    # An edge value belongs to the bin below it; 0 to the first.
    edge = reliability_bins([1 / 3, 0.0, 1.0], [1, 1, 1], bins=3)
    assert [b.count for b in edge] == [2, 0, 1]
    assert math.isnan(expected_calibration_error([], []))


def test_binary_confidence_and_brier() -> None:
    conf, ok = binary_confidence([0.9, 0.2, 0.5], [1, 1, 0])
    assert conf.tolist() == pytest.approx([0.9, 0.8, 0.5])
    assert ok.tolist() == [True, False, False]  # 0.5 is called fake, as the 0.5 threshold does
    assert brier_score([1.0, 0.0, 0.5], [1, 1, 0]) == pytest.approx((0 + 1 + 0.25) / 3)


def test_metadata_round_trip_and_untrusted_values() -> None:
    logits, labels = calibrated_logits(n=2000, seed=4)
    entry = fit_temperature(logits * 2, labels).to_metadata("validation")
    assert entry["images"] == 2000 and entry["bins"] == 15
    t, warning = stored_temperature({"calibration": entry})
    assert warning is None and t == pytest.approx(entry["temperature"])
    assert stored_temperature({}) == (None, None)
    assert stored_temperature({"calibration": None}) == (None, None)
    for bad in (0, -1.0, float("nan"), float("inf"), "2", True, None, [2]):
        t, warning = stored_temperature({"calibration": {"temperature": bad}})
        assert t is None and warning and "uncalibrated" in warning, bad
    t, warning = stored_temperature({"calibration": "T=2"})
    assert t is None and "str" in warning


def test_fit_serialises_without_nan() -> None:
    fit = fit_temperature(np.zeros((0, 2)), np.zeros(0))
    assert isinstance(fit, CalibrationFit)
    assert fit.to_dict()["ece_before"] is None


def _reference_weights(path, fake_bias: float):  # noqa: ANN001, ANN202
    from tests.core.test_predict import reference_weights

    return reference_weights(path, fake_bias)


def test_predictor_divides_by_the_stored_temperature(tmp_path, dataset) -> None:  # noqa: ANN001
    from dftui.core.calibration import CalibrationExists, store_calibration
    from dftui.core.checkpoint import read_metadata
    from dftui.core.predict import Predictor

    weights = _reference_weights(tmp_path / "mobilenet_v2_deepfake.pth", fake_bias=3.0)
    img = next((dataset["val"] / "real").iterdir())
    plain = Predictor(weights, device="cpu")
    assert plain.temperature is None and plain.calibration_label == "uncalibrated"
    assert plain.predict_image(img).p_fake == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-4)

    logits, labels = calibrated_logits(n=500, seed=5)
    entry = {**fit_temperature(logits * 2, labels).to_metadata("test"), "temperature": 2.0}
    store_calibration(weights, "mobilenet_v2", entry)  # a reference file gets metadata written
    calibrated = Predictor(weights, device="cpu")
    assert calibrated.reference_format and calibrated.temperature == 2.0
    assert calibrated.calibration_label == "calibrated (T=2)"
    assert calibrated.predict_image(img).p_fake == pytest.approx(1 / (1 + math.exp(-1.5)), abs=1e-4)
    assert Predictor(weights, device="cpu", calibrated=False).temperature is None
    # Never silently replaced; replaced when asked.
    with pytest.raises(CalibrationExists, match="already calibrated"):
        store_calibration(weights, "mobilenet_v2", {**entry, "temperature": 3.0})
    store_calibration(weights, "mobilenet_v2", {**entry, "temperature": 3.0}, overwrite=True)
    assert read_metadata(weights)["calibration"]["temperature"] == 3.0

    # A hand-edited temperature of 0 would divide by zero: ignored, with a warning.
    meta = read_metadata(weights)
    meta["calibration"]["temperature"] = 0
    from dftui.core.checkpoint import save_json

    save_json(meta, weights.with_suffix(".json"))
    broken = Predictor(weights, device="cpu")
    assert broken.temperature is None and "not a finite number above 0" in broken.calibration_warning
    assert broken.predict_image(img).p_fake == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-4)
