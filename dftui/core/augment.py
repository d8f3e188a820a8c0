"""Image perturbations: training augmentations and the test-time corruptions they mirror
(JPEG re-compression, Gaussian blur, Gaussian noise, downscale-then-upscale)."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def blur(img: Image.Image, sigma: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def noise(img: Image.Image, sigma: float, rng: np.random.Generator | None = None) -> Image.Image:
    """Additive Gaussian noise; ``sigma`` in 0-255 pixel units. Without ``rng`` the noise is
    drawn from Python's ``random`` state, which training seeds, so runs repeat."""
    rng = rng or np.random.default_rng(random.getrandbits(64))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0.0, float(sigma), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def rescale(img: Image.Image, factor: float) -> Image.Image:
    """Downscale by ``factor`` then back up: the loss of detail of a resized upload."""
    w, h = img.size
    small = img.resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.BILINEAR)
    return small.resize((w, h), Image.BILINEAR)


class RandomPerturb:
    """Apply ``fn(img, level)`` with probability ``p``, level drawn uniformly from a range."""

    def __init__(self, fn: Any, low: float, high: float, p: float = 0.3) -> None:
        self.fn, self.low, self.high, self.p = fn, low, high, p

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return img
        return self.fn(img, random.uniform(self.low, self.high))

    def __repr__(self) -> str:
        return f"RandomPerturb({self.fn.__name__}, {self.low}-{self.high}, p={self.p})"


def robust_augmentations() -> list[Any]:
    """The perturbations OpenForensics Test-Challenge contains, applied at random."""
    from torchvision import transforms as T

    return [
        T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
        RandomPerturb(jpeg, 30, 95),
        RandomPerturb(blur, 0.1, 1.5),
        RandomPerturb(noise, 1, 12),
    ]


@dataclass(frozen=True)
class Corruption:
    """A test-time corruption at graded severities, mildest first."""

    name: str
    title: str
    fn: Callable[..., Image.Image]
    severities: tuple[float, ...]
    unit: str  # how a severity reads: "q50", "σ1.0", "×2"

    def label(self, severity: float) -> str:
        value = int(severity) if float(severity).is_integer() else severity
        return f"{self.name} {self.unit}{value}"

    def apply(self, img: Image.Image, severity: float, seed: int = 0) -> Image.Image:
        if self.fn is noise:
            # Seeded per image, so an evaluation under noise can be repeated exactly.
            return noise(img, severity, np.random.default_rng(seed))
        return self.fn(img, severity)


# Severities span roughly what OpenForensics Test-Challenge shows, from barely visible on.
CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("jpeg", "JPEG quality", jpeg, (75, 50, 25), "q"),
        Corruption("blur", "Gaussian blur", blur, (0.5, 1.0, 2.0), "σ"),
        Corruption("noise", "Gaussian noise", noise, (5, 10, 20), "σ"),
        Corruption("rescale", "Downscale then upscale", rescale, (2, 3, 4), "×"),
    )
}


def parse_corruptions(text: str) -> list[str]:
    """``"jpeg,blur"`` or ``"all"`` -> names; raises ValueError naming the unknown ones."""
    if text.strip().lower() == "all":
        return list(CORRUPTIONS)
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown or not names:
        raise ValueError(
            f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(CORRUPTIONS)} or all"
        )
    return list(dict.fromkeys(names))
