"""The event schema: every event the engine emits (training, preparing data sets,
evaluating weights), in one module with one type table (``EVENT_TYPES``). Every listener
(dashboard, run recorder, CLI printer, tests) is built from these, so they are plain frozen
dataclasses with JSON-ready fields, and ``event_from_dict`` rebuilds any of them from a
record another process or an older version wrote.

Adding a field: give it a default, so that records written before it still replay."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

from dftui.core.untrusted import MissingField, UntrustedError, check_dataclass, json_type


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **_plain(self)}


def _plain(value: Any) -> Any:
    """``value`` with dataclasses and mappings made plain dicts, as ``dataclasses.asdict``
    does, except that a dict subclass (a Counter) becomes a dict of its items: asdict
    rebuilds it from (key, value) pairs, which a Counter counts as keys."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


# ------------------------------------------------------------------ training (train.fit)


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_id: str
    run_dir: str
    config: dict[str, Any]
    device: str
    device_name: str
    precision: str
    channels_last: bool
    train_size: int
    val_size: int
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    steps_per_epoch: int
    start_epoch: int
    params: int
    workers: int


@dataclass(frozen=True)
class DownloadProgress(Event):
    kind: ClassVar[str] = "download_progress"
    file: str
    done_bytes: int
    total_bytes: int | None


@dataclass(frozen=True)
class LogMessage(Event):
    """Something the user should read: a skipped image, missing weights, a fallback."""

    kind: ClassVar[str] = "log"
    level: str  # "info" | "warning" | "error"
    text: str
    fixes: tuple[str, ...] = ()  # ways out, as dftui.core.advice.Fix.encode() strings


@dataclass(frozen=True)
class BatchEnd(Event):
    kind: ClassVar[str] = "batch_end"
    phase: str  # "train" | "val"
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based
    batches: int
    loss: float
    images_per_s: float
    data_wait: float  # fraction of step time spent waiting for data, this epoch so far
    elapsed_s: float  # since the run started
    eta_s: float | None  # to the end of the run
    rss_mb: float
    gpu_mb: float | None = None


@dataclass(frozen=True)
class EpochEnd(Event):
    kind: ClassVar[str] = "epoch_end"
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_precision: float
    val_recall: float
    val_f1: float
    seconds: float
    images_per_s: float
    data_wait: float
    is_best: bool
    best_epoch: int
    skipped_images: int = 0
    # With weight averaging (EMA) the val_* fields are the average's (the saved weights);
    # these are the trained model's own. None without EMA.
    raw_val_loss: float | None = None
    raw_val_accuracy: float | None = None
    # The learning rate this epoch trained at (it changes with a schedule). None in
    # records written before it was recorded.
    lr: float | None = None


@dataclass(frozen=True)
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint_saved"
    role: str  # "best" | "resume"
    path: str
    epoch: int


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str  # "finished" | "stopped" | "interrupted"
    epochs_completed: int
    best_epoch: int | None
    best_val_accuracy: float | None
    weights_path: str | None
    metadata_path: str | None
    run_dir: str
    seconds: float
    # The epoch early stopping ended the run after (status "finished"); None otherwise.
    # Defaulted: records written before early stopping existed replay without it.
    early_stop_epoch: int | None = None
    # Set when the run calibrated its best weights (TrainConfig.calibrate): the temperature
    # stored in their metadata and the validation ECE without and with it.
    temperature: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None


@dataclass(frozen=True)
class RunFailed(Event):
    kind: ClassVar[str] = "run_failed"
    message: str
    run_dir: str | None = None
    epoch: int | None = None
    batch: int | None = None
    weights_path: str | None = None
    details: str = field(default="", repr=False)
    fixes: tuple[str, ...] = ()  # ways out, as dftui.core.advice.Fix.encode() strings


# ------------------------------------------------------------------ preparing data sets
# ``prepare.prepare_openforensics``: one OpenForensics split after another.


