"""Class balancing for imbalanced training folders (OpenForensics' splits are).

Two standard remedies, chosen by the ``balance`` option:
- ``sampler``: torch's WeightedRandomSampler draws each image with probability inversely
  proportional to its class's size (with replacement, as many draws as images), so every
  batch holds both classes about equally. Its generator is the trainer's per-epoch shuffle
  generator, reseeded from (seed, epoch): the draws are the same on resume.
- ``loss``: cross-entropy with class weights ``n / (classes × count)`` (scikit-learn's
  "balanced" weights), so each class contributes equally to the loss.
The validation loss stays the plain (unweighted) cross-entropy in both cases, so it is
comparable between runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch.utils.data import WeightedRandomSampler

BALANCE_CHOICES = ("none", "sampler", "loss")
# Above this ratio (larger class / smaller) a folder is called imbalanced: the data scan
# warns (core/data.py) and a run without class balancing says the setting can even it out.
IMBALANCE_RATIO = 1.5


@dataclass(frozen=True)
class Imbalance:
    """The class counts of a folder and how uneven they are."""

    counts: dict[str, int]  # class name → images, in label order

    @property
    def ratio(self) -> float:
        """Largest class over smallest (inf when a class is empty; 1.0 when balanced)."""
        sizes = list(self.counts.values())
        if not sizes or max(sizes) == 0:
            return 1.0
        return math.inf if min(sizes) == 0 else max(sizes) / min(sizes)

    def describe(self) -> str:
        parts = ", ".join(f"{n} {name}" for name, n in self.counts.items())
        ratio = "one class is empty" if math.isinf(self.ratio) else f"ratio {self.ratio:.2f}:1"
        return f"{parts} ({ratio})"


def report(counts: Mapping[str, int], balance: str) -> str:
    """The run's log line on the training imbalance and the choice made."""
    imb = Imbalance(dict(counts))
    choice = {
        "none": "no class balancing",
        "sampler": "class-balanced sampling (WeightedRandomSampler)",
        "loss": "class-weighted cross-entropy (weights "
        + ", ".join(f"{name} {w:.3f}" for name, w in zip(imb.counts, class_weight_values(imb.counts), strict=True))
        + ")",
    }[balance]
    text = f"training classes: {imb.describe()}; {choice}"
    if balance == "none" and imb.ratio > IMBALANCE_RATIO:
        # A note, not a second warning: the data scan has warned of the imbalance already.
        text += " (the class balancing setting can even it out)"
    return text


def processes_problem(balance: str, world: int) -> str | None:
    """Why ``balance`` cannot work with ``world`` processes (dftui train --nproc-per-node),
    or None: each process draws from its own shard of the data, so one weighted draw over
    the whole folder is not available there. Refused, never ignored."""
    if world > 1 and balance == "sampler":
        return (f"class-balanced sampling is not supported with several processes ({world}); "
                "use class balancing 'loss' (class-weighted cross-entropy) or one process")
    return None


def class_weight_values(counts: Mapping[str, int]) -> list[float]:
    """``n / (classes × count)`` per class in label order; an empty class gets weight 0
    (it has no images to weigh)."""
    total, k = sum(counts.values()), len(counts)
    return [total / (k * n) if n else 0.0 for n in counts.values()]


def class_weights(counts: Mapping[str, int]) -> torch.Tensor:
    import torch

    return torch.tensor(class_weight_values(counts), dtype=torch.float32)


def sample_weights(labels: Sequence[int], classes: int) -> list[float]:
    """Each sample's draw weight: 1 / (its class's size)."""
    sizes = [0] * classes
    for label in labels:
        sizes[label] += 1
    return [1.0 / sizes[label] for label in labels]


def balanced_sampler(labels: Sequence[int], classes: int) -> WeightedRandomSampler:
    """A sampler drawing ``len(labels)`` indices per epoch, classes equally likely. Its
    ``generator`` is set (and reseeded every epoch) by the trainer."""
    import torch
    from torch.utils.data import WeightedRandomSampler

    return WeightedRandomSampler(
        torch.tensor(sample_weights(labels, classes), dtype=torch.double),
        num_samples=len(labels), replacement=True,
    )
