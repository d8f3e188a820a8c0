"""Score-based metrics against scikit-learn on the same scores, including edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from dftui.core.metrics import (
    Confusion,
    Metrics,
    average_precision,
    compute_metrics,
    equal_error_rate,
    roc_auc,
    roc_curve,
)


def _cases(n_cases: int = 60) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n_cases):
        n = int(rng.integers(2, 200))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            y[0] = 1 - y[0]
        # Rounded scores give ties (as a model saturating at 0/1 does); some are informative.
        s = np.clip(rng.random(n) * 0.8 + y * rng.uniform(0, 0.6), 0, 1)
        if i % 2:
            s = np.round(s, int(rng.integers(1, 3)))
        out.append((y, s))
    return out


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.8])
def test_matches_sklearn_on_random_scores(threshold: float) -> None:
    for y, s in _cases():
        m = compute_metrics(y, s, threshold)
        pred = (s >= threshold).astype(int)
        assert m.accuracy == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
        assert m.precision == pytest.approx(skm.precision_score(y, pred, zero_division=0), abs=1e-12)
        assert m.recall == pytest.approx(skm.recall_score(y, pred, zero_division=0), abs=1e-12)
        assert m.f1 == pytest.approx(skm.f1_score(y, pred, zero_division=0), abs=1e-12)
        assert m.roc_auc == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert m.average_precision == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
        tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
        assert m.confusion == Confusion(int(tn), int(fp), int(fn), int(tp))
        # Per-class accuracy is per-class recall.
        per_class = skm.recall_score(y, pred, average=None, labels=[0, 1], zero_division=0)
        assert m.real_accuracy == pytest.approx(per_class[0], abs=1e-12)
        assert m.fake_accuracy == pytest.approx(per_class[1], abs=1e-12)
        assert m.threshold == threshold and m.n == y.size
        assert (m.n_real, m.n_fake) == (int((y == 0).sum()), int((y == 1).sum()))


def test_roc_curve_points_equal_sklearn() -> None:
    for y, s in _cases():
        for drop in (True, False):
            c = roc_curve(y, s, drop_intermediate=drop)
            fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=drop)
            np.testing.assert_allclose(c.fpr, fpr, atol=1e-12)
            np.testing.assert_allclose(c.tpr, tpr, atol=1e-12)
            np.testing.assert_array_equal(c.thresholds, thr)


def test_eer_matches_the_usual_brentq_recipe() -> None:
    for y, s in _cases(30):
        fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
        expected = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
        eer, thr = equal_error_rate(y, s)
        assert eer == pytest.approx(expected, abs=1e-9)
        assert 0.0 <= thr <= 1.0


def test_perfect_and_inverted_scores() -> None:
    y = np.array([0, 0, 1, 1])
    good = compute_metrics(y, [0.1, 0.2, 0.8, 0.9])
    assert (good.accuracy, good.roc_auc, good.eer, good.average_precision) == (1.0, 1.0, 0.0, 1.0)
    bad = compute_metrics(y, [0.9, 0.8, 0.2, 0.1])
    assert (bad.accuracy, bad.roc_auc, bad.eer) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_only_says_auc_is_undefined(label: int) -> None:
    y = np.full(5, label)
    s = np.array([0.1, 0.4, 0.6, 0.7, 0.9])
    # scikit-learn raises (older) or warns and returns NaN (1.9+); we say None with a note.
    try:
        with pytest.warns(UndefinedMetricWarning):
            assert np.isnan(skm.roc_auc_score(y, s))
    except ValueError:
        pass
    m = compute_metrics(y, s)
    assert m.roc_auc is None and m.eer is None and m.eer_threshold is None
    assert any("undefined" in note for note in m.notes)
    pred = (s >= 0.5).astype(int)
    assert m.accuracy == skm.accuracy_score(y, pred)
    assert m.precision == skm.precision_score(y, pred, zero_division=0)
    assert m.recall == skm.recall_score(y, pred, zero_division=0)
    if label == 1:  # all fake: AP is defined (precision 1 everywhere), as scikit-learn says
        assert m.average_precision == pytest.approx(skm.average_precision_score(y, s))
    else:
        assert m.average_precision is None
    assert roc_auc(y, s) is None
    curve = roc_curve(y, s)
    assert np.isnan(curve.fpr if label == 1 else curve.tpr).all()


def test_all_scores_equal() -> None:
    y = np.array([0, 1, 0, 1, 1, 0, 1])
    s = np.full(7, 0.5)
    m = compute_metrics(y, s)
    assert m.roc_auc == pytest.approx(skm.roc_auc_score(y, s)) == 0.5
    assert m.average_precision == pytest.approx(skm.average_precision_score(y, s))
    assert m.eer == pytest.approx(0.5)
    assert m.accuracy == skm.accuracy_score(y, (s >= 0.5).astype(int))  # all called fake
    assert any("same score" in note for note in m.notes)
    low = compute_metrics(y, np.zeros(7))
    assert low.precision == 0.0 and low.recall == 0.0 and low.f1 == 0.0  # zero_division=0


def test_threshold_is_inclusive_and_recorded() -> None:
    m = compute_metrics([0, 1], [0.5, 0.5], threshold=0.5)
    assert m.confusion == Confusion(tn=0, fp=1, fn=0, tp=1)
    assert compute_metrics([0, 1], [0.5, 0.5], threshold=0.51).confusion == Confusion(1, 0, 1, 0)


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="pair up"):
        compute_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="finite"):
        compute_metrics([0, 1], [0.5, float("nan")])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        compute_metrics([0, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="no scored images"):
        compute_metrics([], [])


def test_round_trips_through_a_dict() -> None:
    m = compute_metrics([0, 1, 1, 0], [0.2, 0.7, 0.4, 0.1])
    assert Metrics.from_dict(m.to_dict()) == m
    assert average_precision([0, 1], [0.2, 0.7]) == 1.0
