"""The training run's model: built and initialised (pretrained weights, or the resumed
run's), placed on its device in its memory format, wrapped for several processes (DDP) or
compiled, with the batch-norm-folded copy validation runs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dftui.core import distributed
from dftui.core.abort import RunAborted
from dftui.core.backbones import BackboneSpec, WeightsError, load_pretrained
from dftui.core.config import TrainConfig
from dftui.core.devices import Precision, default_channels_last
from dftui.core.events import Emit, LogMessage
from dftui.core.inference import EvalForward


def build_model(spec: BackboneSpec, config: TrainConfig, emit: Emit, fresh: bool) -> nn.Module:
    """The backbone with its starting weights: the pretrained ones for a new run (``fresh``);
    a resumed run takes its weights from resume.pt later (the pretrained file may be gone)."""
    model = spec.build()
    if fresh:
        try:
            used = load_pretrained(model, spec, config.pretrained, emit)
        except WeightsError as exc:
            raise RunAborted(str(exc), fixes=exc.fixes) from None
        if used is None:
            emit(LogMessage("warning", "starting from random weights (pretrained: none)"))
        else:
            emit(LogMessage("info", f"initialised from {used}"))
    return model


@dataclass
class TrainModel:
    """The model as training uses it."""

    # The plain module: every saved state_dict has the plain keys (no "module." prefix)
    # and validation runs it without collectives.
    model: nn.Module
    forward: nn.Module  # what a training step calls: the model, through DDP and/or compiled
    # Validation's batch-norm-folded copy (on the CPU a fused graph, see core/inference.py);
    # None with --compile, where validation runs the compiled model as training does.
    eval_forward: EvalForward | None
    channels_last: bool
    memory_format: torch.memory_format

    def train_mode(self, freeze_bn: bool) -> None:
        self.model.train()
        if freeze_bn:
            # Batch norm normalises with its stored statistics and does not update them;
            # its scale and shift still train.
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()


def wrap_model(
    model: nn.Module, config: TrainConfig, device: torch.device, dist: distributed.DistInfo,
    frozen_ahead: bool = False,
) -> nn.Module:
    """What a training step calls: ``model`` through DDP with several processes, compiled
    with ``compile``. ``frozen_ahead``: epochs with a frozen backbone are still to come
    (freeze_epochs), whose parameters get no gradient: DDP must look for unused parameters
    then (it leaves their grads None). Once unfrozen the model is wrapped again without
    that search (an extra pass over the graph every step, and a warning from torch)."""
    trained: nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # Newer torch names the switch forward_sync_buffers (it still syncs at start,
        # where every rank holds the same statistics anyway).
        params = inspect.signature(DistributedDataParallel.__init__).parameters
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
        trained = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=frozen_ahead,
            **{no_sync: False},
        )
    return torch.compile(trained) if config.compile else trained


def place_model(
    model: nn.Module, config: TrainConfig, device: torch.device, precision: Precision,
    dist: distributed.DistInfo, resumed_state: dict[str, Any] | None, emit: Emit,
    frozen_ahead: bool = False,
) -> TrainModel:
    """``model`` on ``device``, with the resumed run's weights when given, ready to train
    (``frozen_ahead``: see :func:`wrap_model`)."""
    cfg = config
    channels_last = default_channels_last(device) if cfg.channels_last is None else cfg.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if dist.enabled and cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device, memory_format=memory_format)
    if resumed_state is not None:
        # Before DDP wraps the model: DDP starts every rank from rank 0's parameters.
        model.load_state_dict(resumed_state)
    # The model trains through DDP. Running statistics are not broadcast at each step
    # (broadcast_buffers=False): each rank keeps its own and they are averaged at the end
    # of every epoch (distributed.average_bn_stats).
    trained = wrap_model(model, cfg, device, dist, frozen_ahead)
    if cfg.compile:
        return TrainModel(model, trained, None, channels_last, memory_format)
    eval_forward = EvalForward(
        model, device, precision, memory_format,
        note=lambda message: emit(LogMessage("info", message)),
        fold_small_workloads=False,
    )
    return TrainModel(model, trained, eval_forward, channels_last, memory_format)
