"""Data sets: scan and validate a real/fake folder, decode images robustly, build loaders.

Labels follow the reference project: real = 0, fake = 1 (not ImageFolder's alphabetical
order, which would give fake = 0)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PIL import Image, ImageFile, ImageOps

from dftui.core.backbones import CLASS_NAMES

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
IMBALANCE_RATIO = 1.5  # majority / minority above this gets a warning

# A truncated JPEG raises rather than decoding half an image into the training set.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class DataError(ValueError):
    """A data set folder that cannot be used; the message says where and what to do."""


@dataclass
class DatasetScan:
    root: Path
    samples: list[tuple[str, int]]  # (path, label) of every readable image
    counts: dict[str, int]  # readable images per class name
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.samples)

    def summary(self) -> str:
        parts = [f"{self.counts['real']} real", f"{self.counts['fake']} fake"]
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable")
        return f"{self.root}: " + ", ".join(parts)


def _class_dirs(root: Path) -> dict[str, Path]:
    if not root.exists():
        raise DataError(
            f"folder {root} does not exist; give a folder that holds real/ and fake/ subfolders"
        )
    if not root.is_dir():
        raise DataError(
            f"{root} is a file, not a folder; give the folder that holds real/ and fake/"
        )
    try:
        entries = {p.name.lower(): p for p in root.iterdir()}
    except PermissionError:
        raise DataError(f"folder {root} cannot be read (permission denied)") from None
    found = {}
    for name in CLASS_NAMES:
        path = entries.get(name)
        if path is None:
            present = sorted(p.name for p in root.iterdir() if p.is_dir())[:6]
            raise DataError(
                f"{root} has no {name}/ folder (found: {', '.join(present) or 'no folders'}); "
                "a data set folder holds real/ and fake/ subfolders of face crops"
            )
        if not path.is_dir():
            raise DataError(f"{path} is a file, but a {name}/ folder of images was expected")
        found[name] = path
    return found


def _list_images(folder: Path) -> list[str]:
    """Image files under ``folder``, recursively, sorted; hidden files and folders skipped.
    Symlinked folders are not followed, so a symlink loop cannot trap the scan."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                out.append(os.path.join(dirpath, name))
    out.sort()
    return out


def check_image(path: str) -> str | None:
    """Cheap readability check (file header only). Returns the reason it fails, or None."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with Image.open(path) as img:
            w, h = img.size
        if w < 1 or h < 1:
            return "image has no pixels"
    except Image.DecompressionBombError:
        return "image larger than Pillow's decompression-bomb limit"
    except PermissionError:
        return "permission denied"
    except (OSError, ValueError, SyntaxError) as exc:
        return _reason(exc)
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "cannot identify image file" in text:
        return "not an image (or an unsupported format)"
    return text[:160]


def scan_folder(root: str | Path, check: bool = True, threads: int = 8) -> DatasetScan:
    """Find real/ and fake/ (case-insensitive), count and check their images.

    Raises DataError for a missing folder, a missing or empty class folder, or a file where
    a folder was expected. Unreadable images are listed, not fatal."""
    root = Path(root).expanduser()
    dirs = _class_dirs(root)
    samples: list[tuple[str, int]] = []
    unreadable: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    for label, name in enumerate(CLASS_NAMES):
        files = _list_images(dirs[name])
        if not files:
            raise DataError(
                f"{dirs[name]} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                f"every data set needs both real and fake examples"
            )
        if check:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                reasons = list(pool.map(check_image, files))
        else:
            reasons = [None] * len(files)
        good = 0
        for path, reason in zip(files, reasons):
            if reason is None:
                samples.append((path, label))
                good += 1
            else:
                unreadable.append((path, reason))
        if good == 0:
            raise DataError(f"none of the {len(files)} images in {dirs[name]} can be read")
        counts[name] = good
    warnings = []
    lo, hi = min(counts.values()), max(counts.values())
    if hi / lo > IMBALANCE_RATIO:
        major = max(counts, key=counts.__getitem__)
        warnings.append(
            f"classes are imbalanced: {counts['real']} real vs {counts['fake']} fake "
            f"({hi / lo:.1f}× more {major}); accuracy alone will flatter the model"
        )
    if unreadable:
        warnings.append(f"{len(unreadable)} unreadable image(s) will be skipped")
    return DatasetScan(root, samples, counts, unreadable, warnings)


def load_rgb(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Decode an image as 8-bit RGB: EXIF rotation applied; grayscale, palette, RGBA, CMYK
    and 16-bit images converted. ``draft_size`` lets JPEG decode at reduced scale."""
    with Image.open(path) as img:
        if draft_size and img.format == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16/32-bit grayscale: scale into 8 bits instead of clipping to white.
            import numpy as np

            arr = np.asarray(img, dtype=np.float64)
            hi = arr.max() or 1.0
            img = Image.fromarray((arr * (255.0 / hi)).astype("uint8"), mode="L")
        elif img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        return img.convert("RGB")


@dataclass(frozen=True)
class Preprocessing:
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            int(data["input_size"]),
            tuple(float(x) for x in data["mean"]),
            tuple(float(x) for x in data["std"]),
            str(data.get("interpolation", "bilinear")),
        )


def build_transform(pre: Preprocessing, augment: str = "none") -> Callable[[Image.Image], Any]:
    """Resize to a square of the input size and normalise, as the reference did.
    ``augment`` adds training-time perturbations (off by default, as in the reference)."""
    from torchvision import transforms as T

    interp = {
        "bilinear": T.InterpolationMode.BILINEAR,
        "bicubic": T.InterpolationMode.BICUBIC,
        "nearest": T.InterpolationMode.NEAREST,
    }[pre.interpolation]
    steps: list[Any] = [T.Resize((pre.input_size, pre.input_size), interpolation=interp)]
    if augment in ("light", "robust"):
        steps.append(T.RandomHorizontalFlip())
    if augment == "robust":
        from dftui.core.augment import robust_augmentations

        steps.extend(robust_augmentations())
    steps += [T.ToTensor(), T.Normalize(pre.mean, pre.std)]
    return T.Compose(steps)


class FaceDataset:
    """(image tensor, label, "") per sample; (None, label, "path: reason") for an image that
    fails to decode, so one broken file never stops a run. Use with ``collate_skipping``."""

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        transform: Callable[[Image.Image], Any],
        draft_size: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        path, label = self.samples[index]
        try:
            img = load_rgb(path, self.draft_size)
            return self.transform(img), label, ""
        except Exception as exc:  # noqa: BLE001 - any decode failure means "skip this file"
            return None, label, f"{path}: {_reason(exc)}"


def collate_skipping(batch: list[tuple[Any, int, str]]) -> tuple[Any, Any, list[str]]:
    import torch

    good = [b for b in batch if b[0] is not None]
    skipped = [b[2] for b in batch if b[0] is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([b[0] for b in good])
    labels = torch.tensor([b[1] for b in good], dtype=torch.long)
    return images, labels, skipped


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: FaceDataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    device: torch.device,
    mp_context: str | None = None,
) -> DataLoader:
    import torch
    from torch.utils.data import DataLoader

    generator = torch.Generator()
    generator.manual_seed(seed)
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=_seed_worker)
        if mp_context:
            kwargs["multiprocessing_context"] = mp_context
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate_skipping,
        pin_memory=device.type == "cuda",
        generator=generator,
        **kwargs,
    )
