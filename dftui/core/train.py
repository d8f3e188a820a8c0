"""The fine-tuning loop: ``fit(config, emit, stop)``.

It knows nothing of Textual or Rich: it takes a config, a callable that receives events and
a ``threading.Event`` that asks it to stop, and checks that flag every batch. Cancelling is an
ordinary outcome: the best weights so far are kept and the run ends as "stopped".

The run is assembled from parts with one job each: the data (core/train_data.py), the model
(core/train_model.py), the optimisation (core/optim.py), the best weights and resume.pt
(core/checkpointer.py) and the loops' timing (core/train_progress.py); ``_Trainer`` sets
them up in order, agreeing on failures across processes, and runs the epochs."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from dftui.core import distributed
from dftui.core.abort import RunAborted, StoppedBeforeStart
from dftui.core.advice import Fix, encode_all, fixes_of
from dftui.core.backbones import (
    CLASS_NAMES,
    BackboneSpec,
    count_parameters,
    get_backbone,
)
from dftui.core.calibration import CalibrationFit, calibrate_weights, store_calibration
from dftui.core.checkpoint import build_metadata
from dftui.core.checkpointer import (
    RESUME_FILE,
    Checkpointer,
    RunState,
    read_resume,
    resume_file,
)
from dftui.core.config import ConfigError, TrainConfig, absolute_path
from dftui.core.data import Preprocessing, display_path
from dftui.core.devices import (
    DeviceError,
    Precision,
    device_name,
    resolve_device,
    resolve_precision,
)
from dftui.core.errors import describe_error, first_line, unexpected_error
from dftui.core.events import (
    Emit,
    EpochEnd,
    Event,
    LogMessage,
    RunFailed,
    RunFinished,
    RunStarted,
    StopFlag,  # noqa: F401 - re-exported: callers make stop flags from here
)
from dftui.core.files import check_writable, remove_stale_temp
from dftui.core.inference import EvalForward
from dftui.core.metrics import Confusion
from dftui.core.optim import Optimisation, build_optimisation
from dftui.core.recipe import Recipe, RecipeError
from dftui.core.runs import (
    RunRecorder,
    lock_run,
    new_run_dir,
    pid_alive,
    read_run_info,
    run_pid,
    runs_root,
)
from dftui.core.train_data import (
    MAX_LOGGED_SKIPS,
    Loaders,
    Scans,
    _SeededSampler,  # noqa: F401 - re-exported for the tests of the per-sample seeds
    build_loaders,
    scan_data,
)
from dftui.core.train_model import TrainModel, build_model, place_model, wrap_model
from dftui.core.train_progress import RunClock

__all__ = ["RESUME_FILE", "RunAborted", "StopFlag", "StoppedBeforeStart", "fit", "is_out_of_memory"]

SKIPPED_FILE = "skipped.txt"  # every skipped image with its reason, in the run folder
_T = TypeVar("_T")
# A loss that became NaN or infinite: a lower learning rate, or full precision.
_NOT_FINITE_FIXES = (Fix("lr"), Fix("precision", "fp32"))


def _raise(exc: BaseException | None) -> None:
    if exc is not None:
        raise exc


def _world_change_note(saved: int, world: int, batch: int) -> str:
    return (
        f"this run was trained on {saved} process{'es' if saved > 1 else ''} and resumes on "
        f"{world}: the global batch stays {batch} ({batch // world} per process, was "
        f"{batch // saved if batch % saved == 0 else '?'}), the learning rate and the shuffle "
        "order are unchanged; batch-norm statistics and random draws (dropout, augmentation) "
        "follow a different stream, so the result will not match an uninterrupted run exactly"
    )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _autocast(device: torch.device, precision: Precision) -> Any:
    dtype = precision.autocast_dtype
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; MPS (and older CUDA paths) a RuntimeError whose
    message says "out of memory"; the CPU allocator a RuntimeError "DefaultCPUAllocator:
    can't allocate memory", and Python itself a MemoryError."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _check_writable(folder: Path) -> None:
    try:
        check_writable(folder)
    except OSError as exc:
        raise RunAborted(
            f"output folder {folder} is not writable ({describe_error(exc)})",
            fixes=(Fix("out_dir"),),
        ) from None


class _Trainer:
    def __init__(
        self, config: TrainConfig, emit: Emit, stop: threading.Event, run_dir: Path | None = None
    ) -> None:
        self.config = config
        self.emit = emit
        self.stop = stop
        self.started = time.monotonic()
        self.given_run_dir = run_dir  # a fresh folder made by the launcher, or None
        # Rank and world size: set by torchrun (dftui train --nproc-per-node); 1 otherwise.
        self.dist = distributed.current()
        self.resume_dir: Path | None = None
        # Set as setup goes; None (or empty) until their step has run, which is how the
        # run's end tells how far it got.
        self.configured = False  # settings checked, device chosen, state made
        self.device: torch.device | None = None
        self.precision: Precision | None = None
        self.batch_per_process = config.batch_size
        self.spec: BackboneSpec | None = None
        self.pre: Preprocessing | None = None
        self.state = RunState()
        self.run_dir: Path | None = None
        self.run_lock: Any = None  # the run folder's lock (rank 0)
        self.recorder: RunRecorder | None = None  # the run record (rank 0)
        self._record_warned = False
        # The best weights and resume.pt; its emit follows self.emit as setup changes it.
        self.checkpointer = Checkpointer(lambda event: self.emit(event))
        self.scans: Scans | None = None
        self._built: nn.Module | None = None  # the model before it is placed
        self.net: TrainModel | None = None
        self.optim: Optimisation | None = None
        self.loaders: Loaders | None = None
        self.clock: RunClock | None = None
        self.recorded_epoch = 0  # the last epoch whose EpochEnd went out
        self._thin_batch = False  # see _stop_requested
        # Early stopping, a frozen backbone, class balancing, weight averaging (EMA).
        self.recipe = Recipe(config)
        self.ema_forward: EvalForward | None = None  # the EMA's folded copy for validation
        self._find_unused = False  # DDP searches for unused parameters (a frozen backbone)

    def release_memory(self) -> None:
        """Drop the model, optimiser and loaders, so an out-of-memory run gives its memory
        back before the next one starts."""
        self.net = self.optim = self.loaders = None
        self._built = None
        self.recipe.ema, self.ema_forward = None, None

    # -- setup -------------------------------------------------------------------------
    def setup(self, resume_dir: Path | None) -> None:
        self.resume_dir = resume_dir
        relative = self.config.relative_paths()
        # Paths are recorded absolute (config.json, run.json, resume.pt, weights metadata),
        # so a resume from another folder trains on the same data, into the same folder.
        self.config = self.config.absolute()
        cfg = self.config
        dist = self.dist
        # With several ranks each setup step runs everywhere and its failures are agreed
        # on (_agree): a rank whose data is missing stops every rank with its message,
        # instead of leaving the others waiting in a collective.
        resume = self._agree(lambda: self._setup_settings(resume_dir))
        if dist.enabled and resume_dir is not None:
            # Only rank 0 can read the run folder (another machine may not even have it).
            resume = distributed.broadcast(resume if dist.is_main else None)
            if not dist.is_main:
                self.state = RunState.from_dict(resume["state"])

        # Events before the run folder exists are kept and written to the record with it.
        # A folder known now (a resume, or one made for this run by its launcher) gets them
        # as they happen, so a watcher of its log sees downloads and the data scan live.
        # Only rank 0 records; every rank passes the same _agree points (collectives).
        early: list[Event] = []
        user_emit = self.emit
        known_dir = absolute_path(resume_dir) if resume_dir is not None else self.given_run_dir

        def open_early() -> None:
            if dist.is_main and known_dir is not None:
                self.run_dir = known_dir
                self._open_recorder(user_emit, resumed=resume is not None)

        self._agree(open_early)
        if self.recorder is None:

            def early_emit(event: Event) -> None:
                early.append(event)
                user_emit(event)

            self.emit = early_emit
        if resume_dir is not None and relative:
            self.emit(LogMessage(
                "warning",
                f"this run was recorded with relative paths ({', '.join(relative)}); they are "
                f"taken from the current folder: train {cfg.train_dir}, val {cfg.val_dir}, "
                f"weights {cfg.out_dir}",
            ))
        self._agree(lambda: self._setup_model_and_data(resume))
        self._agree(lambda: self._setup_run_folder(resume))
        ckpt, st = self.checkpointer, self.state
        if dist.enabled:
            (self.run_dir, ckpt.weights_path, ckpt.saved_best, st.best_epoch, st.best_acc,
             st.best_loss) = distributed.broadcast(
                (self.run_dir, ckpt.weights_path, ckpt.saved_best, st.best_epoch, st.best_acc,
                 st.best_loss) if dist.is_main else None
            )

        def open_late() -> None:
            if dist.is_main and self.recorder is None:
                self._open_recorder(user_emit, resumed=False)

        self._agree(open_late)
        run_dir = self._run_dir()
        if dist.is_main:
            recorder = self.recorder
            assert recorder is not None
            if resume is not None:
                recorder.trim_after(self.state.epoch)
                # The run's previous process is gone (checked): half-written temporary files
                # from a kill inside a save are litter now.
                for name in (RESUME_FILE, "run.json", "config.json", "metrics.csv", SKIPPED_FILE):
                    remove_stale_temp(run_dir / name)
                ckpt.remove_stale()
            for event in early:
                recorder(event)
            self._write_skipped()
        else:
            self.emit = user_emit

        self._agree(lambda: self._setup_training(resume, resume_dir))
        net, loaders, scans = self._parts()
        extra: dict[str, Any] = {}
        if dist.enabled:
            extra = {
                "world_size": dist.world,
                "batch_per_process": self.batch_per_process,
                "backend": dist.backend,
            }
        device, precision = self._hardware()
        self.emit(
            RunStarted(
                run_id=run_dir.name,
                run_dir=str(run_dir),
                config={**cfg.to_dict(), "weights_path": str(ckpt.path), **extra},
                device=str(device),
                device_name=device_name(device),
                precision=precision.name,
                channels_last=net.channels_last,
                train_size=scans.train.total,
                val_size=scans.val.total,
                train_counts=dict(scans.train.counts),
                val_counts=dict(scans.val.counts),
                steps_per_epoch=len(loaders.train),
                start_epoch=self.state.epoch,
                params=count_parameters(net.model),
                workers=loaders.workers,
            )
        )

    def _agree(self, step: Callable[[], _T]) -> _T:
        """Run a setup step; with several ranks, fail on every rank if it failed on any,
        with the first failing rank's message (and its rank)."""
        if not self.dist.enabled:
            return step()
        error: str | None = None
        result: Any = None
        try:
            result = step()
        except RunAborted as exc:
            error = str(exc)
        except StoppedBeforeStart:
            error = "stopped before the run started"
        except Exception as exc:
            error = unexpected_error(exc)
        for rank, message in enumerate(distributed.all_gather(error)):
            if message is not None:
                raise RunAborted(f"rank {rank}: {message}")
        return result

    # The parts, once setup has made them (the loop runs only after setup).
    def _hardware(self) -> tuple[torch.device, Precision]:
        assert self.device is not None and self.precision is not None
        return self.device, self.precision

    def _parts(self) -> tuple[TrainModel, Loaders, Scans]:
        assert self.net is not None and self.loaders is not None and self.scans is not None
        return self.net, self.loaders, self.scans

    def _run_dir(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir

    def _pick_device(self) -> torch.device:
        cfg, dist = self.config, self.dist
        if not dist.enabled:
            return resolve_device(cfg.device)
        # One device per process: rank r's GPU is cuda:LOCAL_RANK (NCCL); gloo runs on the CPU.
        if dist.backend == "nccl":
            if cfg.device not in ("auto", "cuda"):
                raise DeviceError(
                    f"device {cfg.device!r} cannot be used with several processes on GPUs: "
                    "each process takes its own GPU",
                    (Fix("device", "cuda"),),
                )
            return torch.device("cuda", dist.local_rank)
        if cfg.device not in ("auto", "cpu"):
            raise DeviceError(
                f"device {cfg.device!r} with several processes needs the NCCL backend: "
                "run on CUDA GPUs or on the CPU (gloo)",
                (Fix("device", "cpu"),),
            )
        return torch.device("cpu")

    def _setup_settings(self, resume_dir: Path | None) -> dict[str, Any] | None:
        """Settings, device and the resume checkpoint (rank 0): cheap checks first, so a bad
        setting fails in a second, not after the data scan."""
        cfg, dist = self.config, self.dist
        try:
            cfg.validate()
            device = self.device = self._pick_device()
            self.precision = resolve_precision(cfg.precision, device)
        except (ConfigError, DeviceError) as exc:
            raise RunAborted(str(exc), fixes=fixes_of(exc)) from None
        if cfg.batch_size % dist.world:
            raise RunAborted(
                f"batch size {cfg.batch_size} is the global batch and does not split evenly "
                f"over {dist.world} processes; use a multiple of {dist.world}"
            )
        self.batch_per_process = cfg.batch_size // dist.world
        try:
            self.recipe.check_processes(dist.world)
        except RecipeError as exc:
            raise RunAborted(str(exc), fixes=(Fix("balance", "loss"),)) from None
        if dist.enabled and cfg.sync_bn and device.type != "cuda":
            raise RunAborted(
                "synchronised batch norm needs CUDA GPUs (NCCL); on the CPU leave it off: the "
                "batch-norm statistics are then averaged over the processes at each epoch end"
            )
        spec = self.spec = get_backbone(cfg.backbone)
        self.pre = Preprocessing(cfg.img_size or spec.input_size, spec.mean, spec.std, spec.interpolation)
        self.configured = True
        if not dist.is_main:
            return None
        _check_writable(Path(cfg.out_dir))
        if resume_dir is not None:
            return self._load_resume(resume_dir)
        return None

    def _setup_model_and_data(self, resume: dict[str, Any] | None) -> None:
        cfg, dist = self.config, self.dist
        assert self.spec is not None
        _seed_everything(cfg.seed)
        self._built = build_model(self.spec, cfg, self.emit, fresh=resume is None)
        if dist.enabled and not dist.is_main:
            # Each rank draws its own dropout masks and augmentation; rank 0 keeps the
            # single-process stream. (The weights were drawn before this, identically.)
            _seed_everything(hash((cfg.seed, dist.rank)) & 0x7FFFFFFF)

        self._stop_before_start()
        self.scans = scan_data(cfg, self.emit, self.stop)
        self._stop_before_start()

    def _setup_run_folder(self, resume: dict[str, Any] | None) -> None:
        """The record folder and the weights file (rank 0); after every rank's data scan
        passed, so a failed scan anywhere leaves no empty record behind."""
        cfg, dist = self.config, self.dist
        if resume is not None:
            self.checkpointer.resume(absolute_path(resume["weights_path"]), self.state)
            if dist.is_main:  # rank 0 alone owns the files (its decision is broadcast)
                self.checkpointer.reclaim(
                    self._run_dir().name, cfg.backbone, cfg.weights_path, self.state
                )
        elif not dist.is_main:
            self.run_dir, self.checkpointer.weights_path = Path(), Path()  # rank 0's, broadcast next
        else:
            root = runs_root(cfg.runs_dir)
            if self.given_run_dir is not None:
                self.run_dir = self.given_run_dir  # its recorder is open already
            else:
                try:
                    self.run_dir = new_run_dir(root, cfg.backbone)
                except OSError as exc:
                    raise RunAborted(
                        f"cannot create the run record folder in {root} ({describe_error(exc)}); "
                        "set DFTUI_HOME to a writable folder"
                    ) from None
            self.run_lock = lock_run(self.run_dir)
            self.checkpointer.reserve(self.run_dir, cfg.backbone, cfg.weights_path, cfg.overwrite)

    def _setup_training(self, resume: dict[str, Any] | None, resume_dir: Path | None) -> None:
        cfg, dist = self.config, self.dist
        device, precision = self._hardware()
        assert self._built is not None and self.scans is not None and self.pre is not None
        # Frozen-backbone epochs still to come: DDP looks for unused parameters until then.
        self._find_unused = dist.enabled and self.state.epoch < cfg.freeze_epochs
        net = self.net = place_model(
            self._built, cfg, device, precision, dist,
            resume["model"] if resume is not None else None, self.emit, self._find_unused,
        )
        self._built = None
        recipe = self.recipe
        self.optim = build_optimisation(net.model, cfg, device, precision,
                                        recipe.class_weights(self.scans.train.counts))
        if resume is not None:
            try:
                self.optim.load_state_dict(resume, self.state.epoch)
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                # resume.pt is untrusted: a damaged optimiser or schedule entry is one message.
                raise RunAborted(
                    f"the resume checkpoint {self._run_dir() / RESUME_FILE} holds an unusable "
                    f"optimiser or schedule state ({first_line(exc)}); start a new run") from None
        recipe.attach(net.model)  # the EMA copy, from the (resumed) model, on its device
        if resume is not None:
            try:
                recipe.load_state_dict(resume.get("recipe") or {}, str(self._run_dir() / RESUME_FILE))
            except RecipeError as exc:
                raise RunAborted(str(exc)) from None
        if recipe.ema is not None and net.eval_forward is not None:
            self.ema_forward = EvalForward(recipe.ema.module, device, precision, net.memory_format,
                                           fold_small_workloads=False)
        if dist.is_main:
            self.emit(recipe.imbalance_note(self.scans.train.counts))
        # Class-balanced draws (balance "sampler", one process only: see check_processes).
        sampler = None if dist.enabled else recipe.train_sampler(
            [label for _, label in self.scans.train.samples], len(CLASS_NAMES))
        loaders = self.loaders = build_loaders(
            cfg, self.scans, self.pre, device, dist, self.batch_per_process, sampler
        )
        for forward in (net.eval_forward, self.ema_forward):
            if forward is not None:
                forward.plan(self.scans.val.total * max(0, cfg.epochs - self.state.epoch))
        self.clock = RunClock(self.started, cfg.epochs, len(loaders.train), loaders.val_batches)
        if resume is not None:
            self._restore_rng(resume)
            self.emit(LogMessage("info", f"resuming after epoch {self.state.epoch} from {resume_dir}"))
            saved_world = int(resume.get("world_size", 1) or 1)
            if saved_world != dist.world and dist.is_main:
                self.emit(LogMessage("warning", _world_change_note(saved_world, dist.world, cfg.batch_size)))
        if cfg.accum_steps > 1 and dist.is_main:
            self.emit(LogMessage(
                "info",
                f"gradient accumulation: one optimiser step every {cfg.accum_steps} batches of "
                f"{cfg.batch_size}, an effective batch of {cfg.batch_size * cfg.accum_steps}",
            ))
        if dist.enabled and dist.is_main:
            self.emit(
                LogMessage(
                    "info",
                    f"distributed: {dist.world} processes ({dist.backend}); batch "
                    f"{self.batch_per_process} per process × {dist.world} = {cfg.batch_size} "
                    f"global; learning rate {cfg.lr:g} as given (no scaling rule); batch norm: "
                    + ("synchronised" if cfg.sync_bn else "frozen" if cfg.freeze_bn
                       else "per process, statistics averaged each epoch"),
                )
            )

    def _restore_rng(self, resume: dict[str, Any]) -> None:
        dist = self.dist
        ranks = resume.get("rng_ranks")
        if isinstance(ranks, list) and len(ranks) == dist.world:
            _set_rng_state(ranks[dist.rank])  # same world size: every rank's own stream
        elif dist.is_main:
            _set_rng_state(resume["rng"])
        else:
            _seed_everything(hash((self.config.seed, dist.rank, self.state.epoch)) & 0x7FFFFFFF)

    def _open_recorder(self, user_emit: Emit, resumed: bool) -> None:
        run_dir = self._run_dir()
        try:
            recorder = RunRecorder(run_dir, resumed=resumed, stop=self.stop)
        except OSError as exc:
            raise RunAborted(
                f"cannot write the run record in {run_dir} ({describe_error(exc)})"
            ) from None
        self.recorder = recorder
        self._record_warned = False

        def tee(event: Event) -> None:
            recorder(event)
            while recorder.notices:  # e.g. the run folder was deleted and made again
                notice = LogMessage("warning", recorder.notices.pop(0))
                recorder(notice)
                user_emit(notice)
            if recorder.write_error and not self._record_warned:
                # Say once that the record is incomplete (e.g. the disk is full); go on.
                self._record_warned = True
                user_emit(
                    LogMessage("warning", f"the run record could not be written: {recorder.write_error}")
                )
            user_emit(event)

        self.emit = tee

    def _load_resume(self, run_dir: Path) -> dict[str, Any]:
        path = resume_file(run_dir)
        self.run_lock = lock_run(run_dir)
        if self.run_lock is None:
            raise RunAborted(
                f"run {run_dir.name} is already being run by another process; stop it before "
                "resuming, or wait for it to end"
            )
        other = _live_owner(run_dir)
        if other is not None:
            raise RunAborted(
                f"run {run_dir.name} is still running (process {other}); stop it before "
                "resuming, or wait for it to end"
            )
        ckpt, self.state = read_resume(path)
        saved = ckpt.get("config") or {}
        # The model must be the one saved; other changed settings would make the resumed
        # run differ from an uninterrupted one: say so.
        if saved.get("backbone") not in (None, self.config.backbone):
            raise RunAborted(
                f"{path} holds a {saved['backbone']} run, but the settings given are for "
                f"{self.config.backbone}; resume with the run's own settings (its config.json)"
            )
        given = self.config.to_dict()

        def same(key: str) -> bool:
            if key in ("train_dir", "val_dir"):  # older records kept them relative
                return str(absolute_path(str(saved[key]))) == str(given.get(key))
            return str(saved[key]) == str(given.get(key))

        changed = [
            key
            for key in ("img_size", "batch_size", "lr", "seed", "augment", "train_dir", "val_dir")
            if key in saved and not same(key)
        ]
        if changed:
            self.emit(
                LogMessage(
                    "warning",
                    f"resuming with settings that differ from the run's own ({', '.join(changed)}); "
                    "the result will not match an uninterrupted run",
                )
            )
        return ckpt

    def is_complete(self) -> bool:
        """Every epoch recorded (its EpochEnd emitted), or every one up to where early
        stopping ended the run, and the best of them saved."""
        return (
            self.configured
            and self.recorded_epoch >= (self._early_stop_epoch() or self.config.epochs)
            and self.checkpointer.saved_best == self.state.best_epoch
        )

    def _early_stop_epoch(self) -> int | None:
        """The epoch early stopping ended (or ends) the run at, before its last epoch."""
        epoch = self.recipe.early_stop_epoch(self.state.history)
        return epoch if epoch is not None and epoch < self.config.epochs else None

    def _stop_before_start(self) -> None:
        """A Ctrl+C during setup ends it here, before a run folder (with nothing to resume)
        is made; a resumed run keeps its folder and its checkpoint as they were."""
        if self.stop.is_set():
            raise StoppedBeforeStart()

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> Event:
        cfg = self.config
        net, loaders, _ = self._parts()
        assert self.spec is not None
        ended = self._early_stop_epoch()
        if ended is not None:
            # Resumed after early stopping ended the run (its patience is kept on resume).
            if self.dist.is_main:
                self.emit(LogMessage(
                    "warning",
                    f"early stopping ended this run after epoch {ended} ({cfg.early_stop_metric} "
                    f"did not improve for {cfg.early_stop_patience} epoch(s)); there is nothing "
                    "left to train: start a new run to train further"))
            return self._finish("finished")
        for epoch in range(self.state.epoch + 1, cfg.epochs + 1):
            # Reseeding per epoch keeps the shuffle order independent of where a run resumed.
            loaders.seed_epoch(cfg.seed, epoch)
            note = self.recipe.start_epoch(net.model, self.spec.head, epoch)  # frozen or not
            if note is not None and self.dist.is_main:
                self.emit(note)
            if self._find_unused and not self.recipe.frozen:
                # Unfrozen: every rank wraps the model again, without the unused search.
                device, _ = self._hardware()
                net.forward = wrap_model(net.model, cfg, device, self.dist)
                self._find_unused = False
            t_epoch = time.monotonic()
            train = self._train_epoch(epoch)
            if train is None:
                return self._finish(self._stop_reason())
            if self.dist.enabled and not (cfg.sync_bn or cfg.freeze_bn):
                # Every rank validates, and rank 0 saves, the same statistics.
                distributed.average_bn_stats(net.model)
                if self.recipe.ema is not None:
                    # The average is linear: averaging its statistics over the ranks equals
                    # averaging the ranks' averaged statistics.
                    distributed.average_bn_stats(self.recipe.ema.module)
            val = self._validate(epoch)
            if val is None:
                return self._finish(self._stop_reason())
            seconds = time.monotonic() - t_epoch
            self._end_epoch(epoch, train, val, seconds)
            if self._early_stop_epoch() is not None:
                return self._finish("finished")
            if self._stop_requested() and not self.is_complete():
                return self._finish(self._stop_reason())
        return self._finish("finished")

    def _stop_reason(self) -> str:
        return getattr(self.stop, "reason", "stopped")

    def _stop_requested(self, thin_batch: bool = False) -> bool:
        """Whether to stop now. With several ranks this is one small all-reduce, so a
        stop asked of any rank (a signal, `dftui stop` on rank 0) ends every rank at the
        same step; ``thin_batch`` is folded into the same all-reduce (see _train_epoch)."""
        self._thin_batch = thin_batch
        if not self.dist.enabled:
            return self.stop.is_set()
        asked = self.stop.is_set()
        stopped, interrupted, thin = distributed.any_true(
            asked and self._stop_reason() == "stopped", asked and self._stop_reason() != "stopped",
            thin_batch,
        )
        self._thin_batch = thin
        if (stopped or interrupted) and not asked:
            reason = "interrupted" if interrupted else "stopped"
            if hasattr(self.stop, "request"):
                self.stop.request(reason)
            else:
                self.stop.set()
        return stopped or interrupted

    def _train_epoch(self, epoch: int) -> dict[str, float] | None:
        cfg, dist = self.config, self.dist
        net, loaders, _ = self._parts()
        device, _ = self._hardware()
        assert self.optim is not None and self.clock is not None
        optim = self.optim
        lr = optim.lr  # this epoch's learning rate (the schedule set it at the last epoch end)
        net.train_mode(cfg.freeze_bn)
        assert self.spec is not None
        self.recipe.train_mode(net.model, self.spec.head)  # a frozen backbone stays in eval mode
        loss_sum = torch.zeros((), device=device)
        images = 0
        spe = len(loaders.train)
        pending = False  # gradients added since the last optimiser step
        optim.zero_grad()
        progress = self.clock.begin("train", epoch, self.emit, device)
        for i, (x, y, skipped) in enumerate(progress.timed(loaders.train), start=1):
            # With several ranks a step must be taken by all or none: one whose batch lost
            # its images to decode failures (or, batch norm training, kept a single one)
            # is skipped on every rank.
            thin = dist.enabled and y.numel() < (1 if cfg.freeze_bn else 2)
            if self._stop_requested(thin):
                return None
            self._note_skipped(skipped)
            loss = self._backward(epoch, i, x, y, optim.group_size(i, spe))
            pending = pending or loss is not None
            # One optimiser step per accum_steps batches (every batch by default), also
            # when the batch that ends the group was left out.
            if pending and optim.ends_group(i, spe):
                optim.step()
                self.recipe.after_step(net.model)  # the weight average (EMA), when on
                pending = False
            if loss is None:
                continue
            # One host sync per batch (the loss value), as a plain loop's loss.item() does.
            loss_value = loss.item()
            count = y.numel()
            if dist.enabled:
                # The global batch's loss: every rank sees the same value (and the same
                # NaN, so all stop at the same step).
                total, count_f = distributed.sum_floats([loss_value * count, float(count)])
                count = int(count_f)
                loss_value = total / count
            if not math.isfinite(loss_value):
                raise RunAborted(
                    f"the training loss became {loss_value} at epoch {epoch}, batch {i}; the run "
                    "was stopped and the best weights so far are kept",
                    epoch,
                    i,
                    fixes=_NOT_FINITE_FIXES,
                )
            loss_sum += loss_value * count if dist.enabled else loss.detach().float() * count
            images += count
            progress.step(i, images, loss_value)
        if images == 0:
            raise RunAborted(f"epoch {epoch}: no training image could be read", epoch)
        images_per_s, data_wait = progress.rates(images)
        return {
            "loss": float(loss_sum.item()) / images,
            "images_per_s": images_per_s,
            "data_wait": data_wait,
            "lr": lr,
        }

    def _backward(
        self, epoch: int, i: int, x: torch.Tensor, y: torch.Tensor, share: int
    ) -> torch.Tensor | None:
        """Batch ``i``'s loss, its gradients added (``share``: the batches its optimiser
        step averages over); None when the batch is left out."""
        net, _, _ = self._parts()
        device, precision = self._hardware()
        assert self.optim is not None
        if y.numel() == 0 or self._thin_batch:
            if self._thin_batch and self.dist.is_main:
                self.emit(LogMessage("warning", f"epoch {epoch}, batch {i}: a process had "
                                     "fewer than 2 readable images; step skipped on all"))
            return None
        x = x.to(device, non_blocking=True, memory_format=net.memory_format)
        y = y.to(device, non_blocking=True)
        try:
            with _autocast(device, precision):
                out = net.forward(x)
                loss = self.optim.criterion(out.float(), y)
        except ValueError as exc:
            # Batch norm cannot train on one image whose features are 1×1 (small
            # --img-size); such a batch (a last one, or one thinned by skipped
            # images) is left out rather than ending the run.
            if y.numel() != 1 or "more than 1 value per channel" not in str(exc):
                raise
            self.emit(LogMessage("warning", f"epoch {epoch}, batch {i}: a batch of one "
                                 "image cannot train batch norm at this image size; skipped"))
            return None
        self.optim.backward(loss, share)
        return loss

    @torch.inference_mode()
    def _validate(self, epoch: int) -> dict[str, Any] | None:
        net, loaders, _ = self._parts()
        device, precision = self._hardware()
        assert self.clock is not None
        net.model.eval()
        for folded in (net.eval_forward, self.ema_forward):
            if folded is not None:
                folded.sync()
        ema = self.recipe.ema
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        labels: list[torch.Tensor] = []
        preds: list[torch.Tensor] = []
        seen = 0
        # With EMA the average is the model validated and saved (val_*); the trained
        # model's own results are reported beside it (raw_*).
        raw_loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        raw_preds: list[torch.Tensor] = []

        def running_loss() -> float:
            return float(loss_sum.item()) / max(1, seen)

        batches: Any = loaders.val
        if self.dist.enabled:
            # Shards differ by at most one image; every rank takes as many steps as the
            # largest (rank 0's), so the per-step stop check stays collective.
            batches = itertools.islice(
                itertools.chain(loaders.val, itertools.repeat(None)), loaders.val_batches
            )
        progress = self.clock.begin("val", epoch, self.emit, device)
        for i, batch in enumerate(progress.timed(batches), start=1):
            if self._stop_requested():
                return None
            if batch is None:
                continue
            x, y, skipped = batch
            self._note_skipped(skipped)
            if y.numel() == 0:
                continue
            x = x.to(device, non_blocking=True, memory_format=net.memory_format)
            y = y.to(device, non_blocking=True)
            out = self._logits(x, net.eval_forward, net.forward)
            if ema is not None:
                raw_loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").double()
                raw_preds.append(out.argmax(1))
                out = self._logits(x, self.ema_forward, ema.module)
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").double()
            preds.append(out.argmax(1))
            labels.append(y)
            seen += len(y)
            progress.step(i, seen, running_loss)
        y_all = torch.cat(labels).cpu().numpy() if labels else np.zeros(0, dtype=np.int64)
        p_all = torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64)
        loss_total = float(loss_sum.item())
        raw_p = torch.cat(raw_preds).cpu().numpy() if raw_preds else np.zeros(0, dtype=np.int64)
        raw_loss = float(raw_loss_sum.item())
        if self.dist.enabled:
            # Each image was validated by exactly one rank (distributed.Shard, no padding):
            # the gathered predictions are the single-process evaluation's, in another order.
            parts = distributed.all_gather((y_all, p_all, loss_total, raw_p, raw_loss))
            y_all = np.concatenate([part[0] for part in parts])
            p_all = np.concatenate([part[1] for part in parts])
            loss_total = sum(part[2] for part in parts)
            raw_p = np.concatenate([part[3] for part in parts])
            raw_loss = sum(part[4] for part in parts)
        if len(y_all) == 0:
            raise RunAborted(f"epoch {epoch}: no validation image could be read", epoch)
        conf = Confusion.from_labels(y_all, p_all)
        loss = loss_total / len(y_all)
        if not math.isfinite(loss):
            raise RunAborted(
                f"the validation loss became {loss} at epoch {epoch}; the run was stopped and "
                "the best weights so far are kept",
                epoch,
                fixes=_NOT_FINITE_FIXES,
            )
        result: dict[str, Any] = {"loss": loss, "confusion": conf}
        if ema is not None:
            result["raw"] = {"loss": raw_loss / len(y_all),
                             "accuracy": Confusion.from_labels(y_all, raw_p).accuracy}
        return result

    def _logits(self, x: torch.Tensor, folded: EvalForward | None, module: nn.Module) -> torch.Tensor:
        """Validation logits (float32): the folded copy, or the module itself (compiled)."""
        if folded is not None:
            return folded(x)
        device, precision = self._hardware()
        with _autocast(device, precision):
            return module(x).float()

    def _note_skipped(self, skipped: list[str]) -> None:
        added = False
        for item in skipped:
            item = display_path(item)
            if item in self.state.skipped_set:
                continue
            self.state.skipped_set.add(item)
            self.state.skipped.append(item)
            added = True
            if len(self.state.skipped) <= MAX_LOGGED_SKIPS:
                self.emit(LogMessage("warning", f"skipped unreadable image {item}"))
        if added:
            self._write_skipped()

    def _write_skipped(self) -> None:
        """skipped.txt in the run folder: every image left out, found by the scan or while
        decoding, one "path<TAB>reason" a line; its count goes into run.json."""
        if self.recorder is None:  # None on ranks other than 0
            return
        assert self.scans is not None
        lines = [
            f"{display_path(path)}\t{reason}"
            for scan in (self.scans.train, self.scans.val)
            for path, reason in scan.unreadable
        ]
        for item in self.state.skipped:
            path, _, reason = item.rpartition(": ")
            lines.append(f"{path or item}\t{reason if path else 'could not be decoded'}")
        self.recorder.note_skipped(lines, SKIPPED_FILE)

    def _end_epoch(
        self, epoch: int, train: dict[str, float], val: dict[str, Any], seconds: float
    ) -> None:
        conf: Confusion = val["confusion"]
        acc, vloss = conf.accuracy, val["loss"]
        st = self.state
        if self.dist.enabled:
            # Images only other ranks failed to decode reach rank 0's record.
            for items in distributed.all_gather(list(st.skipped)):
                self._note_skipped([item for item in items if item not in st.skipped_set])
        is_best = acc > st.best_acc or (acc == st.best_acc and vloss < st.best_loss)
        if is_best:
            st.best_epoch, st.best_acc, st.best_loss = epoch, acc, vloss
        st.epoch = epoch
        row = {
            "epoch": epoch,
            "train_loss": train["loss"],
            "val_loss": vloss,
            "val_accuracy": acc,
            "val_precision": conf.precision,
            "val_recall": conf.recall,
            "val_f1": conf.f1,
            "seconds": seconds,
            "images_per_s": train["images_per_s"],
            "data_wait": train["data_wait"],
            "lr": train["lr"],
            "confusion": conf.to_dict(),
        }
        raw = val.get("raw")
        if raw is not None:  # EMA on: val_* are the average's, these the trained model's
            row.update(raw_val_loss=raw["loss"], raw_val_accuracy=raw["accuracy"])
        st.history.append(row)
        assert self.optim is not None
        # The next epoch's learning rate, on every rank, before resume.pt keeps it.
        self.optim.end_epoch(epoch, vloss)
        if not self.dist.is_main:
            st.epoch = epoch
            if is_best:
                self.checkpointer.saved_best = epoch
            self._save_resume()  # takes part in gathering the random states
            return
        net, _, _ = self._parts()
        if is_best:
            # With EMA the average is the run's weights (validated as val_*).
            saved = self.recipe.saved_model(net.model)
            self.checkpointer.save_best(saved.state_dict(), self._metadata(), epoch)
        elif self.checkpointer.saved_best is not None:
            self.checkpointer.update_metadata(self._metadata())
        self.emit(
            EpochEnd(
                epoch=epoch,
                epochs=self.config.epochs,
                train_loss=train["loss"],
                val_loss=vloss,
                val_accuracy=acc,
                val_precision=conf.precision,
                val_recall=conf.recall,
                val_f1=conf.f1,
                seconds=seconds,
                images_per_s=train["images_per_s"],
                data_wait=train["data_wait"],
                is_best=is_best,
                best_epoch=st.best_epoch or epoch,
                skipped_images=len(st.skipped),
                lr=train["lr"],
                raw_val_loss=raw["loss"] if raw is not None else None,
                raw_val_accuracy=raw["accuracy"] if raw is not None else None,
            )
        )
        self.recorded_epoch = epoch
        self._save_resume()

    def _metadata(self) -> dict[str, Any]:
        st = self.state
        net, _, _ = self._parts()
        device, precision = self._hardware()
        run_dir = self._run_dir()
        assert self.spec is not None and self.pre is not None
        return build_metadata(
            self.spec.name,
            self.pre,
            best_epoch=st.best_epoch,
            best_val_accuracy=st.best_acc if st.best_epoch else None,
            best_val_loss=st.best_loss if st.best_epoch else None,
            epochs=st.history,
            config=self.config.to_dict(),
            precision=precision.name,
            channels_last=net.channels_last,
            device=str(device),
            run_id=run_dir.name,
            run_dir=str(run_dir),
            class_names=list(CLASS_NAMES),
            **self.recipe.metadata(),
        )

    def _save_resume(self) -> None:
        # Every rank's random state, so a resume on as many ranks continues each stream.
        rng_ranks = distributed.all_gather(_rng_state()) if self.dist.enabled else None
        if not self.dist.is_main:
            return
        net, _, _ = self._parts()
        assert self.optim is not None
        ckpt = {
            "model": net.model.state_dict(),
            **self.optim.state_dict(),
            "rng": _rng_state(),
            "state": self.state.to_dict(),
            "config": self.config.to_dict(),
            "world_size": self.dist.world,
            "recipe": self.recipe.state_dict(),  # the weight average (EMA), when on
        }
        if rng_ranks is not None:
            ckpt["rng_ranks"] = rng_ranks
        self.checkpointer.save_resume(self._run_dir(), ckpt, self.state.epoch)

    def _calibrate(self) -> CalibrationFit | None:
        """With ``calibrate`` set: fit a temperature on the validation set with the best
        weights as saved (the file, so whatever model is saved as the result is the one
        calibrated) and store it in their metadata. A failure only costs the calibration."""
        ckpt = self.checkpointer
        if not self.config.calibrate or not self.dist.is_main or ckpt.saved_best is None:
            return None
        assert self.spec is not None and self.scans is not None and self.precision is not None
        self.emit(LogMessage("info", "calibrating the best weights on the validation set"))
        try:
            fit = calibrate_weights(ckpt.path, self.config.val_dir, device=str(self.device),
                                    precision=self.precision.name, scan=self.scans.val,
                                    stop=self.stop, batch_size=self.config.batch_size)
            if fit.temperature is not None:
                store_calibration(ckpt.path, self.spec.name,
                                  fit.to_metadata(f"validation set {self.config.val_dir}"),
                                  overwrite=True)
        except Exception as exc:  # noqa: BLE001 - the trained weights stand without it
            self.emit(LogMessage("warning", f"calibration failed ({unexpected_error(exc)}); "
                                 "the weights are saved uncalibrated"))
            return None
        self.emit(LogMessage("info" if fit.ok else "warning", fit.summary()))
        return fit if fit.ok else None

    def _finish(self, status: str) -> RunFinished:
        st = self.state
        ckpt = self.checkpointer
        # Every way a run completes ("finished", an early stop) calibrates; a stop does not.
        fit = self._calibrate() if status.startswith("finished") and not self.stop.is_set() else None
        has_best = st.best_epoch is not None and ckpt.saved_best is not None
        return RunFinished(
            early_stop_epoch=self._early_stop_epoch() if status == "finished" else None,
            status=status,
            epochs_completed=st.epoch,
            best_epoch=st.best_epoch,
            best_val_accuracy=st.best_acc if has_best else None,
            weights_path=str(ckpt.path) if has_best else None,
            metadata_path=str(ckpt.path.with_suffix(".json")) if has_best else None,
            run_dir=str(self._run_dir()),
            seconds=time.monotonic() - self.started,
            temperature=fit.temperature if fit else None,
            ece_before=fit.ece_before if fit else None,
            ece_after=fit.ece_after if fit else None,
        )


