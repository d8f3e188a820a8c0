"""Class balancing: the imbalance report, loss weights and the balanced sampler."""

from __future__ import annotations

import math
from collections import Counter

import torch

from dftui.core.balance import (
    Imbalance,
    balanced_sampler,
    class_weight_values,
    report,
    sample_weights,
)


def test_imbalance_ratio_and_text():
    imb = Imbalance({"real": 10, "fake": 40})
    assert imb.ratio == 4.0
    assert imb.describe() == "10 real, 40 fake (ratio 4.00:1)"
    assert math.isinf(Imbalance({"real": 0, "fake": 3}).ratio)
    assert Imbalance({"real": 5, "fake": 5}).ratio == 1.0


def test_report_names_the_imbalance_and_the_choice():
    text = report({"real": 10, "fake": 40}, "none")
    assert text == ("training classes: 10 real, 40 fake (ratio 4.00:1); no class balancing "
                    "(the class balancing setting can even it out)")
    assert report({"real": 10, "fake": 40}, "sampler").endswith(
        "; class-balanced sampling (WeightedRandomSampler)")
    assert "class-weighted cross-entropy (weights real 2.500, fake 0.625)" in report(
        {"real": 10, "fake": 40}, "loss")
    assert report({"real": 20, "fake": 20}, "none").endswith("; no class balancing")


def test_balanced_loss_weights_equalise_class_totals():
    counts = {"real": 10, "fake": 40}
    w = class_weight_values(counts)
    assert w == [2.5, 0.625]
    assert w[0] * 10 == w[1] * 40  # each class weighs the same in total
    assert class_weight_values({"real": 0, "fake": 4}) == [0.0, 0.5]


def test_sampler_draws_classes_equally_and_repeats_with_a_seed():
    labels = [0] * 20 + [1] * 180
    assert sample_weights(labels, 2)[0] == 1 / 20
    sampler = balanced_sampler(labels, 2)
    sampler.generator = torch.Generator().manual_seed(7)
    first = list(sampler)
    assert len(first) == len(labels)
    drawn = Counter(labels[i] for i in first)
    assert 0.4 < drawn[0] / len(first) < 0.6  # 10 % of the images, about half the draws
    sampler.generator.manual_seed(7)
    assert list(sampler) == first  # the trainer reseeds it per epoch: same draws on resume
