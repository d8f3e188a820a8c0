"""Weight averaging: an exponential moving average of the model's weights (timm's
ModelEmaV3), updated after every optimiser step.

The average keeps every floating-point entry of the state dict (parameters and batch-norm
statistics) in the model's own dtype (float32: autocast only casts activations), so no
stochastic rounding applies and the average is a plain deterministic lerp. timm's decay
warm-up is on: the decay grows from 0 towards the chosen value as steps accumulate
(1 - (1 + step)^-2/3), so a short fine-tuning run's average is not dominated by the
pretrained starting weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The EMA copy of a model and the number of updates it has had (the warm-up's step)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        from timm.utils.model_ema import ModelEmaV3

        # Made after the model is on its device: the copy lives beside it.
        self.ema = ModelEmaV3(model, decay=decay, use_warmup=True)
        self.decay = decay
        self.steps = 0

    @property
    def module(self) -> nn.Module:
        """The averaged model (always in eval mode)."""
        return self.ema.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        self.ema.update(model, step=self.steps)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.ema.module.state_dict(), "steps": self.steps, "decay": self.decay}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """From a resume checkpoint (untrusted): ValueError, KeyError or RuntimeError (a
        state dict that does not fit) for anything unusable."""
        steps = state["steps"]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"its step count is {steps!r}, not a count")
        self.ema.module.load_state_dict(state["module"])
        self.steps = steps

    def current_decay(self) -> float:
        """The decay the next update will use."""
        return float(self.ema.get_decay(self.steps + 1))
