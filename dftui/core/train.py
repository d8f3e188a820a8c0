"""The fine-tuning loop: ``fit(config, emit, stop)``.

It knows nothing of Textual or Rich: it takes a config, a callable that receives events and
a ``threading.Event`` that asks it to stop, and checks that flag every batch. Cancelling is an
ordinary outcome: the best weights so far are kept and the run ends as "stopped"."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from dftui.core import distributed
from dftui.core.advice import Fix, encode_all, fixes_of
from dftui.core.backbones import (
    CLASS_NAMES,
    ZIP_MAGIC,
    WeightsError,
    check_declared_size,
    count_parameters,
    get_backbone,
    load_pretrained,
    open_regular_file,
)
from dftui.core.calibration import CalibrationFit, calibrate_weights, store_calibration
from dftui.core.checkpoint import (
    build_metadata,
    claim_weights_path,
    metadata_path,
    recover_weights,
    remove_stale_temp,
    reserve_weights_name,
    run_tag,
    save_json,
    save_torch,
    save_weights,
    weights_owner,
)
from dftui.core.config import ConfigError, TrainConfig, absolute_path
from dftui.core.data import (
    DataError,
    DatasetScan,
    FaceDataset,
    Preprocessing,
    ScanCancelled,
    build_transform,
    display_path,
    make_loader,
    scan_folder,
)
from dftui.core.devices import (
    DeviceError,
    Precision,
    default_channels_last,
    default_workers,
    device_name,
    memory_mb,
    resolve_device,
    resolve_precision,
)
from dftui.core.events import (
    BatchEnd,
    CheckpointSaved,
    Emit,
    EpochEnd,
    Event,
    LogMessage,
    RunFailed,
    RunFinished,
    RunStarted,
    StopFlag,  # noqa: F401 - re-exported: callers make stop flags from here
)
from dftui.core.inference import EvalForward
from dftui.core.metrics import Confusion
from dftui.core.runs import (
    RunRecorder,
    lock_run,
    new_run_dir,
    pid_alive,
    read_run_info,
    run_pid,
    runs_root,
)

BATCH_EVENT_INTERVAL_S = 0.1  # at most ~10 batch events a second reach the listeners
RESUME_FILE = "resume.pt"
SKIPPED_FILE = "skipped.txt"  # every skipped image with its reason, in the run folder
MAX_LOGGED_SKIPS = 20  # skipped images named one by one in the log; the rest are counted
_T = TypeVar("_T")
# A loss that became NaN or infinite: a lower learning rate, or full precision.
_NOT_FINITE_FIXES = (Fix("lr"), Fix("precision", "fp32"))




class RunAborted(Exception):
    """A failure with a message meant for the user (``fixes``: the settings out of it)."""

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None,
                 fixes: tuple[Fix, ...] = ()):
        super().__init__(message)
        self.epoch, self.batch = epoch, batch
        self.fixes = fixes


@dataclass
class _State:
    """What changes as the run goes; saved in the resume checkpoint."""

    epoch: int = 0  # epochs completed
    best_epoch: int | None = None
    best_acc: float = -1.0
    best_loss: float = math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason", decode failures
    skipped_set: set[str] = field(default_factory=set)


def _state_from_checkpoint(st: dict[str, Any]) -> _State:
    state = _State(
        epoch=int(st["epoch"]),
        best_epoch=st["best_epoch"],
        best_acc=float(st["best_acc"]),
        best_loss=float(st["best_loss"]),
        history=list(st["history"]),
        skipped=list(st.get("skipped", [])),
    )
    state.skipped_set = set(state.skipped)
    return state


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
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".dftui-write-test-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunAborted(
            f"output folder {folder} is not writable ({exc.strerror or exc})",
            fixes=(Fix("out_dir"),),
        ) from None


class StoppedBeforeStart(Exception):
    """A stop asked for before the run folder existed: nothing was trained or recorded."""


def _scan(path: Path, role: str, emit: Emit, stop: threading.Event | None = None) -> DatasetScan:
    try:
        scan = scan_folder(path, stop=stop)
    except DataError as exc:
        raise RunAborted(f"{role} data: {exc}") from None
    except ScanCancelled:
        raise StoppedBeforeStart() from None
    for warning in scan.warnings:
        emit(LogMessage("warning", f"{role} data: {warning}"))
    for path_, reason in scan.unreadable[:MAX_LOGGED_SKIPS]:
        emit(LogMessage("warning", f"skipping unreadable image {display_path(path_)}: {reason}"))
    if len(scan.unreadable) > MAX_LOGGED_SKIPS:
        emit(LogMessage("warning", f"... and {len(scan.unreadable) - MAX_LOGGED_SKIPS} more"))
    return scan


class _SeededIndex(int):
    """A sample index that carries the seed for that sample's random augmentation."""

    seed: int

    def __new__(cls, index: int, seed: int) -> _SeededIndex:
        obj = super().__new__(cls, index)
        obj.seed = seed
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (_SeededIndex, (int(self), self.seed))


