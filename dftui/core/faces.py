"""Find faces in a picture and cut them out the way ``dftui prepare`` cuts training data.

The detector is OpenCV's frontal-face Haar cascade, whose model file ships inside the
``opencv-python-headless`` 4.x wheel (``cv2.data``): it works offline and downloads nothing.
docs/FACES.md compares it with the other candidates (scikit-image's LBP cascade,
facenet-pytorch's MTCNN, MediaPipe) and says why this one.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from dftui.core.prepare import crop_box

#: Verdict colours shared by the CLI-free renderers (Classify screen, benchmark pictures).
REAL_COLOUR = (46, 204, 113)
FAKE_COLOUR = (231, 76, 60)
NEUTRAL_COLOUR = (241, 196, 15)


class FaceDetectorError(RuntimeError):
    """The detector cannot run (its library is missing or its model file is unreadable)."""


@dataclass(frozen=True)
class Face:
    """One detected face: its box in the picture's pixels (x0, y0, x1, y1, right/bottom
    exclusive) and the detector's confidence (larger is surer: how many search windows agreed)."""

    box: tuple[int, int, int, int]
    score: float = 0.0

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), "score": round(self.score, 3)}


# The frontal-face cascades of the opencv-python 4.x wheel that dftui can use. "alt2" (Rainer
# Lienhart's tree-based cascade, a 20 px window) is the default: measured on the pictures of
# docs/FACES.md it finds more faces than "default" (Viola-Jones stumps, a 24 px window) with
# fewer false boxes, and rejects background windows sooner, so a search costs less than half.
CASCADES = {
    "alt2": "haarcascade_frontalface_alt2.xml",
    "default": "haarcascade_frontalface_default.xml",
}


@dataclass(frozen=True)
class DetectorConfig:
    min_size: int = 40  # faces narrower than this (picture pixels) are not reported
    max_faces: int = 100  # the largest this many are kept; the rest are counted, not classified
    max_side: int = 1024  # the picture is searched at most this large (bounds the time)
    cascade: str = "alt2"  # a key of CASCADES
    # The search's step between window sizes and how many overlapping windows must agree for
    # a face. Both were chosen together per cascade on docs/FACES.md's pictures (benchmarks/
    # faces_compare.py --settings): a coarser step leaves fewer windows to agree.
    scale_step: float = 1.2
    min_votes: int = 4

    def validate(self) -> None:
        if self.min_size < 8:
            raise ValueError(f"minimum face size {self.min_size} is below 8 pixels")
        if self.max_faces < 1:
            raise ValueError(f"max faces must be at least 1 (got {self.max_faces})")
        if self.max_side < 64:
            raise ValueError(f"detection size {self.max_side} is below 64 pixels")
        if self.cascade not in CASCADES:
            raise ValueError(f"face cascade {self.cascade!r} is not one of {', '.join(CASCADES)}")
        if not 1.01 <= self.scale_step <= 2.0:
            raise ValueError(f"search scale step {self.scale_step} is outside 1.01-2")
        if self.min_votes < 1:
            raise ValueError(f"min votes must be at least 1 (got {self.min_votes})")


#: The settings dftui used before the faster search (default cascade, step 1.1, 10 votes):
#: kept so benchmarks/faces_bench.py and faces_compare.py can measure both side by side.
LEGACY_CONFIG = DetectorConfig(cascade="default", scale_step=1.1, min_votes=10)


@dataclass
class Detection:
    faces: list[Face] = field(default_factory=list)  # largest first
    too_small: int = 0  # found but below the minimum size: not classified
    dropped: int = 0  # beyond max_faces: not classified
    searched_at: tuple[int, int] = (0, 0)  # the size the detector saw

    def note(self) -> str:
        parts = []
        if self.too_small:
            parts.append(f"{self.too_small} face(s) below the minimum size were left out")
        if self.dropped:
            parts.append(f"{self.dropped} more face(s) beyond the first {len(self.faces)} were left out")
        return "; ".join(parts)




