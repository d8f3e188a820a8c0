"""Evaluate weights on a real/fake test folder: score every image, compute the metrics, compare
two weights files, measure robustness under corruptions, and keep a record of each evaluation.

Like training, scoring reports through small frozen events and checks a stop flag every batch,
so the CLI, the Evaluate screen and the tests share one code path."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dftui.core.augment import CORRUPTIONS, Corruption
from dftui.core.calibration import (
    ECE_BINS,
    ReliabilityBin,
    binary_confidence,
    brier_score,
    expected_calibration_error,
    reliability_bins,
)
from dftui.core.checkpoint import save_json
from dftui.core.data import DatasetScan, load_rgb, load_tensor, scan_folder
from dftui.core.errors import describe_error, unexpected_error
from dftui.core.events import Emit, EvalFinished, EvalProgress, EvalStarted, Event
from dftui.core.files import atomic_write
from dftui.core.metrics import (
    DEFAULT_THRESHOLD,
    Metrics,
    RocCurve,
    compute_metrics,
    roc_curve,
    threshold_metrics,
)
from dftui.core.runs import data_home, runs_root
from dftui.core.untrusted import Fields, parse_json, read_json

if TYPE_CHECKING:
    from dftui.core.predict import Predictor

RECORD_FORMAT = 1
PROGRESS_INTERVAL_S = 0.1  # at most ~10 progress events a second
EVALUATIONS = "evaluations"
INDEX = "index.jsonl"  # records kept with their run, listed from the data folder too


class EvaluationError(ValueError):
    """An evaluation that cannot be done; the message says why and what to do."""


# ----------------------------------------------------------------------------- events




def _ignore(_event: Event) -> None:
    pass


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ScoredImage:
    path: str
    label: int  # 0 real, 1 fake
    p_fake: float

    def predicted(self, threshold: float) -> int:
        return int(self.p_fake >= threshold)

    def confidence(self) -> float:
        """How sure the model was of the class it chose (0.5-1)."""
        return max(self.p_fake, 1.0 - self.p_fake)


@dataclass
class EvaluationResult:
    weights: str
    backbone: str
    folder: str
    threshold: float
    images: list[ScoredImage]
    unreadable: list[tuple[str, str]]  # (path, reason)
    metrics: Metrics
    seconds: float
    device: str = "cpu"
    batch_size: int = 32
    run_dir: str | None = None  # the weights' training run, when their metadata names one
    corruption: str | None = None
    severity: float | None = None
    stopped: bool = False  # cut short by the stop flag: metrics cover ``images`` only
    created: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )
    record_dir: str | None = None  # where save_evaluation wrote it
    # The temperature the scores were divided by (the weights' calibration), None: none.
    temperature: float | None = None

    def __post_init__(self) -> None:
        self._labels = np.array([im.label for im in self.images], dtype=np.int64)
        self._scores = np.array([im.p_fake for im in self.images], dtype=np.float64)
        self._auc = self.metrics.roc_auc
        self._ap = self.metrics.average_precision
        self._eer = (
            (self.metrics.eer, self.metrics.eer_threshold) if self.metrics.eer is not None else None
        )

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def scores(self) -> np.ndarray:
        return self._scores

    @property
    def label(self) -> str:
        if self.corruption is None:
            return "clean"
        spec = CORRUPTIONS.get(self.corruption)
        return spec.label(self.severity or 0) if spec else f"{self.corruption} {self.severity}"

    def metrics_at(self, threshold: float) -> Metrics:
        """The metrics with another decision threshold (AUC, AP and EER do not change)."""
        return threshold_metrics(
            self._labels, self._scores, threshold, self._auc, self._ap, self._eer, self.metrics.notes
        )

    def roc(self) -> RocCurve:
        return roc_curve(self._labels, self._scores)

    @property
    def calibration_label(self) -> str:
        return f"calibrated (T={self.temperature:.3g})" if self.temperature else "uncalibrated"

    def reliability(self) -> list[ReliabilityBin]:
        """The reliability diagram's bins (confidence of the chosen class, 15 bins)."""
        return reliability_bins(*binary_confidence(self._scores, self._labels))

    @property
    def ece(self) -> float:
        """Expected calibration error of the scores as given (15 equal-width bins)."""
        return expected_calibration_error(*binary_confidence(self._scores, self._labels))

    @property
    def brier(self) -> float:
        return brier_score(self._scores, self._labels)

    def calibration(self) -> dict[str, Any]:
        """How well the probabilities match the outcomes, JSON-ready."""
        return {
            "applied": self.calibration_label,
            "temperature": self.temperature,
            "ece": round(self.ece, 6),
            "ece_bins": ECE_BINS,
            "brier": round(self.brier, 6),
            "reliability": [b.to_dict() for b in self.reliability()],
        }

    def misclassified(self, threshold: float | None = None) -> list[ScoredImage]:
        """Wrong calls at ``threshold``, the most confidently wrong first."""
        t = self.threshold if threshold is None else threshold
        wrong = [im for im in self.images if im.predicted(t) != im.label]
        return sorted(wrong, key=lambda im: abs(im.p_fake - t), reverse=True)

    def settings(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "backbone": self.backbone,
            "run_dir": self.run_dir,
            "folder": self.folder,
            "threshold": self.threshold,
            "device": self.device,
            "batch_size": self.batch_size,
            "corruption": self.corruption,
            "severity": self.severity,
            "temperature": self.temperature,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-image rows: those go to the CSV)."""
        return {
            **self.settings(),
            "label": self.label,
            "created": self.created,
            "n_scored": len(self.images),
            "n_unreadable": len(self.unreadable),
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "metrics": self.metrics.to_dict(),
            "calibration": self.calibration(),
            "record_dir": self.record_dir,
        }

    def write_csv(self, path: str | Path, threshold: float | None = None) -> Path:
        """One row per image: path, label, p_fake, predicted (0 real, 1 fake)."""
        t = self.threshold if threshold is None else threshold
        path = Path(path)
        with atomic_write(path, "w") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "p_fake", "predicted"])
            for im in self.images:
                writer.writerow([im.path, im.label, f"{im.p_fake:.6f}", im.predicted(t)])
        return path


# ----------------------------------------------------------------------------- scoring


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _scan(folder: str | Path) -> DatasetScan:
    return scan_folder(folder)


def evaluate_folder(
    predictor: Predictor,
    folder: str | Path,
    *,
    threshold: float | None = None,
    batch_size: int = 32,
    emit: Emit = _ignore,
    stop: threading.Event | None = None,
    corruption: str | None = None,
    severity: float | None = None,
    scan: DatasetScan | None = None,
    threads: int | None = None,
    pass_index: int = 1,
    passes: int = 1,
) -> EvaluationResult:
    """Score every image of ``folder`` (real/ and fake/) with ``predictor``.

    Raises DataError for a folder that is not a data set, EvaluationError when nothing could
    be scored. A stop request ends scoring after the current batch: the result covers the
    images scored so far and is marked ``stopped``."""
    import torch

    from dftui.core.predict import NO_SCORE

    if batch_size < 1:
        raise EvaluationError(f"batch size must be at least 1 (got {batch_size})")
    t = predictor.threshold if threshold is None else threshold
    if not 0.0 <= t <= 1.0:
        raise EvaluationError(f"threshold must be between 0 and 1 (got {t})")
    spec: Corruption | None = None
    if corruption is not None:
        if corruption not in CORRUPTIONS:
            raise EvaluationError(
                f"unknown corruption {corruption!r}; choose from {', '.join(CORRUPTIONS)}"
            )
        spec = CORRUPTIONS[corruption]
        if severity is None:
            raise EvaluationError(f"corruption {corruption} needs a severity")
    scan = scan or _scan(folder)
    folder_s = str(scan.root)
    samples = scan.samples
    unreadable = list(scan.unreadable)
    label_text = spec.label(severity) if spec and severity is not None else "clean"
    emit(EvalStarted(str(predictor.weights), folder_s, len(samples), len(unreadable), label_text,
                     pass_index, passes))
    # JPEG draft decoding is only used clean: a corruption is applied at full resolution.
    draft = predictor.preprocessing.input_size if spec is None else None
    transform = predictor.transform

    # The fast tensor decoder is for clean images only: a corruption works on a PIL image.
    use_tensor = spec is None and getattr(transform, "takes_tensor", False)

    def load(index: int) -> Any:
        if use_tensor:
            return transform(load_tensor(samples[index][0], draft))
        img = load_rgb(samples[index][0], draft)
        if spec is not None:
            img = spec.apply(img, float(severity), seed=index)  # type: ignore[arg-type]
        return transform(img)

    predictor.forward.plan(len(samples) * (passes - pass_index + 1))  # this pass and the rest
    scored: list[ScoredImage] = []
    t0 = time.perf_counter()
    last_emit = 0.0
    stopped = False
    workers = threads or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dftui-eval") as pool:
        # Decoding the next batch overlaps with the model running on this one.
        def submit(start: int) -> list[Future[Any]]:
            return [pool.submit(load, i) for i in range(start, min(start + batch_size, len(samples)))]

        pending = submit(0)
        for start in range(0, len(samples), batch_size):
            if _stopped(stop):
                stopped = True
                for fut in pending:
                    fut.cancel()
                break
            futures, pending = pending, submit(start + batch_size)
            tensors, kept = [], []
            for offset, fut in enumerate(futures):
                index = start + offset
                try:
                    tensors.append(fut.result())
                    kept.append(index)
                except Exception as exc:  # noqa: BLE001 - a broken file is counted, not fatal
                    unreadable.append((samples[index][0], describe_error(exc)))
            if tensors:
                probs = predictor.probabilities(torch.stack(tensors)).tolist()
                for index, p in zip(kept, probs, strict=True):
                    path, label = samples[index]
                    if not math.isfinite(p):
                        # NaN would be counted as "real" by every threshold: not a score.
                        unreadable.append((path, NO_SCORE))
                        continue
                    scored.append(ScoredImage(path, label, float(p)))
            now = time.perf_counter()
            done = min(start + batch_size, len(samples))
            if now - last_emit >= PROGRESS_INTERVAL_S or done == len(samples):
                last_emit = now
                elapsed = now - t0
                emit(EvalProgress(folder_s, label_text, done, len(samples),
                                  done / elapsed if elapsed > 0 else 0.0, elapsed, pass_index, passes))
    seconds = time.perf_counter() - t0
    if not scored:
        raise EvaluationError(
            "stopped before any image was scored" if stopped
            else f"no image in {folder_s} could be scored ({len(unreadable)} unreadable)"
        )
    labels = [im.label for im in scored]
    scores = [im.p_fake for im in scored]
    metrics = compute_metrics(labels, scores, t)
    if stopped:
        metrics = _with_note(metrics, f"stopped early: {len(scored)} of {len(samples)} images scored")
    result = EvaluationResult(
        weights=str(predictor.weights),
        backbone=predictor.spec.name,
        folder=folder_s,
        threshold=t,
        images=scored,
        unreadable=unreadable,
        metrics=metrics,
        seconds=seconds,
        device=str(predictor.device),
        batch_size=batch_size,
        run_dir=_run_dir_of(predictor.metadata, predictor.weights),
        corruption=corruption,
        severity=severity,
        stopped=stopped,
        temperature=predictor.temperature,
    )
    emit(EvalFinished(folder_s, label_text, len(scored), metrics.accuracy, metrics.roc_auc,
                      seconds, stopped))
    return result


def _with_note(m: Metrics, note: str) -> Metrics:
    from dataclasses import replace

    return replace(m, notes=(*m.notes, note))


def _run_dir_of(metadata: dict[str, Any], weights: str | Path) -> str | None:
    """The weights' training run folder, only when it really is that run's own record: the
    metadata is untrusted (any file may sit beside a .pth), and evaluations are written
    into this folder. Its name and its run.json must carry the metadata's run id, and that
    run must have written these very weights; otherwise None (records go to the data home)."""
    from dftui.core.untrusted import read_json

    run_dir, run_id = metadata.get("run_dir"), metadata.get("run_id")
    if not isinstance(run_dir, str) or not isinstance(run_id, str) or not run_dir or not run_id:
        return None
    folder = Path(run_dir)
    try:
        if folder.is_symlink() or not folder.is_dir() or folder.name != run_id:
            return None
        info = read_json(folder / "run.json")
        config = read_json(folder / "config.json")
    except (OSError, ValueError):  # UntrustedError (FIFO, huge, deep, not an object) too
        return None
    if info.get("run_id") != run_id:
        return None
    recorded = [p for p in (info.get("weights_path"), config.get("weights_path")) if isinstance(p, str) and p]
    for path in recorded:
        try:
            if os.path.samefile(path, weights):
                return str(folder)
        except (OSError, ValueError):
            continue
    return None



# ----------------------------------------------------------------------------- compare


COMPARED = (
    "accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "eer",
    "real_accuracy", "fake_accuracy",
)


@dataclass
class Comparison:
    a: EvaluationResult
    b: EvaluationResult

    def rows(self, threshold: float | None = None) -> list[tuple[str, float | None, float | None, float | None]]:
        """(metric, a, b, b - a) for each metric; the difference is None when either is."""
        ma = self.a.metrics if threshold is None else self.a.metrics_at(threshold)
        mb = self.b.metrics if threshold is None else self.b.metrics_at(threshold)
        out = []
        for name in COMPARED:
            va, vb = getattr(ma, name), getattr(mb, name)
            out.append((name, va, vb, None if va is None or vb is None else vb - va))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.a.folder,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "difference": {name: diff for name, _, _, diff in self.rows()},
        }


def compare(
    predictor_a: Predictor,
    predictor_b: Predictor,
    folder: str | Path,
    **kwargs: Any,
) -> Comparison:
    """Both weights on the same images (the folder is scanned once)."""
    scan = kwargs.pop("scan", None) or _scan(folder)
    a = evaluate_folder(predictor_a, folder, scan=scan, pass_index=1, passes=2, **kwargs)
    b = evaluate_folder(predictor_b, folder, scan=scan, pass_index=2, passes=2, **kwargs)
    return Comparison(a, b)


# ----------------------------------------------------------------------------- robustness


@dataclass(frozen=True)
class RobustnessRow:
    corruption: str  # "clean" for the baseline
    severity: float | None
    label: str
    n: int
    accuracy: float
    roc_auc: float | None
    eer: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "corruption": self.corruption,
            "severity": self.severity,
            "label": self.label,
            "n": self.n,
            "accuracy": self.accuracy,
            "roc_auc": self.roc_auc,
            "eer": self.eer,
        }


def _row(result: EvaluationResult) -> RobustnessRow:
    m = result.metrics
    return RobustnessRow(result.corruption or "clean", result.severity, result.label, m.n,
                         m.accuracy, m.roc_auc, m.eer)


@dataclass
class Robustness:
    clean: EvaluationResult
    rows: list[RobustnessRow]  # the clean baseline first, then each corruption and severity
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.clean.folder, "stopped": self.stopped,
                "rows": [r.to_dict() for r in self.rows]}


def robustness(
    predictor: Predictor,
    folder: str | Path,
    corruptions: Sequence[str],
    *,
    clean: EvaluationResult | None = None,
    severities: dict[str, Sequence[float]] | None = None,
    stop: threading.Event | None = None,
    **kwargs: Any,
) -> Robustness:
    """Accuracy and AUC on the clean images and under each corruption at each severity.
    Pass ``clean`` to reuse an evaluation already made of the same folder."""
    for name in corruptions:
        if name not in CORRUPTIONS:
            raise EvaluationError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    levels = [
        (name, float(s))
        for name in corruptions
        for s in (severities or {}).get(name, CORRUPTIONS[name].severities)
    ]
    scan = kwargs.pop("scan", None) or _scan(folder)
    passes = len(levels) + (clean is None)
    if clean is None:
        clean = evaluate_folder(predictor, folder, scan=scan, stop=stop, pass_index=1,
                                passes=passes, **kwargs)
    rows = [_row(clean)]
    stopped = clean.stopped
    for i, (name, sev) in enumerate(levels):
        if stopped or _stopped(stop):
            stopped = True
            break
        res = evaluate_folder(predictor, folder, scan=scan, stop=stop, corruption=name,
                              severity=sev, pass_index=passes - len(levels) + i + 1,
                              passes=passes, **kwargs)
        stopped = res.stopped
        if not res.stopped:
            rows.append(_row(res))
    return Robustness(clean, rows, stopped)


# ----------------------------------------------------------------------------- records


def evaluations_root(run_dir: str | Path | None = None) -> Path:
    """<run_dir>/evaluations when the weights came from a run recorded here, else
    <data home>/evaluations."""
    if run_dir and Path(run_dir).is_dir():
        return Path(run_dir) / EVALUATIONS
    return data_home() / EVALUATIONS


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "folder"


def _new_record_dir(root: Path, folder: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{_slug(Path(folder).name)}"
    n = 1
    while True:
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def save_evaluation(
    result: EvaluationResult,
    robust: Robustness | None = None,
    root: str | Path | None = None,
) -> Path:
    """Write evaluation.json (settings + metrics [+ robustness]) and scores.csv to a new
    record folder; returns it and sets ``result.record_dir``."""
    record = _new_record_dir(Path(root) if root else evaluations_root(result.run_dir), result.folder)
    result.record_dir = str(record)
    data = {"format": RECORD_FORMAT, **result.to_dict()}
    if robust is not None:
        data["robustness"] = robust.to_dict()
    result.write_csv(record / "scores.csv")
    save_json(data, record / "evaluation.json")
    home_root = data_home() / EVALUATIONS
    if record.parent != home_root:
        # Records kept with a run are also indexed here, so list_evaluations() finds them
        # wherever that run lives (``--runs-dir``).
        home_root.mkdir(parents=True, exist_ok=True)
        with open(home_root / INDEX, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"record_dir": str(record)}) + "\n")
    return record


@dataclass(frozen=True)
class EvaluationSummary:
    record_dir: Path
    created: str
    weights: str
    backbone: str
    folder: str
    run_dir: str | None
    threshold: float
    n_scored: int
    n_unreadable: int
    accuracy: float
    roc_auc: float | None
    f1: float
    eer: float | None
    robustness_rows: int  # 0 when no corruption was tried
    stopped: bool


def read_evaluation(record_dir: str | Path) -> dict[str, Any] | None:
    """evaluation.json as an object, or None when it is missing or unusable (the record is
    untrusted: cut short, edited, nested absurdly deep, of the wrong type)."""
    try:
        return read_json(Path(record_dir) / "evaluation.json")
    except (OSError, ValueError):
        return None


def _summary(record_dir: Path) -> EvaluationSummary | None:
    """A listing line of a saved evaluation; None unless every field it shows has its type
    (a screen formats roc_auc with :.3f, so a string there must not get through)."""
    data = read_evaluation(record_dir)
    if not data or not isinstance(data.get("metrics"), dict):
        return None
    f, m = Fields(data), Fields(data["metrics"])
    robustness = data.get("robustness")
    rows = robustness.get("rows") if isinstance(robustness, dict) else None
    run_dir = data.get("run_dir")
    summary = EvaluationSummary(
        record_dir=record_dir,
        created=f.str("created", ""),
        weights=f.str("weights", ""),
        backbone=f.str("backbone", "?"),
        folder=f.str("folder", ""),
        run_dir=run_dir if isinstance(run_dir, str) else None,
        threshold=f.float("threshold", DEFAULT_THRESHOLD),
        n_scored=f.int("n_scored", m.int("n", 0, minimum=0), minimum=0),
        n_unreadable=f.int("n_unreadable", 0, minimum=0),
        accuracy=m.float("accuracy"),
        roc_auc=m.float("roc_auc"),
        f1=m.float("f1", 0.0),
        eer=m.float("eer"),
        robustness_rows=len(rows) if isinstance(rows, list) else 0,
        stopped=f.bool("stopped", False),
    )
    if f.problems or m.problems or summary.accuracy is None:
        return None
    return summary


def list_evaluations(run_dir: str | Path | None = None) -> list[EvaluationSummary]:
    """Saved evaluations, newest first: those of one run when ``run_dir`` is given, else all
    of them (every run's, and those of weights without a run record)."""
    dirs: list[Path] = []
    if run_dir is not None:
        roots = [Path(run_dir) / EVALUATIONS]
    else:
        home_root = data_home() / EVALUATIONS
        roots = [home_root]
        runs = runs_root()
        if runs.is_dir():
            roots += [p / EVALUATIONS for p in runs.iterdir() if (p / EVALUATIONS).is_dir()]
        dirs += _indexed(home_root / INDEX)
    for root in roots:
        if root.is_dir():
            dirs += [p for p in root.iterdir() if p.is_dir()]
    seen: set[Path] = set()
    found = []
    for path in dirs:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        summary = _summary(path)
        if summary is not None:
            found.append(summary)
    return sorted(found, key=lambda s: (s.created, s.record_dir.name), reverse=True)


def _indexed(index: Path) -> list[Path]:
    """Record folders named in the index that still exist (deleted runs drop out)."""
    out = []
    try:
        lines = index.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            path = Path(parse_json(line)["record_dir"])
        except (ValueError, KeyError, TypeError):  # UntrustedError is a ValueError
            continue
        if path.is_dir():
            out.append(path)
    return out


def load_evaluation(record_dir: str | Path) -> EvaluationResult:
    """A saved evaluation back as a result (scores from scores.csv), e.g. to reopen it."""
    record_dir = Path(record_dir)
    data = read_evaluation(record_dir)
    if data is None:
        raise EvaluationError(f"{record_dir} holds no readable evaluation.json")
    images = []
    try:
        with open(record_dir / "scores.csv", encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                images.append(ScoredImage(row["path"], int(row["label"]), float(row["p_fake"])))
    except (OSError, KeyError, ValueError, TypeError, csv.Error) as exc:
        raise EvaluationError(f"{record_dir / 'scores.csv'} cannot be read: {exc}") from None
    try:
        return _result_from(record_dir, data, images)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # evaluation.json is untrusted: a missing or mistyped field is one readable error.
        raise EvaluationError(
            f"{record_dir / 'evaluation.json'} is damaged ({unexpected_error(exc)})"
        ) from None


def _result_from(record_dir: Path, data: dict[str, Any], images: list[ScoredImage]) -> EvaluationResult:
    return EvaluationResult(
        weights=data["weights"],
        backbone=data.get("backbone", "?"),
        folder=data["folder"],
        threshold=float(data["threshold"]),
        images=images,
        unreadable=[(u["path"], u["reason"]) for u in data.get("unreadable", [])],
        metrics=Metrics.from_dict(data["metrics"]),
        seconds=float(data.get("seconds", 0.0)),
        device=data.get("device", "cpu"),
        batch_size=int(data.get("batch_size", 32)),
        run_dir=data.get("run_dir"),
        corruption=data.get("corruption"),
        severity=data.get("severity"),
        stopped=bool(data.get("stopped", False)),
        created=data.get("created", ""),
        record_dir=str(record_dir),
        temperature=_temperature_of(data),
    )


def _temperature_of(data: dict[str, Any]) -> float | None:
    """The record's temperature when it is a usable one (the record is untrusted)."""
    value = data.get("temperature")
    return float(value) if type(value) in (int, float) and math.isfinite(value) and value > 0 else None


__all__ = [
    "Comparison",
    "EvalFinished",
    "EvalProgress",
    "EvalStarted",
    "EvaluationError",
    "EvaluationResult",
    "EvaluationSummary",
    "Robustness",
    "RobustnessRow",
    "ScoredImage",
    "compare",
    "evaluate_folder",
    "evaluations_root",
    "list_evaluations",
    "load_evaluation",
    "read_evaluation",
    "robustness",
    "save_evaluation",
]
