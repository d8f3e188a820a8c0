"""Judge a whole photo: find its faces, cut each with the training crop rule, classify each.

``faces`` modes (``dftui predict --faces``, the Classify screen):
- ``on``: always search for faces;
- ``off``: score the whole picture as one face crop (what predict did before);
- ``auto``: a picture that already looks like a face crop (near-square, at most 512 px a
  side: faces.looks_like_crop) is scored whole; any other picture is searched.
A searched picture with no face gets "no face found" and no score, unless ``whole_if_none``
asks to score the whole picture, which is then labelled as such (``kind == "whole"``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from dftui.core.faces import Detection, Face, FaceDetector, crop_face, looks_like_crop

if TYPE_CHECKING:
    from dftui.core.predict import Predictor

FACE_MODES = ("auto", "on", "off")
NO_FACE = "no face found"


@dataclass(frozen=True)
class FaceVerdict:
    index: int  # 1-based, as drawn on the picture
    box: tuple[int, int, int, int] | None  # None: the whole picture was scored
    label: str
    p_fake: float
    kind: str = "face"  # "face" | "whole" (no face found; whole picture scored) | "crop" (auto/off)

    def to_dict(self) -> dict[str, Any]:
        return {
            "face": self.index,
            "box": list(self.box) if self.box is not None else None,
            "kind": self.kind,
            "label": self.label,
            "p_real": round(1.0 - self.p_fake, 6),
            "p_fake": round(self.p_fake, 6),
        }


@dataclass
class PhotoResult:
    path: str
    size: tuple[int, int] = (0, 0)
    searched: bool = False  # faces were searched for (mode on, or auto on a scene)
    faces: list[FaceVerdict] = field(default_factory=list)
    note: str = ""  # "no face found", faces left out, ...
    error: str = ""  # the picture could not be read
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def p_fake(self) -> float:
        """The picture's score: its most suspicious face (NaN with none)."""
        return max((f.p_fake for f in self.faces), default=math.nan)

    @property
    def label(self) -> str | None:
        if not self.faces:
            return None
        return max(self.faces, key=lambda f: f.p_fake).label

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            "p_fake": None if math.isnan(self.p_fake) else round(self.p_fake, 6),
            "faces_searched": self.searched,
            "faces": [f.to_dict() for f in self.faces],
            "latency_ms": round(self.latency_ms, 2),
        }
        if self.size != (0, 0):
            out["size"] = list(self.size)
        if self.note:
            out["note"] = self.note
        if self.error:
            out["error"] = self.error
        return out


def should_search(image: Image.Image, mode: str) -> bool:
    if mode not in FACE_MODES:
        raise ValueError(f"faces mode {mode!r} is not one of {', '.join(FACE_MODES)}")
    return mode == "on" or (mode == "auto" and not looks_like_crop(image))


def judged_whole(path: Path, mode: str) -> bool:
    """Is the picture at ``path`` judged whole (no face search) under faces ``mode``? Decided
    from the header's size alone, without reading the pixels, so folders of crops keep the
    batched path. An unreadable file counts as whole: the batched path reports it."""
    if mode == "off":
        return True
    if mode == "on":
        return False
    from dftui.core.data import open_regular

    try:
        # open_regular: a FIFO named here must not hang the run (the batched path reports it).
        with open_regular(path) as fh, Image.open(fh) as img:
            return looks_like_crop(img)
    except Exception:  # noqa: BLE001 - unreadable: the batched path reports it
        return True


@dataclass
class FaceCrops:
    """A picture's faces cut for the model, before classification (reused by video)."""

    faces: list[Face]
    crops: list[Image.Image]
    detection: Detection


def find_faces(image: Image.Image, detector: FaceDetector, margin: float) -> FaceCrops:
    detection = detector.detect(image)
    crops = [crop_face(image, f, margin) for f in detection.faces]
    return FaceCrops(detection.faces, crops, detection)


def face_verdicts(faces: list[Face], probs: list[float], label: Any) -> tuple[list[FaceVerdict], int]:
    """Numbered verdicts for the faces with a finite score (NaN would silently read as
    "real": it compares false with every threshold), and how many had none."""
    out = []
    bad = 0
    for f, p in zip(faces, probs, strict=True):
        if math.isfinite(p):
            out.append(FaceVerdict(len(out) + 1, f.box, label(p), p))
        else:
            bad += 1
    return out, bad


class PhotoJudge:
    """Predictor + detector: a picture in, one verdict per face out."""

    def __init__(self, predictor: Predictor, detector: FaceDetector | None = None, margin: float = 0.0,
                 mode: str = "auto", whole_if_none: bool = False) -> None:
        if mode not in FACE_MODES:
            raise ValueError(f"faces mode {mode!r} is not one of {', '.join(FACE_MODES)}")
        self.predictor = predictor
        self._detector = detector
        self.margin = margin
        self.mode = mode
        self.whole_if_none = whole_if_none

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:  # built on first use: "off" never needs OpenCV
            self._detector = FaceDetector()
        return self._detector

    def classify(self, crops: list[Image.Image]) -> list[float]:
        """p_fake of each crop, in one batch."""
        if not crops:
            return []
        import torch

        batch = torch.stack([self.predictor.transform(c.convert("RGB")) for c in crops])
        return [float(p) for p in self.predictor.probabilities(batch)]

    def judge_image(self, image: Image.Image, name: str = "<image>") -> PhotoResult:
        t0 = time.perf_counter()
        result = PhotoResult(name, image.size)
        label = self.predictor._label  # noqa: SLF001 - one threshold rule for both paths
        if not should_search(image, self.mode):
            p = self.classify([image])[0]
            if math.isfinite(p):
                result.faces = [FaceVerdict(1, None, label(p), p, "crop")]
            else:
                result.note = "the model gave no finite score (NaN or infinity); no label given"
        else:
            result.searched = True
            found = find_faces(image, self.detector, self.margin)
            probs = self.classify(found.crops)
            result.faces, unscored = face_verdicts(found.faces, probs, label)
            notes = [found.detection.note()] if found.detection.note() else []
            if unscored:
                notes.append(f"{unscored} face(s) got no finite score from the model (NaN) and are not listed")
            if not result.faces and not unscored:
                notes.insert(0, NO_FACE)
                p = self.classify([image])[0] if self.whole_if_none else math.nan
                if math.isfinite(p):
                    result.faces = [FaceVerdict(1, None, label(p), p, "whole")]
                    notes.append("whole picture scored instead (a face-crop model: a weak guess)")
            result.note = "; ".join(notes)
        result.latency_ms = (time.perf_counter() - t0) * 1000
        return result

    def judge_path(self, path: str | Path) -> PhotoResult:
        from dftui.core.data import load_rgb
        from dftui.core.errors import describe_error

        try:
            image = load_rgb(path)  # EXIF rotation applied: boxes are in the upright picture
        except Exception as exc:  # noqa: BLE001 - unreadable picture: report, don't stop
            return PhotoResult(str(path), error=describe_error(exc))
        return self.judge_image(image, str(path))