def fit(
    config: TrainConfig,
    emit: Emit = lambda event: None,
    stop: threading.Event | None = None,
    resume: str | Path | None = None,
    run_dir: str | Path | None = None,
) -> RunFinished | RunFailed:
    """Run a fine-tuning job and return its final event (also emitted). ``run_dir``: the
    (empty) record folder to use for a new run, made beforehand by whoever launched it so
    that it can be watched from the first event (a background run, the dashboard). Under
    torchrun (RANK and WORLD_SIZE set, process group joined with
    ``distributed.init_from_env``) every rank calls fit; rank 0 alone writes the record,
    weights and checkpoints.

    Never raises for an expected failure (bad data, weights, settings, NaN loss, out of
    memory): those become a RunFailed event with a message meant for the user."""
    stop = stop if stop is not None else threading.Event()
    trainer = _Trainer(config, emit, stop, Path(run_dir) if run_dir is not None else None)
    final: RunFinished | RunFailed
    agreed = False  # every rank ended the loop at the same step (distributed.any_true)
    try:
        trainer.setup(Path(resume) if resume is not None else None)
        final = trainer.run()
        agreed = True
    except RunAborted as exc:
        final = _failed(trainer, str(exc), exc.epoch, exc.batch, fixes=exc.fixes)
    except StoppedBeforeStart:
        final = _not_started(trainer, getattr(stop, "reason", "stopped"))
    except KeyboardInterrupt:
        # A second Ctrl+C: leave now. Files on disk are whole (atomic writes); the last
        # resume checkpoint still resumes.
        final = _interrupted(trainer)
    except Exception as exc:
        if is_out_of_memory(exc):
            half = max(1, config.batch_size // 2)
            final = _failed(
                trainer,
                f"out of memory on {trainer.device or 'the device'} at batch size "
                f"{config.batch_size}; try a smaller batch size (e.g. {half}) or a smaller "
                "image size. The best weights so far are kept",
            )
        elif distributed.is_peer_failure(exc) and trainer.configured:
            # Another rank is gone (killed, crashed, its machine unreachable): this rank
            # cannot go on alone. The run is interrupted, resumable from its last epoch.
            first = (str(exc).splitlines() or [""])[0][:200]
            try:
                trainer.emit(LogMessage("error", "lost contact with another process of the run "
                                        f"({type(exc).__name__}: {first})"))
            except Exception:
                pass
            final = _interrupted(trainer, "interrupted")
        elif stop.is_set() and trainer.configured:
            # Asked to stop and something broke on the way out (e.g. a data-loader worker
            # killed by the same Ctrl+C): the stop is what happened.
            final = _interrupted(trainer, getattr(stop, "reason", "stopped"))
        else:
            final = _failed(trainer, unexpected_error(exc), details=traceback.format_exc())
    try:
        trainer.emit(final)
    except Exception:
        pass
    if trainer.recorder is not None:
        trainer.recorder.close()
    try:
        if trainer.dist.is_main:  # rank 0 holds the lock and the weights reservation
            _release(trainer)
    except Exception:
        pass
    if agreed and trainer.dist.enabled:
        # No rank leaves before rank 0 has written the run's end: torchrun's agent takes a
        # rank's exit as the end of the group and terminates the others, and a peer's
        # closed connections can abort a process still using gloo.
        distributed.wait_for_peers()
    device = trainer.device
    # Drop the model, optimiser and loaders now, so an out-of-memory run gives its memory
    # back to the app before the next one starts.
    trainer.release_memory()
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()
    return final


def _release(trainer: _Trainer) -> None:
    """Give back what the run held: its lock, and its reserved weights name when it saved
    nothing and can never be resumed (so the name is free for the next run)."""
    if trainer.run_lock is not None:
        trainer.run_lock.close()
    trainer.checkpointer.release(trainer.run_dir)


def _live_owner(run_dir: Path) -> int | None:
    """The process still running ``run_dir``, if another live one is."""
    import os

    try:
        info = read_run_info(run_dir)
    except (OSError, ValueError):
        return None
    pid = run_pid(info)
    # A distributed run's launcher holds the record until rank 0 starts: not another owner.
    launcher = os.environ.get("DFTUI_LAUNCHER_PID", "")
    if pid and launcher.isdigit() and pid == int(launcher):
        return None
    if info.get("status") == "running" and pid and pid != os.getpid() and pid_alive(pid):
        return pid
    return None


def _not_started(trainer: _Trainer, reason: str) -> RunFinished:
    """Stopped during setup (the data scan, a download): nothing was trained. A new run has
    no record yet (``run_dir`` is empty: no folder is left with nothing to resume); a
    resumed one keeps its record and checkpoint as they were."""
    run_dir = trainer.run_dir or trainer.resume_dir
    return RunFinished(
        status=reason, epochs_completed=trainer.state.epoch,
        best_epoch=None, best_val_accuracy=None, weights_path=None, metadata_path=None,
        run_dir=str(run_dir) if run_dir is not None else "", seconds=time.monotonic() - trainer.started,
    )


def _interrupted(trainer: _Trainer, reason: str = "interrupted") -> RunFinished | RunFailed:
    if not trainer.configured or trainer.run_dir is None:
        return _not_started(trainer, reason)
    if trainer.is_complete():
        # Interrupted after the last epoch was recorded and its best weights saved (e.g.
        # in the resume checkpoint's save): the run is whole, not "interrupted".
        return trainer._finish("finished")
    return trainer._finish(reason)


def _failed(
    trainer: _Trainer, message: str, epoch: int | None = None, batch: int | None = None,
    details: str = "", fixes: tuple[Fix, ...] = (),
) -> RunFailed:
    # Only weights this run (or the run it resumes) really wrote count as kept.
    ckpt = trainer.checkpointer
    has_best = ckpt.saved_best is not None
    return RunFailed(
        message=message,
        run_dir=str(trainer.run_dir) if trainer.run_dir is not None else None,
        epoch=epoch,
        batch=batch,
        weights_path=str(ckpt.path) if has_best else None,
        details=details,
        fixes=encode_all(fixes),
    )
