"""Early stopping: end a run when its validation metric has stopped improving.

The decision is a pure function of the epochs' validation results, replayed from the run's
history (which resume.pt carries whole), so a resumed run stops at exactly the epoch an
uninterrupted one would: there is no separate state to save or to drift."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The metric watched: its name as the option takes it → (history/EpochEnd field, goal).
EARLY_STOP_METRICS: dict[str, tuple[str, str]] = {
    "val_loss": ("val_loss", "min"),
    "val_acc": ("val_accuracy", "max"),
}


@dataclass
class EarlyStopping:
    """Patience counting as Keras' and Lightning's EarlyStopping do: an epoch improves when
    its value beats the best so far by more than ``min_delta``; after ``patience`` epochs
    in a row without improvement the run stops. ``patience`` 0 turns it off."""

    metric: str = "val_loss"
    patience: int = 0
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the last improvement
    stopped_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.metric not in EARLY_STOP_METRICS:
            raise ValueError(f"unknown early-stopping metric {self.metric!r}; choose one of: "
                             + ", ".join(EARLY_STOP_METRICS))

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        goal = EARLY_STOP_METRICS[self.metric][1]
        if goal == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch: int, value: float) -> bool:
        """Take one epoch's value; True when the run should stop after this epoch."""
        if not self.enabled:
            return False
        if not math.isfinite(value):
            self.bad_epochs += 1  # a NaN never improves (the trainer stops on NaN anyway)
        elif self._improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def value_of(self, row: Mapping[str, Any]) -> float:
        return float(row[EARLY_STOP_METRICS[self.metric][0]])

    def replay(self, history: Iterable[Mapping[str, Any]]) -> EarlyStopping:
        """Feed every recorded epoch (a resume's history) in order; returns self. The
        history comes from a file (resume.pt): a row without a usable value counts as an
        epoch without improvement rather than failing the run."""
        for number, row in enumerate(history, start=1):
            try:
                epoch, value = int(row["epoch"]), self.value_of(row)
            except (KeyError, TypeError, ValueError):
                epoch, value = number, math.nan
            if self.update(epoch, value):
                break
        return self


def outcome_text(status: str, early_stop_epoch: int | None = None) -> str:
    """A run's outcome as every surface words it: "finished (early stop at epoch 4)"."""
    if status == "finished" and early_stop_epoch is not None:
        return f"finished (early stop at epoch {early_stop_epoch})"
    return status


def recipe_notes(config: Mapping[str, Any]) -> list[str]:
    """Short notes for a run's header on the recipe options set away from the reference
    (early stopping, a frozen backbone, EMA), read from its recorded config (untrusted:
    wrong types are shown as they are, never raise)."""
    notes = []
    patience = config.get("early_stop_patience")
    if isinstance(patience, int) and patience > 0:
        delta = config.get("early_stop_min_delta")
        more = f" by more than {delta:g}" if isinstance(delta, (int, float)) and delta else ""
        notes.append(f"early stopping on {config.get('early_stop_metric')} after {patience} "
                     f"epoch(s) without improvement{more}")
    frozen = config.get("freeze_epochs")
    if isinstance(frozen, int) and frozen > 0:
        notes.append(f"backbone frozen for {frozen} epoch(s)")
    if config.get("ema") is True:
        decay = config.get("ema_decay")
        notes.append(f"EMA of the weights (decay {decay:g}) validated and saved"
                     if isinstance(decay, float) else "EMA of the weights validated and saved")
    return notes
