"""The optimiser side of a training run: the loss, the optimiser, the learning-rate schedule
and the gradient scaler, and the steps they take together (with gradient accumulation);
their state goes into resume.pt.

Optimisers and schedules are made by name through timm's factories
(``create_optimizer_v2``, ``create_scheduler_v2``), as timm's own train.py does."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dftui.core.config import TrainConfig
from dftui.core.devices import Precision

# The option's names → timm's: "sgd" is SGD with (plain, not Nesterov) momentum.
OPTIMIZERS = {"adam": "adam", "adamw": "adamw", "sgd": "momentum"}
# The schedules' fixed shapes (their option's help says so):
STEP_DECAY = 0.1
PLATEAU_PATIENCE = 2  # plateau: ×STEP_DECAY after 2 epochs without a lower validation loss
WARMUP_START = 0.1  # warm-up: from a tenth of the learning rate, linearly, to all of it


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer``. With weight decay, biases and
    batch-norm parameters are left undecayed (timm's filter_bias_and_bn); without, every
    parameter is in one group, as ``torch.optim.Adam(model.parameters())`` (the reference)."""
    from timm.optim import create_optimizer_v2

    kwargs: dict[str, Any] = {}
    if config.optimizer == "sgd":
        kwargs["momentum"] = config.momentum
    return create_optimizer_v2(
        model, opt=OPTIMIZERS[config.optimizer], lr=config.lr,
        weight_decay=config.weight_decay, **kwargs,
    )


def build_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Any:
    """timm's scheduler named by ``config.lr_schedule``, stepped once per epoch; None for
    "none" (the rate stays as given, the reference)."""
    if config.lr_schedule == "none":
        return None
    from timm.scheduler import create_scheduler_v2

    with warnings.catch_warnings():
        # timm deprecates its plateau scheduler because it does not save the plateau
        # state; Optimisation.state_dict saves the torch scheduler inside it, whole.
        warnings.simplefilter("ignore", FutureWarning)
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=config.lr_schedule,
            # The warm-up comes first and the schedule fills the epochs after it: a cosine
            # starts from the full rate once the warm-up ends.
            num_epochs=config.epochs - config.warmup_epochs,
            warmup_prefix=True,
            decay_epochs=config.lr_step_epochs,  # the step schedule's interval
            decay_rate=STEP_DECAY,
            patience_epochs=PLATEAU_PATIENCE,
            plateau_mode="min",  # stepped with the validation loss
            min_lr=0.0,
            warmup_lr=config.lr * WARMUP_START,
            warmup_epochs=config.warmup_epochs,
        )
    return scheduler


@dataclass
class Optimisation:
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    uses_scaler: bool  # fp16: the loss is scaled (the scaler's state is saved)
    scheduler: Any = None  # a timm Scheduler, stepped at each epoch end; None: constant rate
    accum_steps: int = 1  # batches whose gradients add up to one optimiser step

    @property
    def lr(self) -> float:
        """The learning rate the next step uses."""
        return float(self.optimizer.param_groups[0]["lr"])

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor, share: int) -> None:
        """Add ``loss``'s gradients; ``share``: how many batches the coming step averages
        over (the last group of an epoch may be shorter than accum_steps)."""
        self.scaler.scale(loss / share if share > 1 else loss).backward()

    def step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.zero_grad()

    def group_size(self, batch: int, batches: int) -> int:
        """Batches in the accumulation group of ``batch`` (1-based) in an epoch of ``batches``."""
        start = (batch - 1) // self.accum_steps * self.accum_steps
        return min(self.accum_steps, batches - start)

    def ends_group(self, batch: int, batches: int) -> bool:
        """Whether the optimiser steps after ``batch``: each group of accum_steps batches
        ends with one, and so does the epoch (no gradient is carried into the next epoch,
        so resume.pt, written between epochs, never holds half a group)."""
        return batch % self.accum_steps == 0 or batch == batches

    def end_epoch(self, epoch: int, val_loss: float) -> None:
        """Set the rate for the epoch after ``epoch`` (1-based; timm counts from 0, so
        this is timm's step(epoch) at the end of its epoch - 1)."""
        if self.scheduler is not None:
            self.scheduler.step(epoch, val_loss)

    def state_dict(self) -> dict[str, Any]:
        """The entries of resume.pt this part owns."""
        out: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.uses_scaler else None,
        }
        if self.scheduler is not None:
            out["scheduler"] = _schedule_state(self.scheduler)
        return out

    def load_state_dict(self, ckpt: dict[str, Any], epoch: int) -> None:
        """Continue after ``epoch`` from resume.pt's entries (the optimiser's state holds
        the learning rate of the next epoch, as the schedule had set it)."""
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.scheduler is None:
            return
        saved = ckpt.get("scheduler")
        plateau = getattr(self.scheduler, "lr_scheduler", None)
        if plateau is not None:
            # Driven by the validation losses seen so far: their record is the state.
            if isinstance(saved, dict) and isinstance(saved.get("plateau"), dict):
                plateau.load_state_dict(_checked_plateau(saved["plateau"], plateau.state_dict()))
        else:
            # A function of the epoch: recomputed from the settings, so a run resumed with
            # more epochs follows the longer schedule from here.
            self.scheduler.step(epoch)


def _checked_plateau(saved: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """The plateau state from resume.pt (untrusted), kept to the keys and value types of a
    fresh one: torch's load_state_dict copies whatever keys it is given into the scheduler
    (an "optimizer" entry would replace its optimiser)."""
    for key, value in saved.items():
        if key not in fresh:
            raise ValueError(f"the plateau schedule's state has an unknown entry {key!r}")
        want = fresh[key]
        numeric = (int, float)
        same = (isinstance(value, numeric) and not isinstance(value, bool)
                if isinstance(want, numeric) and not isinstance(want, bool)
                else type(value) is type(want))
        if not same:
            raise ValueError(f"the plateau schedule's {key!r} is {type(value).__name__}, "
                             f"not {type(want).__name__}")
    return saved


def _schedule_state(scheduler: Any) -> dict[str, Any]:
    plateau = getattr(scheduler, "lr_scheduler", None)
    if plateau is not None:
        return {"plateau": plateau.state_dict()}
    return {"timm": scheduler.state_dict()}


def build_optimisation(
    model: nn.Module, config: TrainConfig, device: torch.device, precision: Precision,
    class_weights: torch.Tensor | None = None,
) -> Optimisation:
    # Made with every parameter trainable (a frozen backbone is frozen per epoch, see
    # Recipe.start_epoch), so the optimiser holds them all from the start.
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaler)
    # Class weights: balance "loss" (core/balance.py).
    weight = class_weights.to(device) if class_weights is not None else None
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    return Optimisation(
        criterion, optimizer, scaler, precision.scaler,
        build_schedule(optimizer, config), config.accum_steps,
    )