class _SeededSampler:
    """Wraps the shuffling sampler: the i-th sample of epoch e gets seed (run seed, e, i).

    Persistent loader workers keep their random state from one epoch to the next, so the
    flips of epoch 5 depend on everything the workers drew since the run started; a resumed
    run would draw differently. Seeding per sample makes augmentation the same with any
    number of workers and across resumes."""

    def __init__(self, inner: Any, seed: int, rank: int = 0, world: int = 1) -> None:
        self.inner = inner
        self.base = seed
        self.epoch = 0
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Any:
        # A rank's k-th sample is position k·W + r of the epoch's whole order (see
        # distributed.ShardedShuffle): the same sample gets the same seed as in a
        # single-process run, whatever the number of processes.
        for pos, index in enumerate(self.inner):
            pos = pos * self.world + self.rank
            yield _SeededIndex(index, hash((self.base, self.epoch, pos)) & 0x7FFFFFFF)


class _SeededFaceDataset(FaceDataset):
    """FaceDataset that seeds torch, numpy and random from a _SeededIndex (worker side)."""

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        seed = getattr(index, "seed", None)
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        return super().__getitem__(int(index))


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
                self.state = _state_from_checkpoint(resume["state"])

        # Events before the run folder exists are kept and written to the record with it.
        # A folder known now (a resume, or one made for this run by its launcher) gets them
        # as they happen, so a watcher of its log sees downloads and the data scan live.
        # Only rank 0 records; every rank passes the same _agree points (collectives).
        early: list[Event] = []
        user_emit = self.emit
        self.recorder: RunRecorder | None = None
        self._record_warned = False
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
        self._agree(lambda: self._setup_model_and_data(resume, resume_dir))
        self._agree(lambda: self._setup_run_folder(resume, resume_dir))
        if dist.enabled:
            st = self.state
            (self.run_dir, self.weights_path, self.saved_best, st.best_epoch, st.best_acc,
             st.best_loss) = distributed.broadcast(
                (self.run_dir, self.weights_path, self.saved_best, st.best_epoch, st.best_acc,
                 st.best_loss) if dist.is_main else None
            )

        def open_late() -> None:
            if dist.is_main and self.recorder is None:
                self._open_recorder(user_emit, resumed=False)

        self._agree(open_late)
        if dist.is_main:
            recorder = self.recorder
            assert recorder is not None
            if resume is not None:
                recorder.trim_after(self.state.epoch)
                # The run's previous process is gone (checked): half-written temporary files
                # from a kill inside a save are litter now.
                for name in (RESUME_FILE, "run.json", "config.json", "metrics.csv", SKIPPED_FILE):
                    remove_stale_temp(self.run_dir / name)
                remove_stale_temp(self.weights_path)
                remove_stale_temp(metadata_path(self.weights_path))
            for event in early:
                recorder(event)
            self._write_skipped()
        else:
            self.emit = user_emit

        self._agree(lambda: self._setup_training(resume, resume_dir))
        extra: dict[str, Any] = {}
        if dist.enabled:
            extra = {
                "world_size": dist.world,
                "batch_per_process": self.batch_per_process,
                "backend": dist.backend,
            }
        self.emit(
            RunStarted(
                run_id=self.run_dir.name,
                run_dir=str(self.run_dir),
                config={**cfg.to_dict(), "weights_path": str(self.weights_path), **extra},
                device=str(self.device),
                device_name=device_name(self.device),
                precision=self.precision.name,
                channels_last=self.channels_last,
                train_size=self.train_scan.total,
                val_size=self.val_scan.total,
                train_counts=dict(self.train_scan.counts),
                val_counts=dict(self.val_scan.counts),
                steps_per_epoch=len(self.train_loader),
                start_epoch=self.state.epoch,
                params=count_parameters(self.model),
                workers=self.workers,
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
        except Exception as exc:  # noqa: BLE001 - reported on every rank, with its rank
            error = f"{type(exc).__name__}: {exc}"
        for rank, message in enumerate(distributed.all_gather(error)):
            if message is not None:
                raise RunAborted(f"rank {rank}: {message}")
        return result

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
            self.device = self._pick_device()
            self.precision = resolve_precision(cfg.precision, self.device)
        except (ConfigError, DeviceError) as exc:
            raise RunAborted(str(exc), fixes=fixes_of(exc)) from None
        if cfg.batch_size % dist.world:
            raise RunAborted(
                f"batch size {cfg.batch_size} is the global batch and does not split evenly "
                f"over {dist.world} processes; use a multiple of {dist.world}"
            )
        self.batch_per_process = cfg.batch_size // dist.world
        if dist.enabled and cfg.sync_bn and self.device.type != "cuda":
            raise RunAborted(
                "synchronised batch norm needs CUDA GPUs (NCCL); on the CPU leave it off: the "
                "batch-norm statistics are then averaged over the processes at each epoch end"
            )
        self.spec = get_backbone(cfg.backbone)
        self.pre = Preprocessing(
            cfg.img_size or self.spec.input_size, self.spec.mean, self.spec.std, self.spec.interpolation
        )
        self.state = _State()
        if not dist.is_main:
            return None
        _check_writable(Path(cfg.out_dir))
        if resume_dir is not None:
            return self._load_resume(resume_dir)
        return None

    def _setup_model_and_data(self, resume: dict[str, Any] | None, resume_dir: Path | None) -> None:
        cfg, dist = self.config, self.dist
        _seed_everything(cfg.seed)
        self.model = self.spec.build()
        if resume is None:
            try:
                used = load_pretrained(self.model, self.spec, cfg.pretrained, self.emit)
            except WeightsError as exc:
                raise RunAborted(str(exc), fixes=exc.fixes) from None
            if used is None:
                self.emit(LogMessage("warning", "starting from random weights (pretrained: none)"))
            else:
                self.emit(LogMessage("info", f"initialised from {used}"))
        # A resumed run takes its weights from resume.pt: the pretrained file may be gone.
        if dist.enabled and not dist.is_main:
            # Each rank draws its own dropout masks and augmentation; rank 0 keeps the
            # single-process stream. (The weights were drawn before this, identically.)
            _seed_everything(hash((cfg.seed, dist.rank)) & 0x7FFFFFFF)

        self._stop_before_start()
        self.train_scan = _scan(Path(cfg.train_dir), "training", self.emit, self.stop)
        self.val_scan = _scan(Path(cfg.val_dir), "validation", self.emit, self.stop)
        self._stop_before_start()

    def _setup_run_folder(self, resume: dict[str, Any] | None, resume_dir: Path | None) -> None:
        """The record folder and the weights file (rank 0); after every rank's data scan
        passed, so a failed scan anywhere leaves no empty record behind."""
        cfg, dist = self.config, self.dist
        self.saved_best: int | None = None
        self._weights_meta: dict[str, Any] = {}  # the weights' digest, kept in every .json rewrite
        if resume is not None:
            self.weights_path = absolute_path(resume["weights_path"])
            self.saved_best = self.state.best_epoch
            if dist.is_main:  # rank 0 alone owns the files (its decision is broadcast)
                self._own_weights_on_resume()
        elif not dist.is_main:
            self.run_dir, self.weights_path = Path(), Path()  # rank 0's, broadcast next
        else:
            root = runs_root(cfg.runs_dir)
            if self.given_run_dir is not None:
                self.run_dir = self.given_run_dir  # its recorder is open already
            else:
                try:
                    self.run_dir = new_run_dir(root, cfg.backbone)
                except OSError as exc:
                    raise RunAborted(
                        f"cannot create the run record folder in {root} ({exc.strerror or exc}); "
                        "set DFTUI_HOME to a writable folder"
                    ) from None
            self.run_lock = lock_run(self.run_dir)
            wanted = cfg.weights_path
            try:
                # Reserved now (created exclusively), so two runs started together never
                # pick the same file.
                target = claim_weights_path(
                    wanted, self.run_dir.name, run_tag(self.run_dir.name, cfg.backbone), cfg.overwrite,
                    runs=self.run_dir.parent,
                )
            except OSError as exc:
                raise RunAborted(
                    f"cannot reserve the weights file in {wanted.parent} ({exc.strerror or exc})",
                    fixes=(Fix("out_dir"),),
                ) from None
            if target != wanted:
                self.emit(
                    LogMessage(
                        "warning",
                        f"{wanted} exists and is kept; this run saves to {target}",
                        encode_all([Fix("overwrite")]),
                    )
                )
            self.weights_path = target

    def _setup_training(self, resume: dict[str, Any] | None, resume_dir: Path | None) -> None:
        cfg, dist = self.config, self.dist
        self.channels_last = (
            default_channels_last(self.device) if cfg.channels_last is None else cfg.channels_last
        )
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        if dist.enabled and cfg.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device, memory_format=memory_format)
        self.memory_format = memory_format
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.criterion = nn.CrossEntropyLoss()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.scaler)
        if resume is not None:
            # Before DDP wraps the model: DDP starts every rank from rank 0's parameters.
            self.model.load_state_dict(resume["model"])
            self.optimizer.load_state_dict(resume["optimizer"])
            if resume.get("scaler"):
                self.scaler.load_state_dict(resume["scaler"])
        # The model trains through DDP; self.model stays the plain module, so every saved
        # state_dict has the plain keys (no "module." prefix) and validation runs without
        # collectives. Running statistics are not broadcast at each step
        # (broadcast_buffers=False): each rank keeps its own and they are averaged at the
        # end of every epoch (distributed.average_bn_stats).
        trained: nn.Module = self.model
        if dist.enabled:
            import inspect

            from torch.nn.parallel import DistributedDataParallel

            # Newer torch names the switch forward_sync_buffers (it still syncs at start,
            # where every rank holds the same statistics anyway).
            params = inspect.signature(DistributedDataParallel.__init__).parameters
            no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
            trained = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                **{no_sync: False},
            )
        self.forward = trained
        # Validation runs a batch-norm-folded copy (on the CPU a fused graph, see
        # core/inference.py); with --compile it runs the compiled model as training does.
        self.eval_forward: EvalForward | None = None
        if cfg.compile:
            self.forward = torch.compile(trained)
        else:
            self.eval_forward = EvalForward(
                self.model, self.device, self.precision, memory_format,
                note=lambda message: self.emit(LogMessage("info", message)),
                fold_small_workloads=False,
            )

        self.workers = default_workers() if cfg.workers is None else cfg.workers
        draft = self.pre.input_size
        # Random augmentation in worker processes is seeded per sample (see _SeededSampler);
        # without workers it draws from this process's RNG, saved in resume.pt.
        seeded = cfg.augment != "none" and self.workers > 0
        dataset_cls = _SeededFaceDataset if seeded else FaceDataset
        train_data = dataset_cls(self.train_scan.samples, build_transform(self.pre, cfg.augment), draft)
        val_data = FaceDataset(self.val_scan.samples, build_transform(self.pre), draft)
        self.train_shards: distributed.ShardedShuffle | None = None
        train_sampler: Any = None
        val_sampler: Any = None
        if dist.enabled:
            self.train_shards = distributed.ShardedShuffle(len(train_data), dist.rank, dist.world, cfg.seed)
            train_sampler = self.train_shards
            val_sampler = distributed.Shard(len(val_data), dist.rank, dist.world)
        self.train_loader = make_loader(
            train_data, self.batch_per_process, True, self.workers, cfg.seed, self.device,
            cfg.mp_context, sampler=train_sampler,
        )
        self._seeded_sampler: _SeededSampler | None = None
        batch_sampler = getattr(self.train_loader, "batch_sampler", None)
        if seeded and batch_sampler is not None and hasattr(batch_sampler, "sampler"):
            self._seeded_sampler = _SeededSampler(batch_sampler.sampler, cfg.seed, dist.rank, dist.world)
            batch_sampler.sampler = self._seeded_sampler
        self.val_loader = make_loader(
            val_data, self.batch_per_process, False, self.workers, cfg.seed, self.device,
            cfg.mp_context, sampler=val_sampler,
        )
        # Every rank runs as many validation steps as the largest shard (rank 0's).
        self.val_batches = -(-(-(-len(val_data) // dist.world)) // self.batch_per_process)
        if self.eval_forward is not None:
            self.eval_forward.plan(self.val_scan.total * max(0, cfg.epochs - self.state.epoch))
        if resume is not None:
            self._restore_rng(resume)
            self.emit(LogMessage("info", f"resuming after epoch {self.state.epoch} from {resume_dir}"))
            saved_world = int(resume.get("world_size", 1) or 1)
            if saved_world != dist.world and dist.is_main:
                self.emit(LogMessage("warning", _world_change_note(saved_world, dist.world, cfg.batch_size)))
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
        try:
            recorder = RunRecorder(self.run_dir, resumed=resumed, stop=self.stop)
        except OSError as exc:
            raise RunAborted(
                f"cannot write the run record in {self.run_dir} ({exc.strerror or exc})"
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

    def _own_weights_on_resume(self) -> None:
        """A weights file belongs to the run whose id its metadata holds: a resumed run
        writes its old file only while that is still its own, never a file another run
        (or the user) has put there since."""
        path, run_id = self.weights_path, self.run_dir.name
        from dftui.core.config import weights_name_problem

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
                self._forget_best(f"{path} is gone (moved or deleted)", path)
            return
        taken = f"{path} now belongs to run {holder}" if owner == "run" else f"{path} is now another file"
        try:
            target = claim_weights_path(path, run_id, run_tag(run_id, self.config.backbone), False)
        except OSError as exc:
            raise RunAborted(
                f"{taken} and no other weights file can be reserved in {path.parent} "
                f"({exc.strerror or exc}); free that folder, then resume again"
            ) from None
        self.weights_path = target
        self._forget_best(f"{taken}, which is kept", target)

    def _forget_best(self, why: str, target: Path) -> None:
        """The best weights saved before the interruption are not ours to count any more:
        the resumed run keeps its best from the next epoch on."""
        st = self.state
        if st.best_epoch is not None:
            self.emit(
                LogMessage(
                    "warning",
                    f"{why}; the best weights of epochs 1-{st.epoch} are not there any more, so "
                    f"this run keeps its best from epoch {st.epoch + 1} on, in {target}",
                )
            )
        elif target != self.config.weights_path:
            self.emit(LogMessage("warning", f"{why}; this run saves to {target}"))
        st.best_epoch, st.best_acc, st.best_loss = None, -1.0, math.inf
        self.saved_best = None

    def _load_resume(self, run_dir: Path) -> dict[str, Any]:
        path = run_dir / RESUME_FILE
        if not path.is_file():
            raise RunAborted(
                f"{run_dir} has no resume checkpoint ({RESUME_FILE}): it stopped before its "
                "first epoch ended, so there is nothing to resume; start a new run"
            )
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
        try:
            # Opened as the weights are: a regular file only, no inflating of a zip bomb.
            with open_regular_file(path, "resume checkpoint") as fh:
                if fh.read(4) == ZIP_MAGIC:
                    check_declared_size(fh, path)
                fh.seek(0)
                ckpt = torch.load(fh, map_location="cpu", weights_only=True)
            self.state = _state_from_checkpoint(ckpt["state"])
            saved = ckpt.get("config") or {}
            ckpt["model"], ckpt["optimizer"], ckpt["rng"], ckpt["weights_path"]  # noqa: B018
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets one message
            raise RunAborted(
                f"resume checkpoint {path} cannot be read ({type(exc).__name__}: "
                f"{str(exc)[:200]}); start a new run"
            ) from None
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
        """Every epoch recorded (its EpochEnd emitted) and the best of them saved."""
        st = getattr(self, "state", None)
        return (
            st is not None
            and getattr(self, "recorded_epoch", 0) >= self.config.epochs
            and getattr(self, "saved_best", None) == st.best_epoch
        )

    def _stop_before_start(self) -> None:
        """A Ctrl+C during setup ends it here, before a run folder (with nothing to resume)
        is made; a resumed run keeps its folder and its checkpoint as they were."""
        if self.stop.is_set():
            raise StoppedBeforeStart()

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> Event:
        cfg = self.config
        spe = len(self.train_loader)
        val_batches = self.val_batches if self.dist.enabled else len(self.val_loader)
        # Seconds per training step and per validation step, for the ETA.
        self.step_time: float | None = None
        self.val_step_time: float | None = None
        for epoch in range(self.state.epoch + 1, cfg.epochs + 1):
            # Reseeding per epoch keeps the shuffle order independent of where a run resumed.
            self._seed_epoch(epoch)
            t_epoch = time.monotonic()
            train = self._train_epoch(epoch, spe)
            if train is None:
                return self._finish(self._stop_reason())
            if self.dist.enabled and not (cfg.sync_bn or cfg.freeze_bn):
                # Every rank validates, and rank 0 saves, the same statistics.
                distributed.average_bn_stats(self.model)
            val = self._validate(epoch, val_batches)
            if val is None:
                return self._finish(self._stop_reason())
            seconds = time.monotonic() - t_epoch
            self._end_epoch(epoch, train, val, seconds)
            if self._stop_requested() and not self.is_complete():
                return self._finish(self._stop_reason())
        return self._finish("finished")

    def _seed_epoch(self, epoch: int) -> None:
        seed = self.config.seed * 1000 + epoch
        loader = self.train_loader
        loader.generator.manual_seed(seed)  # type: ignore[union-attr]
        # The shuffle gets a generator of its own: a multi-worker loader also draws its
        # workers' base seed from loader.generator, on the first epoch a process runs but not
        # on later ones (persistent workers), so a shared generator would shuffle a resumed
        # epoch differently from the same epoch in an uninterrupted run.
        sampler = getattr(loader, "sampler", None)
        if sampler is not None and hasattr(sampler, "generator"):
            if getattr(self, "_shuffle_gen", None) is None:
                self._shuffle_gen = torch.Generator()
                sampler.generator = self._shuffle_gen
            self._shuffle_gen.manual_seed(seed)
        if self.train_shards is not None:
            self.train_shards.set_epoch(epoch)  # DistributedSampler's set_epoch
        if self._seeded_sampler is not None:
            self._seeded_sampler.epoch = epoch

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

    def _train_mode(self) -> None:
        self.model.train()
        if self.config.freeze_bn:
            # Batch norm normalises with its stored statistics and does not update them;
            # its scale and shift still train.
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _eta(self, epoch: int, batch: int, spe: int, val_batches: int) -> float | None:
        if self.step_time is None:
            return None
        epochs_left = self.config.epochs - epoch
        train_left = (spe - batch) + epochs_left * spe
        val_step = self.val_step_time if self.val_step_time is not None else self.step_time / 3
        val_left = (epochs_left + 1) * val_batches
        return train_left * self.step_time + val_left * val_step

    def _train_epoch(self, epoch: int, spe: int) -> dict[str, float] | None:
        cfg, dist = self.config, self.dist
        self._train_mode()
        loss_sum = torch.zeros((), device=self.device)
        batches = 0
        images = 0
        wait = 0.0
        last_emit = 0.0
        t0 = time.monotonic()
        t_fetch = t0
        for i, (x, y, skipped) in enumerate(self.train_loader, start=1):
            t_ready = time.monotonic()
            wait += t_ready - t_fetch
            # With several ranks a step must be taken by all or none: one whose batch lost
            # its images to decode failures (or, batch norm training, kept a single one)
            # is skipped on every rank.
            thin = dist.enabled and y.numel() < (1 if cfg.freeze_bn else 2)
            if self._stop_requested(thin):
                return None
            self._note_skipped(skipped)
            if y.numel() == 0 or self._thin_batch:
                if self._thin_batch and dist.is_main:
                    self.emit(LogMessage("warning", f"epoch {epoch}, batch {i}: a process had "
                                         "fewer than 2 readable images; step skipped on all"))
                t_fetch = time.monotonic()
                continue
            x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
            y = y.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            try:
                with _autocast(self.device, self.precision):
                    out = self.forward(x)
                    loss = self.criterion(out.float(), y)
            except ValueError as exc:
                # Batch norm cannot train on one image whose features are 1×1 (small
                # --img-size); such a batch (a last one, or one thinned by skipped
                # images) is left out rather than ending the run.
                if y.numel() != 1 or "more than 1 value per channel" not in str(exc):
                    raise
                self.emit(LogMessage("warning", f"epoch {epoch}, batch {i}: a batch of one "
                                     "image cannot train batch norm at this image size; skipped"))
                t_fetch = time.monotonic()
                continue
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
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
            batches += 1
            images += count
            now = time.monotonic()
            elapsed_epoch = now - t0
            self.step_time = elapsed_epoch / i
            if now - last_emit >= BATCH_EVENT_INTERVAL_S or i == spe:
                last_emit = now
                rss, gpu = memory_mb(self.device)
                self.emit(
                    BatchEnd(
                        phase="train",
                        epoch=epoch,
                        epochs=cfg.epochs,
                        batch=i,
                        batches=spe,
                        loss=loss_value,
                        images_per_s=images / elapsed_epoch if elapsed_epoch > 0 else 0.0,
                        data_wait=wait / elapsed_epoch if elapsed_epoch > 0 else 0.0,
                        elapsed_s=now - self.started,
                        eta_s=self._eta(epoch, i, spe, len(self.val_loader)),
                        rss_mb=rss,
                        gpu_mb=gpu,
                    )
                )
            t_fetch = time.monotonic()
        elapsed = time.monotonic() - t0
        if images == 0:
            raise RunAborted(f"epoch {epoch}: no training image could be read", epoch)
        return {
            "loss": float(loss_sum.item()) / images,
            "images_per_s": images / elapsed if elapsed > 0 else 0.0,
            "data_wait": wait / elapsed if elapsed > 0 else 0.0,
        }

    @torch.inference_mode()
    def _validate(self, epoch: int, val_batches: int) -> dict[str, Any] | None:
        cfg = self.config
        self.model.eval()
        if self.eval_forward is not None:
            self.eval_forward.sync()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        labels: list[torch.Tensor] = []
        preds: list[torch.Tensor] = []
        t0 = time.monotonic()
        last_emit = 0.0
        wait = 0.0  # time blocked on the loader, as in training
        t_fetch = t0
        batches: Any = self.val_loader
        if self.dist.enabled:
            # Shards differ by at most one image; every rank takes as many steps as the
            # largest (rank 0's), so the per-step stop check stays collective.
            batches = itertools.islice(itertools.chain(self.val_loader, itertools.repeat(None)), val_batches)
        for i, batch in enumerate(batches, start=1):
            wait += time.monotonic() - t_fetch
            if self._stop_requested():
                return None
            if batch is None:
                t_fetch = time.monotonic()
                continue
            x, y, skipped = batch
            self._note_skipped(skipped)
            if y.numel() == 0:
                t_fetch = time.monotonic()
                continue
            x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
            y = y.to(self.device, non_blocking=True)
            if self.eval_forward is not None:
                out = self.eval_forward(x)
            else:
                with _autocast(self.device, self.precision):
                    out = self.forward(x).float()
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").double()
            preds.append(out.argmax(1))
            labels.append(y)
            now = time.monotonic()
            self.val_step_time = (now - t0) / i
            if now - last_emit >= BATCH_EVENT_INTERVAL_S or i == val_batches:
                last_emit = now
                rss, gpu = memory_mb(self.device)
                seen = sum(len(t) for t in labels)
                self.emit(
                    BatchEnd(
                        phase="val",
                        epoch=epoch,
                        epochs=cfg.epochs,
                        batch=i,
                        batches=val_batches,
                        loss=float(loss_sum.item()) / max(1, seen),
                        images_per_s=seen / (now - t0) if now > t0 else 0.0,
                        data_wait=wait / (now - t0) if now > t0 else 0.0,
                        elapsed_s=now - self.started,
                        eta_s=(val_batches - i) * self.val_step_time
                        + (self._eta(epoch, len(self.train_loader), len(self.train_loader), 0) or 0.0),
                        rss_mb=rss,
                        gpu_mb=gpu,
                    )
                )
            t_fetch = time.monotonic()
        y_all = torch.cat(labels).cpu().numpy() if labels else np.zeros(0, dtype=np.int64)
        p_all = torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64)
        loss_total = float(loss_sum.item())
        if self.dist.enabled:
            # Each image was validated by exactly one rank (distributed.Shard, no padding):
            # the gathered predictions are the single-process evaluation's, in another order.
            parts = distributed.all_gather((y_all, p_all, loss_total))
            y_all = np.concatenate([part[0] for part in parts])
            p_all = np.concatenate([part[1] for part in parts])
            loss_total = sum(part[2] for part in parts)
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
        return {"loss": loss, "confusion": conf}

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
        lines = [
            f"{display_path(path)}\t{reason}"
            for scan in (self.train_scan, self.val_scan)
            for path, reason in scan.unreadable
        ]
        for item in self.state.skipped:
            path, _, reason = item.rpartition(": ")
            lines.append(f"{path or item}\t{reason if path else 'could not be decoded'}")
        if self.recorder is not None:  # None on ranks other than 0
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
            "confusion": conf.to_dict(),
        }
        st.history.append(row)
        if not self.dist.is_main:
            st.epoch = epoch
            if is_best:
                self.saved_best = epoch
            self._save_resume()  # takes part in gathering the random states
            return
        if is_best:
            self._save_best(epoch)
        elif self.saved_best is not None:
            self._update_metadata()
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
            )
        )
        self.recorded_epoch = epoch
        self._save_resume()

    def _metadata(self) -> dict[str, Any]:
        st = self.state
        return build_metadata(
            self.spec.name,
            self.pre,
            best_epoch=st.best_epoch,
            best_val_accuracy=st.best_acc if st.best_epoch else None,
            best_val_loss=st.best_loss if st.best_epoch else None,
            epochs=st.history,
            config=self.config.to_dict(),
            precision=self.precision.name,
            channels_last=self.channels_last,
            device=str(self.device),
            run_id=self.run_dir.name,
            run_dir=str(self.run_dir),
            class_names=list(CLASS_NAMES),
        )

    def _save_best(self, epoch: int) -> None:
        try:
            written = save_weights(self.model.state_dict(), self.weights_path, self._metadata())
        except (OSError, RuntimeError) as exc:
            # torch.save reports a failed write of its zip records as a RuntimeError.
            raise RunAborted(
                f"could not save weights to {self.weights_path} at epoch {epoch}: "
                f"{_why_save(exc)}; the previous file (if any) is intact. Free some space or "
                "choose another output folder",
                epoch,
            ) from None
        self.saved_best = epoch
        self._weights_meta = {
            k: written[k] for k in ("weights_file", "weights_sha256", "weights_size")
        }
        self.emit(CheckpointSaved("best", str(self.weights_path), epoch))

    def _update_metadata(self) -> None:
        """The weights' metadata carries the run's whole history, not only the epochs up to
        the best one: rewrite the small .json (atomically) after every later epoch."""
        path = metadata_path(self.weights_path)
        try:
            meta = {**self._metadata(), **self._weights_meta}
            if "weights_sha256" not in meta:
                # Resumed: the digest of the weights saved before is in the .json on disk.
                from dftui.core.checkpoint import read_metadata

                old = read_metadata(self.weights_path) or {}
                meta.update({k: old[k] for k in ("weights_file", "weights_sha256", "weights_size") if k in old})
            save_json(meta, path)
        except OSError as exc:
            self.emit(LogMessage("warning", f"could not update {path}: {_why_save(exc)}"))

    def _save_resume(self) -> None:
        st = self.state
        # Every rank's random state, so a resume on as many ranks continues each stream.
        rng_ranks = distributed.all_gather(_rng_state()) if self.dist.enabled else None
        if not self.dist.is_main:
            return
        ckpt = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.precision.scaler else None,
            "rng": _rng_state(),
            "state": {
                "epoch": st.epoch,
                "best_epoch": st.best_epoch,
                "best_acc": st.best_acc,
                "best_loss": st.best_loss,
                "history": st.history,
                "skipped": st.skipped,
            },
            "config": self.config.to_dict(),
            "weights_path": str(self.weights_path),
            "world_size": self.dist.world,
        }
        if rng_ranks is not None:
            ckpt["rng_ranks"] = rng_ranks
        path = self.run_dir / RESUME_FILE
        try:
            save_torch(ckpt, path)
        except (OSError, RuntimeError) as exc:
            # The previous resume.pt is intact (atomic write); training goes on.
            self.emit(
                LogMessage(
                    "warning",
                    f"could not write the resume checkpoint {path} ({_why_save(exc)}); a resume "
                    f"would restart after epoch {st.epoch - 1} at best",
                )
            )
            return
        self.emit(CheckpointSaved("resume", str(path), st.epoch))

    def _calibrate(self) -> CalibrationFit | None:
        """With ``calibrate`` set: fit a temperature on the validation set with the best
        weights as saved (the file, so whatever model is saved as the result is the one
        calibrated) and store it in their metadata. A failure only costs the calibration."""
        if not self.config.calibrate or not self.dist.is_main or getattr(self, "saved_best", None) is None:
            return None
        self.emit(LogMessage("info", "calibrating the best weights on the validation set"))
        try:
            fit = calibrate_weights(self.weights_path, self.config.val_dir, device=str(self.device),
                                    precision=self.precision.name, scan=self.val_scan, stop=self.stop,
                                    batch_size=self.config.batch_size)
            if fit.temperature is not None:
                store_calibration(self.weights_path, self.spec.name,
                                  fit.to_metadata(f"validation set {self.config.val_dir}"), overwrite=True)
        except Exception as exc:  # noqa: BLE001 - the trained weights stand without it
            self.emit(LogMessage("warning", f"calibration failed ({type(exc).__name__}: "
                                 f"{str(exc)[:200]}); the weights are saved uncalibrated"))
            return None
        self.emit(LogMessage("info" if fit.ok else "warning", fit.summary()))
        return fit if fit.ok else None

    def _finish(self, status: str) -> RunFinished:
        st = self.state
        # Every way a run completes ("finished", an early stop) calibrates; a stop does not.
        fit = self._calibrate() if status.startswith("finished") and not self.stop.is_set() else None
        has_best = st.best_epoch is not None and getattr(self, "saved_best", None) is not None
        return RunFinished(
            status=status,
            epochs_completed=st.epoch,
            best_epoch=st.best_epoch,
            best_val_accuracy=st.best_acc if has_best else None,
            weights_path=str(self.weights_path) if has_best else None,
            metadata_path=str(self.weights_path.with_suffix(".json")) if has_best else None,
            run_dir=str(self.run_dir),
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
    except Exception as exc:  # noqa: BLE001 - the UI must survive any engine failure
        if is_out_of_memory(exc):
            half = max(1, config.batch_size // 2)
            final = _failed(
                trainer,
                f"out of memory on {getattr(trainer, 'device', 'the device')} at batch size "
                f"{config.batch_size}; try a smaller batch size (e.g. {half}) or a smaller "
                "image size. The best weights so far are kept",
            )
        elif distributed.is_peer_failure(exc) and hasattr(trainer, "state"):
            # Another rank is gone (killed, crashed, its machine unreachable): this rank
            # cannot go on alone. The run is interrupted, resumable from its last epoch.
            first = (str(exc).splitlines() or [""])[0][:200]
            try:
                trainer.emit(LogMessage("error", "lost contact with another process of the run "
                                        f"({type(exc).__name__}: {first})"))
            except Exception:  # noqa: BLE001
                pass
            final = _interrupted(trainer, "interrupted")
        elif stop.is_set() and hasattr(trainer, "state"):
            # Asked to stop and something broke on the way out (e.g. a data-loader worker
            # killed by the same Ctrl+C): the stop is what happened.
            final = _interrupted(trainer, getattr(stop, "reason", "stopped"))
        else:
            final = _failed(trainer, f"{type(exc).__name__}: {exc}", details=traceback.format_exc())
    try:
        trainer.emit(final)
    except Exception:  # noqa: BLE001 - a failing listener must not hide the result
        pass
    recorder = getattr(trainer, "recorder", None)
    if recorder is not None:
        recorder.close()
    try:
        if trainer.dist.is_main:  # rank 0 holds the lock and the weights reservation
            _release(trainer)
    except Exception:  # noqa: BLE001 - tidying up must never hide the run's result
        pass
    if agreed and trainer.dist.enabled:
        # No rank leaves before rank 0 has written the run's end: torchrun's agent takes a
        # rank's exit as the end of the group and terminates the others, and a peer's
        # closed connections can abort a process still using gloo.
        distributed.wait_for_peers()
    device = getattr(trainer, "device", None)
    # Drop the model, optimiser and loaders now, so an out-of-memory run gives its memory
    # back to the app before the next one starts.
    for name in ("model", "forward", "optimizer", "train_loader", "val_loader", "scaler"):
        trainer.__dict__.pop(name, None)
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()
    return final


def _release(trainer: _Trainer) -> None:
    """Give back what the run held: its lock, and its reserved weights name when it saved
    nothing and can never be resumed (so the name is free for the next run)."""
    import os

    from dftui.core.checkpoint import read_metadata

    lock = getattr(trainer, "run_lock", None)
    if lock is not None:
        lock.close()
    path = getattr(trainer, "weights_path", None)
    run_dir = getattr(trainer, "run_dir", None)
    if path is not None and run_dir is not None and getattr(trainer, "saved_best", None) is None:
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


def _why_save(exc: BaseException) -> str:
    import errno

    err = exc if isinstance(exc, OSError) else exc.__context__ or exc.__cause__
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _not_started(trainer: _Trainer, reason: str) -> RunFinished:
    """Stopped during setup (the data scan, a download): nothing was trained. A new run has
    no record yet (``run_dir`` is empty: no folder is left with nothing to resume); a
    resumed one keeps its record and checkpoint as they were."""
    run_dir = getattr(trainer, "run_dir", None) or getattr(trainer, "resume_dir", None)
    return RunFinished(
        status=reason, epochs_completed=getattr(getattr(trainer, "state", None), "epoch", 0),
        best_epoch=None, best_val_accuracy=None, weights_path=None, metadata_path=None,
        run_dir=str(run_dir) if run_dir is not None else "", seconds=time.monotonic() - trainer.started,
    )


def _interrupted(trainer: _Trainer, reason: str = "interrupted") -> RunFinished | RunFailed:
    if not hasattr(trainer, "state") or not hasattr(trainer, "run_dir"):
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
    has_best = getattr(trainer, "saved_best", None) is not None
    return RunFailed(
        message=message,
        run_dir=str(trainer.run_dir) if hasattr(trainer, "run_dir") else None,
        epoch=epoch,
        batch=batch,
        weights_path=str(trainer.weights_path) if has_best else None,
        details=details,
        fixes=encode_all(fixes),
    )
