"""A generated real/fake data set: face-like ellipses, where "fake" ones carry the periodic
up-sampling artefacts and colour shifts that GAN and face-swap pipelines leave. It is
synthetic and only good for trying dftui end to end and for tests, not for real detection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dftui.core.backbones import CLASS_NAMES


@dataclass(frozen=True)
class SyntheticSpec:
    n_per_class: int = 24
    size: int = 48
    seed: int = 0
    fmt: str = "png"  # "png" | "jpg"


def _face(rng: np.random.Generator, size: int, fake: bool) -> Image.Image:
    bg = tuple(int(c) for c in rng.integers(20, 235, 3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    skin = np.array([rng.integers(150, 235), rng.integers(110, 190), rng.integers(80, 160)])
    cx, cy = size / 2 + rng.normal(0, size / 16, 2)
    rx, ry = size * rng.uniform(0.25, 0.35), size * rng.uniform(0.32, 0.42)
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(c) for c in skin))
    for ex in (-rx / 2.5, rx / 2.5):  # eyes
        draw.ellipse([cx + ex - 2, cy - ry / 4 - 2, cx + ex + 2, cy - ry / 4 + 2], fill=(30, 30, 30))
    draw.line([cx - rx / 3, cy + ry / 2.5, cx + rx / 3, cy + ry / 2.5], fill=(120, 40, 40), width=2)
    arr = np.asarray(img, dtype=np.float32)
    arr += rng.normal(0, 4, arr.shape)  # sensor noise, on both classes
    if fake:
        yy, xx = np.mgrid[0:size, 0:size]
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        checker = np.where((xx // 2 + yy // 2) % 2 == 0, 1.0, -1.0)
        amp = rng.uniform(25, 45)
        arr[inside] += (checker[inside] * amp)[:, None]
        arr[inside] *= np.array([1.08, 0.95, 0.92])  # blending colour mismatch
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_dataset(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> dict[str, int]:
    """Write ``root/real`` and ``root/fake``; returns the counts written."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    counts = {}
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(spec.n_per_class):
            img = _face(rng, spec.size, fake=label == 1)
            path = folder / f"{name}_{i:05d}.{spec.fmt}"
            img.save(path, quality=95) if spec.fmt == "jpg" else img.save(path)
        counts[name] = spec.n_per_class
    return counts
