"""Video-level metrics beside frame-level ones, for crops grouped by the video they came from.

Crops written by ``dftui prepare folder`` are named ``<source>__<frame>-<face>``; crops of one
source (within one class folder) form a group. Each group is scored as ``dftui predict``
scores a video: a frame's score is its most suspicious face, and the frames are aggregated by
the chosen rule (core/video.aggregate). The video AUC/EER are computed over the groups.
Nothing is reported when no group has more than one crop (e.g. OpenForensics crops).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dftui.core.metrics import equal_error_rate, roc_auc
from dftui.core.video import DEFAULT_AGGREGATE, aggregate

_CROP_STEM = re.compile(r"^(?P<source>.+)__(?P<frame>\d{6})-(?P<face>\d+)$")


def crop_source(path: str) -> tuple[str, int] | None:
    """(source, frame) from a crop's file name, or None when it does not follow the rule."""
    m = _CROP_STEM.match(Path(path).stem)
    return (m.group("source"), int(m.group("frame"))) if m else None


@dataclass(frozen=True)
class VideoScore:
    source: str
    label: int  # 0 real, 1 fake
    p_fake: float
    frames: int
    crops: int


@dataclass(frozen=True)
class VideoLevel:
    rule: str
    videos: list[VideoScore]
    ungrouped: int  # crops not named by the rule (left out)
    roc_auc: float | None
    eer: float | None
    accuracy: float | None  # at the evaluation's threshold

    @property
    def n_real(self) -> int:
        return sum(1 for v in self.videos if v.label == 0)

    @property
    def n_fake(self) -> int:
        return sum(1 for v in self.videos if v.label == 1)

    def line(self) -> str:
        auc = "n/a" if self.roc_auc is None else f"{self.roc_auc:.3f}"
        eer = "n/a" if self.eer is None else f"{self.eer:.1%}"
        acc = "n/a" if self.accuracy is None else f"{self.accuracy:.1%}"
        return (f"per video ({len(self.videos)} videos: {self.n_real} real, {self.n_fake} fake; "
                f"rule {self.rule}): ROC AUC {auc}, EER {eer}, accuracy {acc}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "videos": len(self.videos), "real": self.n_real, "fake": self.n_fake,
            "ungrouped_crops": self.ungrouped, "roc_auc": self.roc_auc, "eer": self.eer,
            "accuracy": self.accuracy,
        }


def video_level(images: Iterable[Any], threshold: float = 0.5, rule: str = DEFAULT_AGGREGATE) -> VideoLevel | None:
    """``images``: objects with ``path``, ``label`` (0/1) and ``p_fake`` (evaluate.ScoredImage)."""
    frames: dict[tuple[int, str], dict[int, float]] = defaultdict(dict)
    crops: dict[tuple[int, str], int] = defaultdict(int)
    ungrouped = 0
    for im in images:
        found = crop_source(im.path)
        if found is None or math.isnan(im.p_fake):
            ungrouped += 1
            continue
        source, frame = found
        key = (int(im.label), source)
        frames[key][frame] = max(frames[key].get(frame, 0.0), float(im.p_fake))
        crops[key] += 1
    if not frames or max(crops.values()) < 2:
        return None
    videos = [
        VideoScore(source, label, aggregate(list(per_frame.values()), rule), len(per_frame), crops[(label, source)])
        for (label, source), per_frame in sorted(frames.items())
    ]
    labels = [v.label for v in videos]
    scores = [v.p_fake for v in videos]
    both = 0 in labels and 1 in labels
    auc = roc_auc(labels, scores) if both else None
    eer_pair = equal_error_rate(labels, scores) if both else None
    accuracy = sum((s >= threshold) == bool(lab) for lab, s in zip(labels, scores, strict=True)) / len(videos)
    return VideoLevel(rule, videos, ungrouped, auc, eer_pair[0] if eer_pair else None, accuracy)