class FaceDetector:
    """Thread-safe wrapper around the cascade (OpenCV's CascadeClassifier is not: each
    thread gets its own)."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self.config.validate()
        self._local = threading.local()
        self._path = cascade_path(self.config.cascade)

    def _cascade(self) -> Any:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            import cv2

            cascade = cv2.CascadeClassifier(self._path)
            if cascade.empty():
                raise FaceDetectorError(
                    f"the face model {self._path} could not be read; reinstall opencv-python-headless"
                )
            self._local.cascade = cascade
        return cascade

    def window(self) -> int:
        """The cascade's window side (px): no smaller face can be found at any scale."""
        return int(min(self._cascade().getOriginalWindowSize()))

    def detect(self, image: Image.Image) -> Detection:
        """Faces in an RGB picture, largest first."""
        import numpy as np

        w, h = image.size
        if w < 1 or h < 1:
            return Detection()
        cfg = self.config
        # Search a reduced copy: the time grows with the pixels, and a face of min_size
        # needs only the cascade's window. Never upscale (that finds nothing new).
        window = self.window()
        scale = min(1.0, cfg.max_side / max(w, h))
        scale = max(scale, min(1.0, window / cfg.min_size)) if cfg.min_size * scale < window else scale
        small = image.convert("L")
        if scale < 1.0:
            small = small.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        grey = np.asarray(small)
        min_px = max(window, int(cfg.min_size * scale * 0.8))  # 0.8: the cascade's box jitters
        # detectMultiScale2's count of merged windows serves as the confidence (the level
        # weights of detectMultiScale3 cost several times the search time). OpenCV keeps a
        # group of more than minNeighbors windows; min_votes is dftui's own, higher, bar (5
        # neighbours at most: OpenCV's usual grouping, which the legacy settings were measured with).
        found, weights = self._cascade().detectMultiScale2(
            grey, scaleFactor=cfg.scale_step, minNeighbors=min(5, cfg.min_votes - 1), minSize=(min_px, min_px)
        )
        faces: list[Face] = []
        too_small = 0
        boxes = np.asarray(found).reshape(-1, 4)
        for (x, y, bw, bh), weight in zip(boxes, np.asarray(weights).reshape(-1), strict=True):
            box = (
                max(0, math.floor(x / scale)),
                max(0, math.floor(y / scale)),
                min(w, math.ceil((x + bw) / scale)),
                min(h, math.ceil((y + bh) / scale)),
            )
            if weight < cfg.min_votes:
                continue
            if min(box[2] - box[0], box[3] - box[1]) < cfg.min_size:
                too_small += 1
                continue
            faces.append(Face(box, float(weight)))
        faces.sort(key=lambda f: f.width * f.height, reverse=True)
        dropped = max(0, len(faces) - cfg.max_faces)
        return Detection(faces[: cfg.max_faces], too_small, dropped, (grey.shape[1], grey.shape[0]))


def cascade_path(cascade: str = "alt2") -> str:
    name = CASCADES[cascade]
    try:
        import cv2
    except ImportError as exc:
        raise FaceDetectorError(
            f"face detection needs OpenCV ({exc}); install it with: pip install 'opencv-python-headless<5'"
        ) from None
    path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""), name)
    if not os.path.isfile(path):
        raise FaceDetectorError(
            f"OpenCV {cv2.__version__} has no bundled {name} (OpenCV 5 wheels dropped it); "
            "install: pip install 'opencv-python-headless>=4.9,<5'"
        )
    return path


def crop_face(image: Image.Image, face: Face, margin: float) -> Image.Image:
    """The face cut out with ``dftui prepare``'s rule (prepare.crop_box: the box enlarged by
    ``margin`` of its width/height, clamped to the picture) so the model sees what it was
    trained on."""
    x0, y0, x1, y1 = face.box
    crop, _face, _clamped = crop_box((x0, y0, x1 - x0, y1 - y0), margin, image.width, image.height)
    if crop is None:  # a detector box always lies inside the picture
        raise ValueError(f"face box {face.box} lies outside the {image.width}x{image.height} picture")
    return image.crop(crop)


# What "--faces auto" takes for an already-cropped face: near-square and small, the shape
# prepare writes and face-crop data sets come in; anything else is a scene to search.
CROP_MAX_SIDE = 512
CROP_MAX_ASPECT = 1.5


def looks_like_crop(image: Image.Image) -> bool:
    w, h = image.size
    if min(w, h) < 1:
        return False
    return max(w, h) <= CROP_MAX_SIDE and max(w, h) / min(w, h) <= CROP_MAX_ASPECT


def verdict_colour(p_fake: float | None, threshold: float) -> tuple[int, int, int]:
    if p_fake is None or math.isnan(p_fake):
        return NEUTRAL_COLOUR
    return FAKE_COLOUR if p_fake >= threshold else REAL_COLOUR


def draw_boxes(
    image: Image.Image,
    boxes: Sequence[tuple[int, int, int, int]],
    colours: Sequence[tuple[int, int, int]],
    selected: int | None = None,
    target_width: int | None = None,
) -> Image.Image:
    """A copy of the picture with numbered boxes (1, 2, ...), drawn before the terminal
    renders it so they survive every renderer, half blocks included. ``target_width`` is
    the width the picture will be shown at: lines and digits are scaled so they stay
    visible after the reduction."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    # shrink: picture pixels per displayed column. Half blocks show one pixel a column and
    # two a row, so a line about one column wide and digits 8 pixels high stay readable.
    shrink = max(1.0, out.width / target_width) if target_width else 1.0
    line = max(2, round(shrink))
    font_size = max(10, round(8 * shrink))
    from PIL import ImageFont

    try:
        font: Any = ImageFont.load_default(size=font_size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    for i, (box, colour) in enumerate(zip(boxes, colours, strict=True), start=1):
        width = line * 2 if selected == i - 1 else line
        draw.rectangle(box, outline=colour, width=width)
        label = str(i)
        tx, ty = box[0], max(0, box[1] - font_size - line)
        bbox = draw.textbbox((tx, ty), label, font=font)
        draw.rectangle((bbox[0] - line, bbox[1] - line, bbox[2] + line, bbox[3] + line), fill=colour)
        draw.text((tx, ty), label, fill=(0, 0, 0), font=font)
    return out
