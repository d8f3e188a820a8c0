"""Temperature scaling (Guo et al., 2017): one scalar T that divides the logits, fitted on
the validation set after training, so that the softmax probabilities mean what they say
("p_fake 0.9" is right about 90% of the time). T does not change which class is chosen,
only how sure the model claims to be, so accuracy, ROC AUC and EER are unchanged.

Also the measures of calibration: expected calibration error (ECE) and the reliability
diagram's bins, both over the confidence of the chosen class.

The temperature lives in the weights' metadata under ``"calibration"``; that file is
untrusted, so ``stored_temperature`` validates it before anything divides by it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

# 15 equal-width bins over [0, 1], as Guo et al. and most papers since: comparable figures.
ECE_BINS = 15
# The fitted T is kept within these bounds: beyond them the validation set says "the model
# is never right" or "never wrong", not a useful temperature (see fit_temperature's guards).
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
METADATA_KEY = "calibration"


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram: the images whose confidence lies in
    (lower, upper] (the first bin also takes 0), their mean confidence and accuracy."""

    lower: float
    upper: float
    confidence: float  # mean confidence of the bin's images; NaN when empty
    accuracy: float  # fraction of them classified correctly; NaN when empty
    count: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("confidence", "accuracy"):
            out[key] = None if not math.isfinite(out[key]) else round(out[key], 6)
        return out


def reliability_bins(confidence: Any, correct: Any, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """``bins`` equal-width bins over [0, 1] of the chosen class's confidence."""
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=np.float64).ravel()
    if conf.shape != ok.shape:
        raise ValueError(f"{conf.size} confidences but {ok.size} correctness flags")
    if bins < 1:
        raise ValueError("at least one bin is needed")
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; 0 goes to the first bin.
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    out = []
    for i in range(bins):
        mask = index == i
        n = int(mask.sum())
        out.append(ReliabilityBin(
            lower=float(edges[i]), upper=float(edges[i + 1]),
            confidence=float(conf[mask].mean()) if n else float("nan"),
            accuracy=float(ok[mask].mean()) if n else float("nan"),
            count=n,
        ))
    return out