@dataclass
class SplitSummary:
    split: str
    output_dir: str
    annotations_path: str = ""
    status: str = "pending"  # "finished" | "stopped" | "failed" | "pending"
    error: str | None = None
    images: int = 0  # images listed in the annotation file
    images_done: int = 0
    images_missing: int = 0
    images_unreadable: int = 0
    faces: int = 0  # annotations in the file
    written: int = 0  # crops written by this run
    existing: int = 0  # crops already there from an earlier run (kept, not rewritten)
    real: int = 0  # crops in place after this run, per label
    fake: int = 0
    clamped: int = 0  # boxes cut to the image border (not skipped)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> faces
    size_mismatch: int = 0  # images whose stored size differs from the file's width/height
    exif_rotated: int = 0  # images carrying an EXIF orientation (cropped as stored)
    seconds: float = 0.0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def faces_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "skipped_total": self.skipped_total, "faces_per_s": round(self.faces_per_s, 2)}

    def line(self) -> str:
        """The closing one-line summary the CLI and the screen show."""
        if self.status == "failed":
            return f"{self.split}: failed: {self.error}"
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        state = "" if self.status == "finished" else f" [{self.status}]"
        return (
            f"{self.split}{state}: {self.images_done}/{self.images} images, {self.faces} faces -> "
            f"{self.real} real + {self.fake} fake in {self.output_dir} "
            f"({self.written} new, {self.existing} already there); skipped {self.skipped_total} ({skipped}); "
            f"{self.faces_per_s:.1f} faces/s, {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class PrepareStarted(Event):
    kind: ClassVar[str] = "prepare_started"
    root: str
    out: str
    splits: list[str]
    settings: dict[str, Any]
    workers: int
    executor: str


@dataclass(frozen=True)
class SplitStarted(Event):
    kind: ClassVar[str] = "split_started"
    split: str
    annotations_path: str
    images_dir: str  # where the first images were found ("" when none were)
    output_dir: str
    images: int
    faces: int


@dataclass(frozen=True)
class SplitProgress(Event):
    kind: ClassVar[str] = "split_progress"
    split: str
    images_done: int
    images: int
    written: int
    existing: int
    skipped: int
    elapsed_s: float
    faces_per_s: float
    eta_s: float | None


@dataclass(frozen=True)
class SplitFinished(Event):
    kind: ClassVar[str] = "split_finished"
    summary: SplitSummary


@dataclass(frozen=True)
class PrepareFinished(Event):
    kind: ClassVar[str] = "prepare_finished"
    status: str  # "finished" | "stopped" | "partial" (a split failed)
    summaries: list[SplitSummary]
    report_path: str
    skipped_csv: str
    seconds: float

    @property
    def output_dirs(self) -> dict[str, str]:
        """Split -> crop folder, for the splits that produced crops."""
        return {s.split: s.output_dir for s in self.summaries if s.real + s.fake > 0}


@dataclass(frozen=True)
class PrepareFailed(Event):
    kind: ClassVar[str] = "prepare_failed"
    message: str
    report_path: str | None = None
    fixes: tuple[str, ...] = ()  # ways out, as dftui.core.advice.Fix.encode() strings


# ``prepare_folder.prepare_folder``: a folder of labelled photos and videos.


@dataclass(frozen=True)
class FolderStarted(Event):
    kind: ClassVar[str] = "folder_started"
    root: str
    out: str
    photos: int
    videos: int
    already_done: int
    settings: dict[str, Any]


@dataclass(frozen=True)
class FolderProgress(Event):
    kind: ClassVar[str] = "folder_progress"
    done: int
    total: int
    source: str
    crops: int  # written for this source
    status: str  # "ok" | "no_face" | "error"
    detail: str = ""


@dataclass
class FolderSummary:
    status: str = "finished"  # "finished" | "stopped" | "failed"
    photos: int = 0
    videos: int = 0
    sources_done: int = 0
    skipped_done_before: int = 0
    crops: Counter[str] = field(default_factory=Counter)  # "train/real" -> n
    no_face: int = 0
    errors: int = 0
    seconds: float = 0.0
    report: str = ""
    error: str = ""

    def line(self) -> str:
        made = ", ".join(f"{k} {v}" for k, v in sorted(self.crops.items())) or "none"
        return (f"{self.status}: {self.sources_done} of {self.photos + self.videos} sources "
                f"({self.photos} photos, {self.videos} videos; {self.skipped_done_before} done before), "
                f"crops written: {made}; no face: {self.no_face}, unreadable: {self.errors} "
                f"in {self.seconds:.1f} s")


@dataclass(frozen=True)
class FolderFinished(Event):
    kind: ClassVar[str] = "folder_finished"
    summary: FolderSummary


# ------------------------------------------------------------------ evaluating weights


@dataclass(frozen=True)
class EvalStarted(Event):
    kind: ClassVar[str] = "eval_started"
    weights: str
    folder: str
    total: int  # readable images to score
    unreadable: int  # found unreadable by the scan
    label: str  # "clean" or the corruption, e.g. "jpeg q50"
    pass_index: int = 1  # this pass, of ``passes`` (robustness runs one per corruption level)
    passes: int = 1


@dataclass(frozen=True)
class EvalProgress(Event):
    kind: ClassVar[str] = "eval_progress"
    folder: str
    label: str
    done: int
    total: int
    images_per_s: float
    elapsed_s: float
    pass_index: int = 1
    passes: int = 1


@dataclass(frozen=True)
class EvalFinished(Event):
    kind: ClassVar[str] = "eval_finished"
    folder: str
    label: str
    n: int
    accuracy: float
    roc_auc: float | None
    seconds: float
    stopped: bool


Emit = Callable[[Event], None]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        DownloadProgress,
        LogMessage,
        BatchEnd,
        EpochEnd,
        CheckpointSaved,
        RunFinished,
        RunFailed,
        PrepareStarted,
        SplitStarted,
        SplitProgress,
        SplitFinished,
        PrepareFinished,
        PrepareFailed,
        FolderStarted,
        FolderProgress,
        FolderFinished,
        EvalStarted,
        EvalProgress,
        EvalFinished,
    )
}


