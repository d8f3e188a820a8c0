"""Binary classification metrics with fake (label 1) as the positive class."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Confusion:
    tn: int  # real called real
    fp: int  # real called fake
    fn: int  # fake called real
    tp: int  # fake called fake

    @classmethod
    def from_labels(cls, labels: Any, preds: Any) -> Confusion:
        y = np.asarray(labels, dtype=np.int64)
        p = np.asarray(preds, dtype=np.int64)
        return cls(
            tn=int(np.sum((y == 0) & (p == 0))),
            fp=int(np.sum((y == 0) & (p == 1))),
            fn=int(np.sum((y == 1) & (p == 0))),
            tp=int(np.sum((y == 1) & (p == 1))),
        )

    @property
    def total(self) -> int:
        return self.tn + self.fp + self.fn + self.tp

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.total if self.total else 0.0

    @property
    def precision(self) -> float:
        # Zero when nothing was called fake, as scikit-learn's zero_division=0.
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0

    @property
    def real_accuracy(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else 0.0

    @property
    def fake_accuracy(self) -> float:
        return self.recall

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Score-based metrics. Each matches scikit-learn's function of the same name on the same
# scores (tests/core/test_metrics.py checks it); scikit-learn itself is only a test
# dependency, so these are written with numpy.

DEFAULT_THRESHOLD = 0.5  # on p_fake, as the reference scripts' argmax of two softmax outputs


@dataclass(frozen=True)
class RocCurve:
    """ROC points, as ``sklearn.metrics.roc_curve`` (drop_intermediate=True) returns them:
    ``thresholds[0]`` is +inf, where nothing is called fake. fpr/tpr are NaN when the
    scores hold no real / no fake images (the curve is then undefined)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def _check_inputs(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores; they must pair up")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers (drop unreadable images first)")
    return y, s


def _binary_clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positives at each distinct score, highest score first."""
    order = np.argsort(s, kind="mergesort")[::-1]
    s = s[order]
    y = y[order]
    distinct = np.where(np.diff(s))[0]
    idx = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[idx].astype(np.float64)
    fps = 1 + idx - tps
    return fps, tps, s[idx]


def roc_curve(labels: Any, scores: Any, drop_intermediate: bool = True) -> RocCurve:
    y, s = _check_inputs(labels, scores)
    if y.size == 0:
        raise ValueError("no scores to build a ROC curve from")
    fps, tps, thr = _binary_clf_curve(y, s)
    if drop_intermediate and fps.size > 2:
        # Keep only the corners: points on a straight segment add nothing to the curve.
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps = np.r_[0.0, fps]
    tps = np.r_[0.0, tps]
    thr = np.r_[np.inf, thr]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return RocCurve(fpr, tpr, thr)


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_auc(labels: Any, scores: Any) -> float | None:
    """Area under the ROC curve; None when only one class is present (it is undefined:
    scikit-learn raises ValueError there)."""
    y, s = _check_inputs(labels, scores)
    if y.size == 0 or y.min() == y.max():
        return None
    curve = roc_curve(y, s)
    return _trapezoid(curve.fpr, curve.tpr)


def average_precision(labels: Any, scores: Any) -> float | None:
    """Area under the precision-recall curve as a step sum, as scikit-learn's
    ``average_precision_score``. None when there is no fake image (recall undefined)."""
    y, s = _check_inputs(labels, scores)
    if y.size == 0 or y.sum() == 0:
        return None
    fps, tps, _ = _binary_clf_curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    # From the highest threshold down; the curve starts at recall 0, precision 1.
    recall = np.r_[0.0, recall]
    return float(np.sum(np.diff(recall) * precision))


def equal_error_rate(labels: Any, scores: Any) -> tuple[float, float] | None:
    """(EER, threshold): where the false-positive rate equals the false-negative rate on
    the ROC curve, linearly interpolated between its two neighbouring points. None when only
    one class is present. The threshold is that of the nearer ROC point."""
    y, s = _check_inputs(labels, scores)
    if y.size == 0 or y.min() == y.max():
        return None
    curve = roc_curve(y, s, drop_intermediate=False)
    fpr, fnr = curve.fpr, 1.0 - curve.tpr
    diff = fnr - fpr  # falls from 1 (threshold +inf) to -1 (lowest threshold)
    i = int(np.argmax(diff <= 0))  # first point at or past the crossing; i >= 1
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    eer = float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
    near = i if t >= 0.5 else i - 1
    thr = curve.thresholds[near]
    return eer, float(min(thr, 1.0) if np.isinf(thr) else thr)


@dataclass(frozen=True)
class Metrics:
    """Everything `dftui evaluate` reports for one set of scores (fake = positive)."""

    n: int
    n_real: int
    n_fake: int
    threshold: float
    confusion: Confusion
    accuracy: float
    precision: float
    recall: float
    f1: float
    real_accuracy: float
    fake_accuracy: float
    roc_auc: float | None
    average_precision: float | None
    eer: float | None
    eer_threshold: float | None
    notes: tuple[str, ...] = ()  # why a metric is missing or misleading

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["confusion"] = self.confusion.to_dict()
        out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        data = dict(data)
        data["confusion"] = Confusion(**data["confusion"])
        data["notes"] = tuple(data.get("notes", ()))
        return cls(**data)


def predictions(scores: Any, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """1 (fake) where p_fake >= threshold, else 0 (real)."""
    return (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)


def threshold_metrics(
    labels: Any, scores: Any, threshold: float, auc: float | None, ap: float | None,
    eer: tuple[float, float] | None, notes: tuple[str, ...] = (),
) -> Metrics:
    """The threshold-dependent part, for a screen that moves the threshold: the scores-only
    metrics (AUC, AP, EER) are passed in, computed once."""
    y, s = _check_inputs(labels, scores)
    conf = Confusion.from_labels(y, predictions(s, threshold))
    return Metrics(
        n=int(y.size),
        n_real=int((y == 0).sum()),
        n_fake=int((y == 1).sum()),
        threshold=float(threshold),
        confusion=conf,
        accuracy=conf.accuracy,
        precision=conf.precision,
        recall=conf.recall,
        f1=conf.f1,
        real_accuracy=conf.real_accuracy,
        fake_accuracy=conf.fake_accuracy,
        roc_auc=auc,
        average_precision=ap,
        eer=eer[0] if eer else None,
        eer_threshold=eer[1] if eer else None,
        notes=notes,
    )


def compute_metrics(labels: Any, scores: Any, threshold: float = DEFAULT_THRESHOLD) -> Metrics:
    """All metrics for p_fake ``scores`` against 0/1 ``labels``."""
    y, s = _check_inputs(labels, scores)
    if y.size == 0:
        raise ValueError("no scored images: nothing to compute metrics on")
    notes: list[str] = []
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    if n_real == 0 or n_fake == 0:
        only = "fake" if n_real == 0 else "real"
        notes.append(
            f"only {only} images were scored: ROC AUC and EER are undefined (they need both "
            "classes)" + (", and so is average precision (no fake image)" if n_fake == 0 else "")
        )
    if s.size > 1 and np.all(s == s[0]):
        notes.append(
            f"every image got the same score ({s[0]:.4f}): the model does not separate the "
            "classes (AUC 0.5 at best)"
        )
    return threshold_metrics(
        y, s, threshold, roc_auc(y, s), average_precision(y, s), equal_error_rate(y, s), tuple(notes)
    )
