"""Events the engine emits. Every listener (dashboard, run recorder, CLI printer, tests)
is built from these, so they are plain frozen dataclasses with JSON-ready fields."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}


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


@dataclass(frozen=True)
class RunFailed(Event):
    kind: ClassVar[str] = "run_failed"
    message: str
    run_dir: str | None = None
    epoch: int | None = None
    batch: int | None = None
    weights_path: str | None = None
    details: str = field(default="", repr=False)


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
    )
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form (run records, replay on the Runs screen)."""
    data = dict(data)
    cls = EVENT_TYPES[data.pop("event")]
    return cls(**data)


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
