"""Events the engine emits. Every listener (dashboard, run recorder, CLI printer, tests)
is built from these, so they are plain frozen dataclasses with JSON-ready fields."""

from __future__ import annotations

import functools
import threading
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from dftui.core.untrusted import UntrustedError, check_typed, json_type


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


class EventError(ValueError):
    """A recorded event that cannot be rebuilt; the message says why."""


def event_from_dict(data: Any) -> Event:
    """Rebuild an event from its JSON form (run records, replay on the Runs screen).

    The record is untrusted (another process, an older version or a person wrote it): every
    field is type-checked against the event's dataclass; unknown fields are ignored (a newer
    version may add some), missing fields take their defaults, and anything else raises
    EventError (a ValueError) saying which field is wrong, never a TypeError later on."""
    if not isinstance(data, dict):
        raise EventError(f"an event should be a JSON object, not {json_type(data)}")
    kind = data.get("event")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise EventError(f"unknown event type {str(kind)[:40]!r}")
    hints = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise EventError(f"{kind} event without its {f.name!r} field")
            continue
        try:
            kwargs[f.name] = check_typed(data[f.name], hints[f.name], f.name)
        except UntrustedError as exc:
            raise EventError(f"{kind} event: {exc}") from None
    return cls(**kwargs)


@functools.cache
def _field_types(cls: type[Event]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


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
