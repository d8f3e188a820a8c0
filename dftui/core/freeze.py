"""Freezing the backbone for the first epochs: a head-only warm-up before full fine-tuning.

The new 2-class head starts random; training it alone first keeps its large early gradients
from disturbing the pretrained features. Frozen parameters get ``requires_grad = False``:
their gradients stay None (zero_grad(set_to_none=True)), and torch's optimisers (Adam, AdamW,
SGD) skip a parameter whose grad is None, so neither its weights nor its optimiser state
move (weight decay included) until it is unfrozen. The frozen backbone also runs in eval
mode, so its batch-norm statistics are the pretrained ones, not drifting with the head's
warm-up batches."""

from __future__ import annotations

from torch import nn


def head_module(model: nn.Module, head: str) -> nn.Module:
    """The model's top-level block holding the backbone's replaced classifier layer (its
    ``head``, a dotted path): MobileNet-v2's ``classifier`` (dropout + linear), Xception's
    ``fc``. Global pooling has no parameters, so the rest is the feature extractor."""
    return model.get_submodule(head.split(".")[0])


def backbone_frozen(epoch: int, freeze_epochs: int) -> bool:
    """Whether epoch ``epoch`` (1-based) trains the head alone."""
    return epoch <= freeze_epochs


def set_backbone_trainable(model: nn.Module, head: str, trainable: bool) -> int:
    """Let every parameter outside the head train (or not); the head always trains.
    Returns the number of parameters that train."""
    head_params = {id(p) for p in head_module(model, head).parameters()}
    count = 0
    for p in model.parameters():
        p.requires_grad_(trainable or id(p) in head_params)
        count += p.numel() if p.requires_grad else 0
    return count


def frozen_to_eval(model: nn.Module, head: str) -> None:
    """After ``model.train()``: every block but the head back in eval mode (batch norm
    keeps its stored statistics); the head (with its dropout) trains in train mode."""
    top = head.split(".")[0]
    for name, child in model.named_children():
        if name != top:
            child.eval()
