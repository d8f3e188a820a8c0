"""Binary classification metrics with fake (label 1) as the positive class."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Confusion:
    tn: int  # real called real
    fp: int  # real called fake
    fn: int  # fake called real
    tp: int  # fake called fake

    @classmethod
    def from_labels(cls, labels: Any, preds: Any) -> Confusion:
        y = np.asarray(labels, dtype=np.int64)
        p = np.asarray(preds, dtype=np.int64)
        return cls(
            tn=int(np.sum((y == 0) & (p == 0))),
            fp=int(np.sum((y == 0) & (p == 1))),
            fn=int(np.sum((y == 1) & (p == 0))),
            tp=int(np.sum((y == 1) & (p == 1))),
        )

    @property
    def total(self) -> int:
        return self.tn + self.fp + self.fn + self.tp

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.total if self.total else 0.0

    @property
    def precision(self) -> float:
        # Zero when nothing was called fake, as scikit-learn's zero_division=0.
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0

    @property
    def real_accuracy(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else 0.0

    @property
    def fake_accuracy(self) -> float:
        return self.recall

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
