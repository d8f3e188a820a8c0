"""What a training run keeps on disk beyond its record: the best weights with their
metadata, and the resume checkpoint ``resume.pt`` (timm's ``CheckpointSaver`` is the model).

The :class:`Checkpointer` owns where the weights go (reserved so two runs never pick the
same file, reclaimed on resume only while still the run's own), which epoch they hold, the
metadata beside them, and the save and load of ``resume.pt``. The run's progress that
``resume.pt`` carries is :class:`RunState`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dftui.core.abort import RunAborted
from dftui.core.advice import Fix, encode_all
from dftui.core.backbones import ZIP_MAGIC, check_declared_size, open_regular_file
from dftui.core.checkpoint import (
    claim_weights_path,
    metadata_path,
    read_metadata,
    recover_weights,
    reserve_weights_name,
    run_tag,
    save_json,
    save_torch,
    save_weights,
    weights_owner,
)
from dftui.core.config import weights_name_problem
from dftui.core.errors import describe_error
from dftui.core.events import CheckpointSaved, Emit, LogMessage
from dftui.core.files import remove_stale_temp

RESUME_FILE = "resume.pt"
_DIGEST_KEYS = ("weights_file", "weights_sha256", "weights_size")


@dataclass
class RunState:
    """What changes as the run goes; saved in the resume checkpoint."""

    epoch: int = 0  # epochs completed
    best_epoch: int | None = None
    best_acc: float = -1.0
    best_loss: float = math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason", decode failures
    skipped_set: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "best_epoch": self.best_epoch,
            "best_acc": self.best_acc,
            "best_loss": self.best_loss,
            "history": self.history,
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, st: dict[str, Any]) -> RunState:
        state = cls(
            epoch=int(st["epoch"]),
            best_epoch=st["best_epoch"],
            best_acc=float(st["best_acc"]),
            best_loss=float(st["best_loss"]),
            history=list(st["history"]),
            skipped=list(st.get("skipped", [])),
        )
        state.skipped_set = set(state.skipped)
        return state

    def forget_best(self) -> None:
        self.best_epoch, self.best_acc, self.best_loss = None, -1.0, math.inf


def resume_file(run_dir: Path) -> Path:
    """``run_dir``'s resume checkpoint; RunAborted when it has none."""
    path = run_dir / RESUME_FILE
    if not path.is_file():
        raise RunAborted(
            f"{run_dir} has no resume checkpoint ({RESUME_FILE}): it stopped before its "
            "first epoch ended, so there is nothing to resume; start a new run"
        )
    return path


def read_resume(path: Path) -> tuple[dict[str, Any], RunState]:
    """The checkpoint at ``path`` (untrusted: any defect is one RunAborted) and its state."""
    try:
        # Opened as the weights are: a regular file only, no inflating of a zip bomb.
        with open_regular_file(path, "resume checkpoint") as fh:
            if fh.read(4) == ZIP_MAGIC:
                check_declared_size(fh, path)
            fh.seek(0)
            ckpt = torch.load(fh, map_location="cpu", weights_only=True)
        state = RunState.from_dict(ckpt["state"])
        ckpt["model"], ckpt["optimizer"], ckpt["rng"], ckpt["weights_path"]
    except Exception as exc:
        raise RunAborted(
            f"resume checkpoint {path} cannot be read ({type(exc).__name__}: "
            f"{str(exc)[:200]}); start a new run"
        ) from None
    return ckpt, state


