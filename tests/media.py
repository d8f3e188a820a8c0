"""Real faces for tests, from a photograph that ships inside scikit-image, and tiny videos
written with PyAV."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

# The astronaut's face in skimage.data.astronaut() (512x512), x0, y0, x1, y1, by hand.
ASTRONAUT_FACE = (165, 50, 280, 175)


@lru_cache(maxsize=1)
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def head() -> Image.Image:
    """The astronaut's head with some room around it (130x160)."""
    return astronaut().crop((150, 20, 280, 180))


def background(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 200, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def group_photo(width: int = 1920, height: int = 1080, widths: Sequence[int] = (120, 180, 260)
                ) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """A picture with one pasted head per width, spread left to right; their boxes."""
    img = background(width, height)
    src = head()
    boxes = []
    step = width // (len(widths) + 1)
    for i, w in enumerate(widths):
        h = round(w * src.height / src.width)
        x, y = step * (i + 1) - w // 2, height // 2 - h // 2
        img.paste(src.resize((w, h)), (x, y))
        boxes.append((x, y, x + w, y + h))
    return img, boxes


def write_video(path: Path, frames: int = 6, size: int = 96, fps: int = 5, face: bool = True,
                codec: str = "mpeg4") -> Path:
    """A tiny clip: the astronaut's head on a moving background (or no face)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = background(size, size, seed=i)
            if face:
                img.paste(head().resize((size * 13 // 16, size)), (size * 3 // 32, 0))
            for packet in stream.encode(av.VideoFrame.from_image(img)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
