"""Timing and progress of the training and validation loops, one helper for both: time
waiting for data, seconds per step, the run's ETA and the (throttled) BatchEnd events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

from dftui.core.devices import memory_mb
from dftui.core.events import BatchEnd, Emit

BATCH_EVENT_INTERVAL_S = 0.1  # at most ~10 batch events a second reach the listeners
_T = TypeVar("_T")


class RunClock:
    """Seconds per training and per validation step, measured as the run goes, for the ETA."""

    def __init__(self, started: float, epochs: int, train_steps: int, val_steps: int) -> None:
        self.started = started  # time.monotonic() when the run began
        self.epochs = epochs
        self.train_steps, self.val_steps = train_steps, val_steps
        self.step_s: dict[str, float | None] = {"train": None, "val": None}

    def eta(self, phase: str, epoch: int, batch: int) -> float | None:
        """Seconds to the end of the run after ``batch`` of ``phase`` in ``epoch``."""
        train = self.step_s["train"]
        if train is None:
            return None
        # Before the first validation, guess a validation step (no backward) at a third.
        val = self.step_s["val"]
        val = train / 3 if val is None else val
        if phase == "train":
            here = (self.train_steps - batch) * train + self.val_steps * val
        else:
            here = (self.val_steps - batch) * val
        return here + (self.epochs - epoch) * (self.train_steps * train + self.val_steps * val)

    def begin(self, phase: str, epoch: int, emit: Emit, device: torch.device) -> LoopPass:
        steps = self.train_steps if phase == "train" else self.val_steps
        return LoopPass(self, phase, epoch, steps, emit, device)


class LoopPass:
    """One pass of the training or validation loop over its batches."""

    def __init__(self, clock: RunClock, phase: str, epoch: int, steps: int, emit: Emit,
                 device: torch.device) -> None:
        self.clock, self.phase, self.epoch, self.steps = clock, phase, epoch, steps
        self.emit, self.device = emit, device
        self.t0 = time.monotonic()
        self.wait = 0.0  # seconds blocked on the loader
        self._last_emit = 0.0

    def timed(self, batches: Iterable[_T]) -> Iterator[_T]:
        """``batches``, counting the time spent waiting for each (the loop's body, run
        between two items, is not counted)."""
        t_fetch = self.t0
        for item in batches:
            self.wait += time.monotonic() - t_fetch
            yield item
            t_fetch = time.monotonic()

    def step(self, batch: int, images: int, loss: float | Callable[[], float]) -> None:
        """Step ``batch`` (1-based, counting skipped ones) is done, ``images`` images so far
        in this pass; ``loss`` the loss to show, or a function giving it (called only when
        an event goes out: it may wait for the device)."""
        now = time.monotonic()
        elapsed = now - self.t0
        self.clock.step_s[self.phase] = elapsed / batch
        if now - self._last_emit < BATCH_EVENT_INTERVAL_S and batch != self.steps:
            return
        self._last_emit = now
        rss, gpu = memory_mb(self.device)
        self.emit(BatchEnd(
            phase=self.phase,
            epoch=self.epoch,
            epochs=self.clock.epochs,
            batch=batch,
            batches=self.steps,
            loss=loss() if callable(loss) else loss,
            images_per_s=images / elapsed if elapsed > 0 else 0.0,
            data_wait=self.wait / elapsed if elapsed > 0 else 0.0,
            elapsed_s=now - self.clock.started,
            eta_s=self.clock.eta(self.phase, self.epoch, batch),
            rss_mb=rss,
            gpu_mb=gpu,
        ))

    def rates(self, images: int) -> tuple[float, float]:
        """Images a second and the share of time spent waiting for data, over the pass."""
        elapsed = time.monotonic() - self.t0
        if elapsed <= 0:
            return 0.0, 0.0
        return images / elapsed, self.wait / elapsed
