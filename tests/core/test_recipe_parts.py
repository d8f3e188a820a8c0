"""Backbone freezing and weight averaging, on the real backbones' modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dftui.core.backbones import BACKBONES
from dftui.core.ema import WeightAverage
from dftui.core.freeze import backbone_frozen, frozen_to_eval, head_module, set_backbone_trainable


@pytest.mark.parametrize("name, head_params", [("mobilenet_v2", 1280 * 2 + 2), ("xception", 2048 * 2 + 2)])
def test_freezing_leaves_only_the_head_trainable(name, head_params):
    spec = BACKBONES[name]
    model = spec.build()
    assert set_backbone_trainable(model, spec.head, False) == head_params
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith(spec.head.split(".")[0] + ".") for n in trainable)
    assert set_backbone_trainable(model, spec.head, True) == sum(p.numel() for p in model.parameters())


def test_frozen_backbone_runs_in_eval_mode_and_the_head_in_train_mode():
    spec = BACKBONES["mobilenet_v2"]
    model = spec.build()
    model.train()
    frozen_to_eval(model, spec.head)
    assert not model.features.training
    assert all(not m.training for m in model.features.modules())
    assert head_module(model, spec.head).training and model.classifier[0].training  # dropout


def test_backbone_frozen_epochs():
    assert [backbone_frozen(e, 2) for e in (1, 2, 3)] == [True, True, False]
    assert not backbone_frozen(1, 0)


def test_adam_and_adamw_leave_frozen_parameters_and_their_state_alone():
    """Parameters without a gradient are skipped by the optimiser step: no weight change
    (not even weight decay) and no state, so unfreezing later starts their moments fresh."""
    torch.manual_seed(0)
    for opt_cls in (torch.optim.Adam, torch.optim.AdamW):
        model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        opt = opt_cls(model.parameters(), lr=0.1, weight_decay=0.1)
        model[0].requires_grad_(False)
        before = model[0].weight.detach().clone()
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            model(torch.randn(8, 4)).sum().backward()
            opt.step()
        assert torch.equal(model[0].weight, before)
        assert model[0].weight not in opt.state and model[1].weight in opt.state
        model[0].requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
        assert not torch.equal(model[0].weight, before)
        assert opt.state[model[0].weight]["step"] == 1  # its own count, from the unfreeze


def test_ema_follows_the_model_and_resumes_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    avg = WeightAverage(model, decay=0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def step(m: nn.Module, a: WeightAverage) -> None:
        m.train()
        opt.zero_grad()
        m(torch.randn(6, 3)).pow(2).sum().backward()
        opt.step()
        a.update(m)

    step(model, avg)
    # The first update copies the model (warm-up decay 0), later ones average.
    assert torch.equal(avg.module[0].weight, model[0].weight)
    step(model, avg)
    assert not torch.equal(avg.module[0].weight, model[0].weight)
    assert 0 < avg.current_decay() <= 0.9

    saved = avg.state_dict()
    copy = WeightAverage(model, decay=0.9)
    copy.load_state_dict(saved)
    assert copy.steps == avg.steps == 2
    rng = torch.get_rng_state()
    step(model, avg)
    after = {k: v.clone() for k, v in avg.module.state_dict().items()}
    torch.set_rng_state(rng)
    # Same update applied to the restored copy gives the same average.
    copy.update(model)
    for key, value in copy.module.state_dict().items():
        assert torch.equal(value, after[key]), key
    assert not avg.module.training  # the average is only ever evaluated


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_the_run_optimisers_skip_a_frozen_backbone(optimizer):
    """The optimisers as a run builds them (timm's factory, weight decay on, SGD with
    momentum): a frozen backbone moves neither by its gradient nor by weight decay."""
    from dftui.core.config import TrainConfig
    from dftui.core.optim import build_optimizer

    torch.manual_seed(0)
    spec = BACKBONES["mobilenet_v2"]
    model = spec.build()
    config = TrainConfig(optimizer=optimizer, weight_decay=0.1,
                         momentum=0.9 if optimizer == "sgd" else TrainConfig().momentum)
    opt = build_optimizer(model, config)
    set_backbone_trainable(model, spec.head, False)
    before = {k: v.clone() for k, v in model.features.state_dict().items()}
    model.train()
    frozen_to_eval(model, spec.head)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 0, 1])).backward()
        opt.step()
    after = model.features.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics too
    assert not torch.equal(model.classifier[1].weight.grad, torch.zeros_like(model.classifier[1].weight))
