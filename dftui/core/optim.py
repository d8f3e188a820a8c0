"""The optimiser side of a training run: the loss, the optimiser and the gradient scaler,
and the steps they take together; their state goes into resume.pt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dftui.core.config import TrainConfig
from dftui.core.devices import Precision


@dataclass
class Optimisation:
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    uses_scaler: bool  # fp16: the loss is scaled (the scaler's state is saved)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward_and_step(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The entries of resume.pt this part owns."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.uses_scaler else None,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])


def build_optimisation(
    model: nn.Module, config: TrainConfig, device: torch.device, precision: Precision,
    class_weights: torch.Tensor | None = None,
) -> Optimisation:
    # Made with every parameter trainable (a frozen backbone is frozen per epoch, see
    # Recipe.start_epoch), so the optimiser holds them all from the start.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaler)
    # Class weights: balance "loss" (core/balance.py).
    weight = class_weights.to(device) if class_weights is not None else None
    return Optimisation(nn.CrossEntropyLoss(weight=weight), optimizer, scaler, precision.scaler)
