"""The recipe options that hook into the training loop: early stopping, a frozen backbone
for the first epochs, class balancing and weight averaging (EMA).

The trainer (core/train.py) calls these hooks at fixed points (setup, epoch start, train
mode, after each optimiser step, validation, epoch end, resume checkpoint); each option's
logic lives in its own module (early_stop, freeze, balance, ema). With every option at its
default (the reference recipe) every hook does nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dftui.core.balance import balanced_sampler, class_weights, processes_problem, report
from dftui.core.config import TrainConfig
from dftui.core.early_stop import EarlyStopping
from dftui.core.ema import WeightAverage
from dftui.core.events import LogMessage
from dftui.core.freeze import backbone_frozen, frozen_to_eval, set_backbone_trainable


class RecipeError(ValueError):
    """A recipe option that cannot work in this run; the message says which and why."""


class Recipe:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.ema: WeightAverage | None = None
        self.frozen: bool | None = None  # the backbone's state this epoch; None: not set yet

    # -- data ----------------------------------------------------------------------------
    def imbalance_note(self, counts: Mapping[str, int]) -> LogMessage:
        """The training folder's imbalance and the balancing chosen, for the run's log."""
        return LogMessage("info", report(counts, self.config.balance))

    def check_processes(self, world: int) -> None:
        """Refuse what several processes (dftui train --nproc-per-node) cannot do, rather
        than ignore it (the launcher refuses it before starting them, too)."""
        problem = processes_problem(self.config.balance, world)
        if problem:
            raise RecipeError(problem)

    def train_sampler(self, labels: Sequence[int], classes: int) -> Any:
        """The training sampler replacing the plain shuffle, or None."""
        if self.config.balance != "sampler":
            return None
        return balanced_sampler(labels, classes)

    def class_weights(self, counts: Mapping[str, int]) -> torch.Tensor | None:
        """The training cross-entropy's class weights (balance "loss"), or None."""
        return class_weights(counts) if self.config.balance == "loss" else None

    # -- model ---------------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        """After the model is on its device (and loaded from resume.pt, if resumed, before
        load_state_dict below): the EMA copy starts from it."""
        if self.config.ema:
            self.ema = WeightAverage(model, self.config.ema_decay)

    def start_epoch(self, model: nn.Module, head: str, epoch: int) -> LogMessage | None:
        """Freeze or unfreeze the backbone for this epoch; a note when that changes.
        ``head``: the backbone's classifier layer (BackboneSpec.head)."""
        last = self.config.freeze_epochs
        frozen = backbone_frozen(epoch, last)
        # A model is built (and resumed) whole: None counts as unfrozen.
        changed = frozen != bool(self.frozen)
        self.frozen = frozen
        if not changed and not (last and epoch == last + 1):
            return None
        trainable = set_backbone_trainable(model, head, not frozen)
        if frozen:
            return LogMessage("info", f"backbone frozen until epoch {last}: training the "
                              f"classifier head only ({trainable:,} parameters)")
        return LogMessage("info", f"epoch {epoch}: backbone unfrozen, fine-tuning the whole "
                          f"network ({trainable:,} parameters)")

    def train_mode(self, model: nn.Module, head: str) -> None:
        """After model.train(): a frozen backbone stays in eval mode."""
        if self.frozen:
            frozen_to_eval(model, head)

    def after_step(self, model: nn.Module) -> None:
        if self.ema is not None:
            self.ema.update(model)

    def saved_model(self, model: nn.Module) -> nn.Module:
        """The model validated for the run's metrics and saved as its weights: the EMA
        when weight averaging is on."""
        return self.ema.module if self.ema is not None else model

    def metadata(self) -> dict[str, Any]:
        """What the weights' metadata says about how they were made."""
        if self.ema is None:
            return {"weights_kind": "model"}
        return {"weights_kind": "ema", "ema": {"decay": self.ema.decay, "steps": self.ema.steps}}

    # -- epochs --------------------------------------------------------------------------
    def early_stop_epoch(self, history: Sequence[Mapping[str, Any]]) -> int | None:
        """The epoch after which early stopping ends the run, replayed from the recorded
        history (resume.pt carries it whole, so a resumed run decides as an uninterrupted
        one), or None."""
        cfg = self.config
        stopper = EarlyStopping(cfg.early_stop_metric, cfg.early_stop_patience, cfg.early_stop_min_delta)
        return stopper.replay(history).stopped_epoch

    # -- resume checkpoint ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_state_dict(self, state: Any, where: str) -> None:
        """Take up the resume checkpoint's entries (``where``: its path, for messages). The
        file is untrusted: anything unusable is a RecipeError saying so."""
        if self.ema is None:
            return
        saved = state.get("ema") if isinstance(state, Mapping) else None
        if not isinstance(saved, Mapping):
            raise RecipeError(
                f"{where} holds no weight average (EMA): the run was started without it; "
                "resume with the run's own settings (its config.json)"
            )
        try:
            self.ema.load_state_dict(saved)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = (str(exc).splitlines() or [""])[0][:160]
            raise RecipeError(
                f"the weight average (EMA) in {where} cannot be used ({type(exc).__name__}: "
                f"{first}); start a new run"
            ) from None
