"""Generated face-crop JPEGs for the benchmarks: the synthetic real/fake faces at the sizes
face detectors typically crop (256-400 px), saved as JPEG quality 90."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dftui.core.backbones import CLASS_NAMES
from dftui.core.synthetic import _face

SIZES = (256, 288, 320, 352, 400)


def make_jpeg_dataset(root: str | Path, n_per_class: int, seed: int = 0, quality: int = 90) -> Path:
    """Write root/real and root/fake (skipped when already there with enough files)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if len(list(folder.glob("*.jpg"))) >= n_per_class:
            continue
        for i in range(n_per_class):
            size = SIZES[i % len(SIZES)]
            img = _face(rng, size, fake=label == 1)
            img.save(folder / f"{name}_{i:05d}.jpg", quality=quality)
    return root


def make_split(root: str | Path, n_train: int, n_val: int, seed: int = 0) -> dict[str, Path]:
    root = Path(root)
    return {
        "train": make_jpeg_dataset(root / "train", n_train, seed),
        "val": make_jpeg_dataset(root / "val", n_val, seed + 1),
    }
