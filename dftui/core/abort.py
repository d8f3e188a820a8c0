"""The two ways a training run ends early during setup or the loop, shared by its parts
(data, model, checkpointer) so that each can stop the run with a message for the user."""

from __future__ import annotations

from dftui.core.advice import Fix


class RunAborted(Exception):
    """A failure with a message meant for the user (``fixes``: the settings out of it)."""

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None,
                 fixes: tuple[Fix, ...] = ()):
        super().__init__(message)
        self.epoch, self.batch = epoch, batch
        self.fixes = fixes


class StoppedBeforeStart(Exception):
    """A stop asked for before the run folder existed: nothing was trained or recorded."""