class Checkpointer:
    """The run's best weights (file, epoch, metadata) and its resume checkpoint. Only the
    process that writes the run's files (rank 0) saves; ``emit`` reports what it wrote."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.weights_path: Path | None = None  # reserved for this run; None until then
        # The epoch whose weights this run (or the run it resumes) wrote to weights_path;
        # None while nothing of its own is there.
        self.saved_best: int | None = None
        self._digest: dict[str, Any] = {}  # the weights' digest, kept in every .json rewrite

    @property
    def path(self) -> Path:
        assert self.weights_path is not None, "no weights file reserved yet"
        return self.weights_path

    # -- the weights file --------------------------------------------------------------
    def reserve(self, run_dir: Path, backbone: str, wanted: Path, overwrite: bool) -> None:
        """Reserve the new run's weights file now (created exclusively), so two runs
        started together never pick the same one."""
        try:
            target = claim_weights_path(
                wanted, run_dir.name, run_tag(run_dir.name, backbone), overwrite, runs=run_dir.parent,
            )
        except OSError as exc:
            raise RunAborted(
                f"cannot reserve the weights file in {wanted.parent} ({describe_error(exc)})",
                fixes=(Fix("out_dir"),),
            ) from None
        if target != wanted:
            self.emit(LogMessage(
                "warning", f"{wanted} exists and is kept; this run saves to {target}",
                encode_all([Fix("overwrite")]),
            ))
        self.weights_path = target

    def resume(self, weights_path: Path, state: RunState) -> None:
        """Take up the interrupted run's weights file and its best epoch."""
        self.weights_path = weights_path
        self.saved_best = state.best_epoch

    def reclaim(self, run_id: str, backbone: str, default: Path, state: RunState) -> None:
        """A weights file belongs to the run whose id its metadata holds: a resumed run
        writes its old file only while that is still its own, never a file another run
        (or the user) has put there since."""
        path = self.path
        problem = weights_name_problem(path.name)
        if problem:
            # resume.pt is a file on disk like any other: it must not make a run write its
            # weights over whatever path it names.
            raise RunAborted(
                f"the resume checkpoint of run {run_id} names {path} for its weights, which is "
                f"not a weights file name ({problem}); start a new run"
            )
        owner, holder = weights_owner(path)
        if owner == "run" and holder == run_id:
            recover_weights(path)  # a save cut between its two renames is finished now
            return
        if owner == "free" and reserve_weights_name(path, run_id):
            if self.saved_best is not None:
                self._forget_best(f"{path} is gone (moved or deleted)", path, default, state)
            return
        taken = f"{path} now belongs to run {holder}" if owner == "run" else f"{path} is now another file"
        try:
            target = claim_weights_path(path, run_id, run_tag(run_id, backbone), False)
        except OSError as exc:
            raise RunAborted(
                f"{taken} and no other weights file can be reserved in {path.parent} "
                f"({describe_error(exc)}); free that folder, then resume again"
            ) from None
        self.weights_path = target
        self._forget_best(f"{taken}, which is kept", target, default, state)

    def _forget_best(self, why: str, target: Path, default: Path, state: RunState) -> None:
        """The best weights saved before the interruption are not ours to count any more:
        the resumed run keeps its best from the next epoch on."""
        if state.best_epoch is not None:
            self.emit(LogMessage(
                "warning",
                f"{why}; the best weights of epochs 1-{state.epoch} are not there any more, so "
                f"this run keeps its best from epoch {state.epoch + 1} on, in {target}",
            ))
        elif target != default:
            self.emit(LogMessage("warning", f"{why}; this run saves to {target}"))
        state.forget_best()
        self.saved_best = None

    def remove_stale(self) -> None:
        """Half-written temporary files of the weights from a kill inside a save."""
        remove_stale_temp(self.path)
        remove_stale_temp(metadata_path(self.path))

    def save_best(self, state_dict: dict[str, Any], metadata: dict[str, Any], epoch: int) -> None:
        try:
            written = save_weights(state_dict, self.path, metadata)
        except (OSError, RuntimeError) as exc:
            # torch.save reports a failed write of its zip records as a RuntimeError.
            raise RunAborted(
                f"could not save weights to {self.path} at epoch {epoch}: "
                f"{describe_error(exc)}; the previous file (if any) is intact. Free some space "
                "or choose another output folder",
                epoch,
            ) from None
        self.saved_best = epoch
        self._digest = {k: written[k] for k in _DIGEST_KEYS}
        self.emit(CheckpointSaved("best", str(self.path), epoch))

    def update_metadata(self, metadata: dict[str, Any]) -> None:
        """The weights' metadata carries the run's whole history, not only the epochs up to
        the best one: rewrite the small .json (atomically) after every later epoch."""
        path = metadata_path(self.path)
        try:
            meta = {**metadata, **self._digest}
            old = read_metadata(self.path) or {}
            if "weights_sha256" not in meta:
                # Resumed: the digest of the weights saved before is in the .json on disk.
                meta.update({k: old[k] for k in _DIGEST_KEYS if k in old})
            if "calibration" in old and old.get("weights_sha256") == meta.get("weights_sha256"):
                # A temperature fitted on these very weights (the digest says so) stays.
                meta.setdefault("calibration", old["calibration"])
            save_json(meta, path)
        except OSError as exc:
            self.emit(LogMessage("warning", f"could not update {path}: {describe_error(exc)}"))

    def release(self, run_dir: Path | None) -> None:
        """Free the reserved weights name when the run saved nothing and can never be
        resumed (so the name is free for the next run)."""
        path = self.weights_path
        if path is None or run_dir is None or self.saved_best is not None:
            return
        meta = read_metadata(path) or {}
        if (
            meta.get("reserved_by") == run_dir.name
            and "preprocessing" not in meta
            and not os.path.lexists(path)
            and not (run_dir / RESUME_FILE).is_file()
        ):
            try:
                metadata_path(path).unlink()
            except OSError:
                pass

    # -- resume.pt ---------------------------------------------------------------------
    def save_resume(self, run_dir: Path, ckpt: dict[str, Any], epoch: int) -> None:
        """Write ``ckpt`` (with the weights path) as the run's resume checkpoint. A failed
        write is a warning: the previous resume.pt is intact (atomic write) and training
        goes on."""
        path = run_dir / RESUME_FILE
        try:
            save_torch({**ckpt, "weights_path": str(self.path)}, path)
        except (OSError, RuntimeError) as exc:
            self.emit(LogMessage(
                "warning",
                f"could not write the resume checkpoint {path} ({describe_error(exc)}); a "
                f"resume would restart after epoch {epoch - 1} at best",
            ))
            return
        self.emit(CheckpointSaved("resume", str(path), epoch))