class EventError(ValueError):
    """A recorded event that cannot be rebuilt; the message says why."""


def event_from_dict(data: Any) -> Event:
    """Rebuild an event from its JSON form (run records, replay on the Runs screen).

    The record is untrusted (another process, an older version or a person wrote it): every
    field, nested ones included, is type-checked against the event's dataclass; unknown
    fields are ignored (a newer version may add some), missing fields take their defaults,
    and a missing field without a default or a field of the wrong type raises EventError
    (a ValueError) naming it, never a TypeError later on. Readers of a log skip such a
    record and say so."""
    if not isinstance(data, dict):
        raise EventError(f"an event should be a JSON object, not {json_type(data)}")
    kind = data.get("event")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise EventError(f"unknown event type {str(kind)[:40]!r}")
    try:
        return check_dataclass(data, cls)
    except MissingField as exc:
        raise EventError(f"{kind} event without its {exc.path!r} field") from None
    except UntrustedError as exc:
        raise EventError(f"{kind} event: {exc}") from None


class StopFlag(threading.Event):
    """The stop request fit() checks every batch, with the reason the run record should show
    ("stopped" by the user, "interrupted" by a signal or a dropped connection). Here, not in
    train.py, so the dashboard can make one without importing torch."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = "stopped"

    def request(self, reason: str = "stopped") -> None:
        self.reason = reason
        self.set()


def format_duration(seconds: float | None, unknown: str = "--:--") -> str:
    """ETA and elapsed times as M:SS or H:MM:SS."""
    if seconds is None:
        return unknown
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
