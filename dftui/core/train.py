"""The fine-tuning loop: ``fit(config, emit, stop)``.

It knows nothing of Textual or Rich: it takes a config, a callable that receives events and
a ``threading.Event`` that asks it to stop, and checks that flag every batch. Cancelling is an
ordinary outcome: the best weights so far are kept and the run ends as "stopped"."""

from __future__ import annotations

import math
import random
import threading
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dftui.core.backbones import CLASS_NAMES, WeightsError, count_parameters, get_backbone, load_pretrained
from dftui.core.checkpoint import (
    build_metadata,
    free_weights_path,
    save_torch,
    save_weights,
)
from dftui.core.config import ConfigError, TrainConfig
from dftui.core.data import (
    DataError,
    DatasetScan,
    FaceDataset,
    Preprocessing,
    build_transform,
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
)
from dftui.core.metrics import Confusion
from dftui.core.runs import RunRecorder, new_run_dir, runs_root

BATCH_EVENT_INTERVAL_S = 0.1  # at most ~10 batch events a second reach the listeners
RESUME_FILE = "resume.pt"
MAX_LOGGED_SKIPS = 20  # skipped images named one by one in the log; the rest are counted


class StopFlag(threading.Event):
    """A stop request with the reason the run record should show ("stopped" by the user,
    "interrupted" by a signal or a dropped connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = "stopped"

    def request(self, reason: str = "stopped") -> None:
        self.reason = reason
        self.set()


class RunAborted(Exception):
    """A failure with a message meant for the user."""

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None):
        super().__init__(message)
        self.epoch, self.batch = epoch, batch


@dataclass
class _State:
    """What changes as the run goes; saved in the resume checkpoint."""

    epoch: int = 0  # epochs completed
    best_epoch: int | None = None
    best_acc: float = -1.0
    best_loss: float = math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


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


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".dftui-write-test-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunAborted(
            f"output folder {folder} is not writable ({exc.strerror or exc}); choose another "
            "folder with --out"
        ) from None


def _scan(path: Path, role: str, emit: Emit) -> DatasetScan:
    try:
        scan = scan_folder(path)
    except DataError as exc:
        raise RunAborted(f"{role} data: {exc}") from None
    for warning in scan.warnings:
        emit(LogMessage("warning", f"{role} data: {warning}"))
    for path_, reason in scan.unreadable[:MAX_LOGGED_SKIPS]:
        emit(LogMessage("warning", f"skipping unreadable image {path_}: {reason}"))
    if len(scan.unreadable) > MAX_LOGGED_SKIPS:
        emit(LogMessage("warning", f"... and {len(scan.unreadable) - MAX_LOGGED_SKIPS} more"))
    return scan


class _Trainer:
    def __init__(self, config: TrainConfig, emit: Emit, stop: threading.Event) -> None:
        self.config = config
        self.emit = emit
        self.stop = stop
        self.started = time.monotonic()

    # -- setup -------------------------------------------------------------------------
    def setup(self, resume_dir: Path | None) -> None:
        cfg = self.config
        try:
            cfg.validate()
            self.device = resolve_device(cfg.device)
            self.precision = resolve_precision(cfg.precision, self.device)
        except (ConfigError, DeviceError) as exc:
            raise RunAborted(str(exc)) from None
        self.spec = get_backbone(cfg.backbone)
        self.pre = Preprocessing(
            cfg.img_size or self.spec.input_size, self.spec.mean, self.spec.std, self.spec.interpolation
        )
        self.train_scan = _scan(Path(cfg.train_dir), "training", self.emit)
        self.val_scan = _scan(Path(cfg.val_dir), "validation", self.emit)

        _check_writable(Path(cfg.out_dir))
        self.state = _State()
        resume: dict[str, Any] | None = None
        if resume_dir is not None:
            resume = self._load_resume(resume_dir)
            self.run_dir = resume_dir
            self.weights_path = Path(resume["weights_path"])
        else:
            target = cfg.weights_path
            if target.exists() and not cfg.overwrite:
                target = free_weights_path(target)
                self.emit(
                    LogMessage(
                        "warning",
                        f"{cfg.weights_path} exists and is kept; this run saves to {target} "
                        "(use --overwrite to replace it)",
                    )
                )
            self.weights_path = target
            self.run_dir = new_run_dir(runs_root(cfg.runs_dir), cfg.backbone)
        recorder = RunRecorder(self.run_dir, resumed=resume is not None)
        self.recorder = recorder
        user_emit = self.emit

        def tee(event: Event) -> None:
            recorder(event)
            user_emit(event)

        self.emit = tee
        if resume is not None:
            recorder.trim_after(self.state.epoch)

        _seed_everything(cfg.seed)
        self.model = self.spec.build()
        try:
            used = load_pretrained(self.model, self.spec, cfg.pretrained, self.emit)
        except WeightsError as exc:
            raise RunAborted(str(exc)) from None
        if used is None and resume is None:
            self.emit(LogMessage("warning", "starting from random weights (--pretrained none)"))
        elif used is not None:
            self.emit(LogMessage("info", f"initialised from {used}"))
        self.channels_last = (
            default_channels_last(self.device) if cfg.channels_last is None else cfg.channels_last
        )
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=memory_format)
        self.memory_format = memory_format
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.criterion = nn.CrossEntropyLoss()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.scaler)
        self.forward = self.model
        if cfg.compile:
            self.forward = torch.compile(self.model)

        self.workers = default_workers() if cfg.workers is None else cfg.workers
        draft = self.pre.input_size
        self.train_loader = make_loader(
            FaceDataset(self.train_scan.samples, build_transform(self.pre, cfg.augment), draft),
            cfg.batch_size, True, self.workers, cfg.seed, self.device, cfg.mp_context,
        )
        self.val_loader = make_loader(
            FaceDataset(self.val_scan.samples, build_transform(self.pre), draft),
            cfg.batch_size, False, self.workers, cfg.seed, self.device, cfg.mp_context,
        )
        if resume is not None:
            self.model.load_state_dict(resume["model"])
            self.optimizer.load_state_dict(resume["optimizer"])
            if resume.get("scaler"):
                self.scaler.load_state_dict(resume["scaler"])
            _set_rng_state(resume["rng"])
            self.emit(LogMessage("info", f"resuming after epoch {self.state.epoch} from {resume_dir}"))

        self.emit(
            RunStarted(
                run_id=self.run_dir.name,
                run_dir=str(self.run_dir),
                config={**cfg.to_dict(), "weights_path": str(self.weights_path)},
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

    def _load_resume(self, run_dir: Path) -> dict[str, Any]:
        path = run_dir / RESUME_FILE
        if not path.is_file():
            raise RunAborted(f"{run_dir} has no resume checkpoint ({RESUME_FILE}); nothing to resume")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets one message
            raise RunAborted(f"resume checkpoint {path} cannot be read: {str(exc)[:200]}") from None
        st = ckpt["state"]
        self.state = _State(
            epoch=int(st["epoch"]),
            best_epoch=st["best_epoch"],
            best_acc=float(st["best_acc"]),
            best_loss=float(st["best_loss"]),
            history=list(st["history"]),
        )
        return ckpt

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> Event:
        cfg = self.config
        spe = len(self.train_loader)
        val_batches = len(self.val_loader)
        # Seconds per training step and per validation step, for the ETA.
        self.step_time: float | None = None
        self.val_step_time: float | None = None
        for epoch in range(self.state.epoch + 1, cfg.epochs + 1):
            # Reseeding per epoch keeps the shuffle order independent of where a run resumed.
            self.train_loader.generator.manual_seed(cfg.seed * 1000 + epoch)  # type: ignore[union-attr]
            t_epoch = time.monotonic()
            train = self._train_epoch(epoch, spe)
            if train is None:
                return self._finish(self._stop_reason())
            val = self._validate(epoch, val_batches)
            if val is None:
                return self._finish(self._stop_reason())
            seconds = time.monotonic() - t_epoch
            self._end_epoch(epoch, train, val, seconds)
            if self.stop.is_set():
                return self._finish(self._stop_reason())
        return self._finish("finished")

    def _stop_reason(self) -> str:
        return getattr(self.stop, "reason", "stopped")

    def _eta(self, epoch: int, batch: int, spe: int, val_batches: int) -> float | None:
        if self.step_time is None:
            return None
        epochs_left = self.config.epochs - epoch
        train_left = (spe - batch) + epochs_left * spe
        val_step = self.val_step_time if self.val_step_time is not None else self.step_time / 3
        val_left = (epochs_left + 1) * val_batches
        return train_left * self.step_time + val_left * val_step

    def _train_epoch(self, epoch: int, spe: int) -> dict[str, float] | None:
        cfg = self.config
        self.model.train()
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
            if self.stop.is_set():
                return None
            self._note_skipped(skipped)
            if y.numel() == 0:
                t_fetch = time.monotonic()
                continue
            x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
            y = y.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with _autocast(self.device, self.precision):
                out = self.forward(x)
                loss = self.criterion(out.float(), y)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            # One host sync per batch (the loss value), as a plain loop's loss.item() does.
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise RunAborted(
                    f"the training loss became {loss_value} at epoch {epoch}, batch {i}; the run "
                    "was stopped and the best weights so far are kept. Try a lower learning "
                    "rate, or --precision fp32",
                    epoch,
                    i,
                )
            loss_sum += loss.detach().float() * y.numel()
            batches += 1
            images += y.numel()
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
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        labels: list[torch.Tensor] = []
        preds: list[torch.Tensor] = []
        t0 = time.monotonic()
        last_emit = 0.0
        for i, (x, y, skipped) in enumerate(self.val_loader, start=1):
            if self.stop.is_set():
                return None
            self._note_skipped(skipped)
            if y.numel() == 0:
                continue
            x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
            y = y.to(self.device, non_blocking=True)
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
                        data_wait=0.0,
                        elapsed_s=now - self.started,
                        eta_s=(val_batches - i) * self.val_step_time
                        + (self._eta(epoch, len(self.train_loader), len(self.train_loader), 0) or 0.0),
                        rss_mb=rss,
                        gpu_mb=gpu,
                    )
                )
        if not labels:
            raise RunAborted(f"epoch {epoch}: no validation image could be read", epoch)
        y_all = torch.cat(labels).cpu().numpy()
        p_all = torch.cat(preds).cpu().numpy()
        conf = Confusion.from_labels(y_all, p_all)
        return {"loss": float(loss_sum.item()) / len(y_all), "confusion": conf}

    def _note_skipped(self, skipped: list[str]) -> None:
        for item in skipped:
            if item in self.state.skipped:
                continue
            self.state.skipped.append(item)
            if len(self.state.skipped) <= MAX_LOGGED_SKIPS:
                self.emit(LogMessage("warning", f"skipped unreadable image {item}"))

    def _end_epoch(
        self, epoch: int, train: dict[str, float], val: dict[str, Any], seconds: float
    ) -> None:
        conf: Confusion = val["confusion"]
        acc, vloss = conf.accuracy, val["loss"]
        st = self.state
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
        if is_best:
            self._save_best(epoch)
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
            device=str(self.device),
            run_id=self.run_dir.name,
            run_dir=str(self.run_dir),
            class_names=list(CLASS_NAMES),
        )

    def _save_best(self, epoch: int) -> None:
        try:
            save_weights(self.model.state_dict(), self.weights_path, self._metadata())
        except OSError as exc:
            raise RunAborted(
                f"could not save weights to {self.weights_path}: {exc.strerror or exc}; the "
                "previous file (if any) is intact. Free some space or choose another --out",
                epoch,
            ) from None
        self.emit(CheckpointSaved("best", str(self.weights_path), epoch))

    def _save_resume(self) -> None:
        st = self.state
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
            },
            "config": self.config.to_dict(),
            "weights_path": str(self.weights_path),
        }
        path = self.run_dir / RESUME_FILE
        try:
            save_torch(ckpt, path)
        except OSError as exc:
            self.emit(LogMessage("warning", f"could not write resume checkpoint {path}: {exc}"))
            return
        self.emit(CheckpointSaved("resume", str(path), st.epoch))

    def _finish(self, status: str) -> RunFinished:
        st = self.state
        has_best = st.best_epoch is not None
        return RunFinished(
            status=status,
            epochs_completed=st.epoch,
            best_epoch=st.best_epoch,
            best_val_accuracy=st.best_acc if has_best else None,
            weights_path=str(self.weights_path) if has_best else None,
            metadata_path=str(self.weights_path.with_suffix(".json")) if has_best else None,
            run_dir=str(self.run_dir),
            seconds=time.monotonic() - self.started,
        )


def fit(
    config: TrainConfig,
    emit: Emit = lambda event: None,
    stop: threading.Event | None = None,
    resume: str | Path | None = None,
) -> RunFinished | RunFailed:
    """Run a fine-tuning job and return its final event (also emitted).

    Never raises for an expected failure (bad data, weights, settings, NaN loss, out of
    memory): those become a RunFailed event with a message meant for the user."""
    stop = stop if stop is not None else threading.Event()
    trainer = _Trainer(config, emit, stop)
    final: RunFinished | RunFailed
    try:
        trainer.setup(Path(resume) if resume is not None else None)
        final = trainer.run()
    except RunAborted as exc:
        final = _failed(trainer, str(exc), exc.epoch, exc.batch)
    except torch.OutOfMemoryError:
        final = _failed(
            trainer,
            f"out of memory on {getattr(trainer, 'device', 'the device')} at batch size "
            f"{config.batch_size}; try --batch-size {max(1, config.batch_size // 2)}. The best "
            "weights so far are kept",
        )
    except Exception as exc:  # noqa: BLE001 - the UI must survive any engine failure
        final = _failed(trainer, f"{type(exc).__name__}: {exc}", details=traceback.format_exc())
    trainer.emit(final)
    recorder = getattr(trainer, "recorder", None)
    if recorder is not None:
        recorder.close()
    if getattr(trainer, "device", None) is not None and trainer.device.type == "cuda":
        torch.cuda.empty_cache()
    return final


def _failed(
    trainer: _Trainer, message: str, epoch: int | None = None, batch: int | None = None,
    details: str = "",
) -> RunFailed:
    state = getattr(trainer, "state", None)
    has_best = state is not None and state.best_epoch is not None
    return RunFailed(
        message=message,
        run_dir=str(trainer.run_dir) if hasattr(trainer, "run_dir") else None,
        epoch=epoch,
        batch=batch,
        weights_path=str(trainer.weights_path) if has_best else None,
        details=details,
    )