def expected_calibration_error(confidence: Any, correct: Any, bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean gap |accuracy - confidence| over equal-width confidence
    bins (15 by default). 0 is perfectly calibrated; NaN for no images."""
    table = reliability_bins(confidence, correct, bins)
    total = sum(b.count for b in table)
    if total == 0:
        return float("nan")
    return float(sum(b.count * abs(b.accuracy - b.confidence) for b in table if b.count) / total)


def binary_confidence(p_fake: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of the chosen class, chosen correctly) for fake-probabilities and 0/1
    labels; the chosen class is the more probable one (p_fake >= 0.5: fake), as argmax."""
    p = np.asarray(p_fake, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.int64).ravel()
    chosen = (p >= 0.5).astype(np.int64)
    return np.maximum(p, 1.0 - p), chosen == y


def brier_score(p_fake: Any, labels: Any) -> float:
    """Mean squared gap between p_fake and the 0/1 label (lower is better)."""
    p = np.asarray(p_fake, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    return float(np.mean((p - y) ** 2)) if p.size else float("nan")


def margins_from_p_fake(p_fake: Any, temperature: float = 1.0) -> np.ndarray:
    """The logit margin (z_fake - z_real) before temperature scaling, recovered from
    probabilities that were computed as softmax(z / temperature) in float64 (exact up to
    margins of about 36: beyond that p rounds to 1 and the margin is clipped there)."""
    p = np.clip(np.asarray(p_fake, dtype=np.float64).ravel(), 1e-16, 1.0 - 1e-16)
    return (np.log(p) - np.log1p(-p)) * float(temperature)


def margins_to_logits(margins: Any) -> np.ndarray:
    """Two-class logits (real, fake) = (0, margin): softmax depends only on the margin."""
    m = np.asarray(margins, dtype=np.float64).ravel()
    return np.stack([np.zeros_like(m), m], axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def _ece_of(logits: np.ndarray, labels: np.ndarray, temperature: float, bins: int) -> float:
    probs = _softmax(logits / temperature)
    return expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == labels, bins)


@dataclass(frozen=True)
class CalibrationFit:
    """The outcome of fitting a temperature. ``temperature`` is None when the set cannot
    support a fit (``reason`` says why); the before-figures are still measured then."""

    temperature: float | None
    images: int
    ece_before: float
    ece_after: float | None
    nll_before: float
    nll_after: float | None
    bins: int = ECE_BINS
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.temperature is not None

    def summary(self) -> str:
        """One line for a log or a terminal."""
        if self.temperature is None:
            return f"not calibrated: {self.reason}"
        return (f"calibrated (T={self.temperature:.3g}): ECE {self.ece_before:.4f} → "
                f"{self.ece_after:.4f} on {self.images} images")

    def to_metadata(self, fitted_on: str) -> dict[str, Any]:
        """The weights' metadata entry (only for a successful fit)."""
        if self.temperature is None:
            raise ValueError("no temperature was fitted")
        return {
            "temperature": round(self.temperature, 6),
            "ece_before": round(self.ece_before, 6),
            "ece_after": round(self.ece_after or 0.0, 6),
            "nll_before": round(self.nll_before, 6),
            "nll_after": round(self.nll_after or 0.0, 6),
            "images": self.images,
            "bins": self.bins,
            "fitted_on": fitted_on,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("ece_before", "ece_after", "nll_before", "nll_after"):
            value = out[key]
            out[key] = None if value is None or not math.isfinite(value) else round(value, 6)
        return out


def fit_temperature(logits: Any, labels: Any, bins: int = ECE_BINS) -> CalibrationFit:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T) on
    (logits [N, C], labels [N]), by L-BFGS over log T (T stays positive).

    NLL is convex in 1/T, so it has one minimum, which is finite and positive exactly when
    (a) some image is misclassified (otherwise sharper is always better: T → 0) and (b) the
    logits beat uniform guessing on average (otherwise flatter is always better: T → ∞).
    Those sets, empty ones and sets of one class only (a temperature fitted on real images
    alone says nothing about fakes) get no temperature, with the reason."""
    import torch

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).ravel()
    if z.ndim != 2 or z.shape[0] != y.size:
        raise ValueError(f"logits must be [N, C] for {y.size} labels (got shape {z.shape})")
    n = int(y.size)

    def refused(reason: str) -> CalibrationFit:
        before_ece = _ece_of(z, y, 1.0, bins) if n else float("nan")
        before_nll = _nll(z, y, 1.0) if n else float("nan")
        return CalibrationFit(None, n, before_ece, None, before_nll, None, bins, reason)

    if n == 0:
        return refused("no validation image to fit a temperature on")
    if not np.isfinite(z).all():
        return refused("the model gave non-finite logits on the validation set")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must be class indices 0..{z.shape[1] - 1}")
    if np.unique(y).size < 2:
        return refused("the validation set holds one class only (a temperature needs both "
                       "real and fake images)")
    true = z[np.arange(n), y]
    others = z.copy()
    others[np.arange(n), y] = -np.inf
    if (true > others.max(axis=1)).all():
        return refused("every validation image is classified correctly and confidently: the "
                       "likelihood keeps improving as T → 0, so there is no temperature to fit "
                       "(the probabilities are left as they are)")
    if (z.mean(axis=1) - true).sum() >= 0:
        return refused("the model does no better than chance on the validation set, so the "
                       "best temperature is infinite (every probability 0.5)")

    zt = torch.from_numpy(z)
    yt = torch.from_numpy(y)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, tolerance_grad=1e-10,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(zt / log_t.exp(), yt)
        loss.backward()
        return loss

    with torch.enable_grad():  # the dashboard may call this under inference_mode
        opt.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t):
        return refused("the fit did not converge")
    t = min(max(t, MIN_TEMPERATURE), MAX_TEMPERATURE)
    nll_before, nll_after = _nll(z, y, 1.0), _nll(z, y, t)
    if nll_after > nll_before:  # a failed optimisation must never make things worse
        t, nll_after = 1.0, nll_before
    return CalibrationFit(
        temperature=t, images=n,
        ece_before=_ece_of(z, y, 1.0, bins), ece_after=_ece_of(z, y, t, bins),
        nll_before=nll_before, nll_after=nll_after, bins=bins,
    )


def fit_binary(p_fake: Sequence[float] | np.ndarray, labels: Any, temperature: float = 1.0,
               bins: int = ECE_BINS) -> CalibrationFit:
    """``fit_temperature`` for fake-probabilities already scored with ``temperature`` (an
    evaluation's scores): the logits are recovered from them."""
    return fit_temperature(margins_to_logits(margins_from_p_fake(p_fake, temperature)), labels, bins)


def stored_temperature(metadata: Any) -> tuple[float | None, str | None]:
    """(T, None) from a weights' metadata; (None, None) when it holds no calibration;
    (None, why) when it holds one that cannot be used (the file is untrusted: a string, a
    zero, a negative or non-finite number would divide every logit)."""
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        return None, None
    entry = metadata[METADATA_KEY]
    if entry is None:
        return None, None
    value = entry.get("temperature") if isinstance(entry, dict) else None
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        shown = repr(value)[:40] if isinstance(entry, dict) else f"a {type(entry).__name__}"
        return None, (f'the metadata\'s "{METADATA_KEY}" temperature {shown} is not a finite '
                      "number above 0; the probabilities are left uncalibrated")
    return float(value), None


def calibrate_weights(
    weights: Any, folder: Any, *, device: str = "auto", precision: str = "auto",
    scan: Any = None, stop: Any = None, batch_size: int = 32,
) -> CalibrationFit:
    """Score ``folder`` (real/ and fake/) with ``weights`` uncalibrated and fit a temperature
    on the scores (nothing is stored: see ``store_calibration``). A stop request gives a fit
    without a temperature."""
    from dftui.core.evaluate import evaluate_folder
    from dftui.core.predict import Predictor

    predictor = Predictor(weights, device, precision, calibrated=False)
    result = evaluate_folder(predictor, folder, batch_size=batch_size, stop=stop, scan=scan)
    fit = fit_binary(result.scores, result.labels)
    if result.stopped:
        return CalibrationFit(None, fit.images, fit.ece_before, None, fit.nll_before, None,
                              fit.bins, "stopped before every validation image was scored")
    return fit


class CalibrationExists(ValueError):
    """The weights already carry a temperature and replacing it was not asked for."""


def store_calibration(weights: Any, backbone: str, entry: dict[str, Any], overwrite: bool = False) -> Any:
    """Write ``entry`` (``CalibrationFit.to_metadata``) into the metadata beside ``weights``
    (atomically; the rest of the metadata is kept as it is) and return the metadata path.
    Weights without metadata (made by the reference scripts) get one written for them,
    stating the reference preprocessing they are read with anyway and the weights' digest.
    A temperature already there is replaced only with ``overwrite``: CalibrationExists."""
    from pathlib import Path

    from dftui.core.checkpoint import (
        REFERENCE_PREPROCESSING,
        build_metadata,
        file_digest,
        metadata_path,
        read_metadata_checked,
        save_json,
    )

    weights = Path(weights)
    meta, damaged = read_metadata_checked(weights)
    if damaged:
        raise ValueError(f"the metadata of {weights} cannot be read ({damaged}); fix or move it first")
    if meta is None:
        digest, size = file_digest(weights)
        meta = build_metadata(backbone, REFERENCE_PREPROCESSING, reference_format=True,
                              weights_file=weights.name, weights_sha256=digest, weights_size=size)
    old, _ = stored_temperature(meta)
    if old is not None and not overwrite:
        raise CalibrationExists(
            f"{weights.name} is already calibrated (T={old:.3g}); ask to replace the temperature "
            "to store the new one"
        )
    path = metadata_path(weights)
    save_json({**meta, METADATA_KEY: entry}, path)
    return path


__all__ = [
    "CalibrationExists",
    "ECE_BINS",
    "CalibrationFit",
    "ReliabilityBin",
    "binary_confidence",
    "brier_score",
    "calibrate_weights",
    "expected_calibration_error",
    "fit_binary",
    "fit_temperature",
    "margins_from_p_fake",
    "margins_to_logits",
    "reliability_bins",
    "store_calibration",
    "stored_temperature",
]
