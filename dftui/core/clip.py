"""Judge a video: sample frames, find and classify the faces of each, aggregate to one score."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from dftui.core.photo import NO_FACE, PhotoJudge, face_verdicts, find_faces
from dftui.core.video import (
    DEFAULT_AGGREGATE,
    FrameVerdict,
    Sampling,
    VideoError,
    VideoInfo,
    aggregate,
    sample_frames,
    sparkline,
)

# Sampled frames are kept, shrunk to this, for the Classify screen's frame view.
KEEP_SIDE = 640


@dataclass
class VideoResult:
    path: str
    info: VideoInfo | None = None
    rule: str = DEFAULT_AGGREGATE
    frames: list[FrameVerdict] = field(default_factory=list)
    error: str = ""
    stopped: bool = False
    seconds: float = 0.0
    threshold: float = 0.5
    pictures: dict[int, Image.Image] = field(default_factory=dict)  # frame index -> picture

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def scores(self) -> list[float]:
        return [f.p_fake for f in self.frames]

    @property
    def p_fake(self) -> float:
        return aggregate(self.scores, self.rule)

    @property
    def label(self) -> str | None:
        p = self.p_fake
        if math.isnan(p):
            return None
        return "fake" if p >= self.threshold else "real"

    @property
    def frames_with_face(self) -> int:
        return sum(1 for f in self.frames if f.faces)

    def suspicious(self, n: int = 3) -> list[FrameVerdict]:
        """The ``n`` frames with the highest p_fake, most suspicious first."""
        scored = [f for f in self.frames if f.faces]
        return sorted(scored, key=lambda f: f.p_fake, reverse=True)[:n]

    def timeline(self, width: int | None = 48) -> str:
        return sparkline(self.scores, width)

    def note(self) -> str:
        if self.error:
            return self.error
        if self.frames and not self.frames_with_face:
            return f"{NO_FACE} in any of the {len(self.frames)} sampled frames"
        if self.stopped:
            return f"stopped after {len(self.frames)} sampled frames"
        return ""

    def to_dict(self) -> dict[str, Any]:
        p = self.p_fake
        out: dict[str, Any] = {
            "path": self.path,
            "kind": "video",
            "label": self.label,
            "p_fake": None if math.isnan(p) else round(p, 6),
            "aggregate": self.rule,
            "frames_sampled": len(self.frames),
            "frames_with_face": self.frames_with_face,
            "timeline": self.timeline(None),
            "suspicious_frames": [{"frame": f.index, "time_s": round(f.time_s, 3), "p_fake": round(f.p_fake, 6)}
                                  for f in self.suspicious()],
            "frames": [f.to_dict() for f in self.frames],
            "seconds": round(self.seconds, 3),
        }
        if self.info is not None:
            out["video"] = self.info.to_dict()
        if self.note():
            out["note" if not self.error else "error"] = self.note()
        if self.stopped:
            out["stopped"] = True
        return out


Progress = Callable[[int, int, VideoInfo], None]  # (frames judged, frames planned or 0, info)


def judge_video(
    judge: PhotoJudge,
    path: str | Path,
    sampling: Sampling,
    rule: str = DEFAULT_AGGREGATE,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    keep_pictures: bool = False,
) -> VideoResult:
    """Faces are always searched in video frames (a frame is a scene, not a crop)."""
    t0 = time.perf_counter()
    result = VideoResult(str(path), rule=rule, threshold=judge.predictor.threshold)
    aggregate([], rule)  # an unknown rule fails here, before any decoding
    planned = 0

    def on_info(info: VideoInfo, n: int) -> None:
        nonlocal planned
        result.info, planned = info, n
        if progress is not None:
            progress(0, n, info)

    label = judge.predictor._label  # noqa: SLF001 - one threshold rule everywhere
    try:
        for frame in sample_frames(path, sampling, stop, on_info, keep_side=None):
            found = find_faces(frame.image, judge.detector, judge.margin)
            probs = judge.classify(found.crops)
            faces, _unscored = face_verdicts(found.faces, probs, label)
            verdict = FrameVerdict(frame.index, frame.time_s, faces, found.detection.note())
            result.frames.append(verdict)
            if keep_pictures:
                small = frame.image.copy()
                small.thumbnail((KEEP_SIDE, KEEP_SIDE))
                result.pictures[frame.index] = small
            if progress is not None and result.info is not None:
                progress(len(result.frames), planned, result.info)
    except VideoError as exc:
        result.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - Stopped, without importing it twice
        from dftui.core.video import Stopped

        if not isinstance(exc, Stopped):
            raise
        result.stopped = True
    result.seconds = time.perf_counter() - t0
    return result
