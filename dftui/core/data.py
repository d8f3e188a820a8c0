"""Data sets: scan and validate a real/fake folder, decode images robustly, build loaders.

Labels follow the reference project: real = 0, fake = 1 (not ImageFolder's alphabetical
order, which would give fake = 0)."""

from __future__ import annotations

import errno
import os
import sys
import threading
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageFile, ImageOps

from dftui.core.backbones import CLASS_NAMES
from dftui.core.balance import IMBALANCE_RATIO
from dftui.core.errors import describe_error

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

# A truncated JPEG raises rather than decoding half an image into the training set.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Images over Pillow's pixel limit are refused here with a reason (_too_many_pixels), so
# its warning for those between 1× and 2× the limit would only repeat it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


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
        listing = list(root.iterdir())
    except PermissionError:
        raise DataError(f"folder {root} cannot be read (permission denied)") from None
    entries: dict[str, Path] = {}
    for p in sorted(listing):
        key = p.name.lower()
        if key in CLASS_NAMES and key in entries:
            # real/ and Real/ side by side (a case-sensitive file system): reading one would
            # silently leave the other's images out; merging would mix sets the user kept
            # apart. Refuse and name both.
            raise DataError(
                f"{root} holds both {entries[key].name}/ and {p.name}/; dftui reads one "
                f"{key}/ folder: merge them into one (or rename the one to leave out)"
            )
        entries[key] = p
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


def iter_files(
    folder: str | os.PathLike[str],
    extensions: Collection[str] = IMAGE_EXTENSIONS,
    notes: list[str] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[str]:
    """The files under ``folder`` whose extension (any case) is in ``extensions``, recursively,
    as found; hidden files and folders skipped. The one walk behind every list of images or
    videos dftui makes (training data, predict, Classify, prepare, the demo-data check).

    Symlinked folders are followed (data sets are often assembled from links), each real
    folder at most once, so a symlink loop cannot trap the walk; loops and unreadable
    folders are noted in ``notes``. Entries that are not regular files (a broken link, a
    FIFO named like an image) are listed, so the reader can say what is wrong with them."""
    seen: set[tuple[int, int]] = set()

    def on_error(exc: OSError) -> None:
        if notes is not None:
            notes.append(f"folder {display_path(exc.filename or folder)} skipped: {describe_error(exc)}")

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=on_error):
        if stop is not None and stop.is_set():
            raise ScanCancelled()
        try:
            st = os.stat(dirpath)
            key = (st.st_dev, st.st_ino)
        except OSError:
            dirnames[:] = []
            continue
        if key in seen:
            if notes is not None:
                notes.append(f"folder {display_path(dirpath)} skipped: it links back to a folder already scanned")
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in extensions:
                yield os.path.join(dirpath, name)


def list_files(
    folder: str | os.PathLike[str],
    extensions: Collection[str] = IMAGE_EXTENSIONS,
    notes: list[str] | None = None,
    stop: threading.Event | None = None,
) -> list[str]:
    """``iter_files``, sorted by path text (the order a data set's files take; a seeded
    shuffle starts from it, so it must not change between versions)."""
    return sorted(iter_files(folder, extensions, notes, stop))


def expand_inputs(inputs: Iterable[str | os.PathLike[str]], extensions: Collection[str]) -> list[Path]:
    """Files named directly (whatever their extension: the user chose them), plus the files
    of ``extensions`` inside named folders (``list_files``)."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            out.extend(Path(p) for p in list_files(path, extensions))
        else:
            out.append(path)
    return out


# Control characters in a file name (a tab, a line break) would forge fields and lines in
# tab-separated output (``dftui predict``, skipped.txt) and logs: shown escaped instead.
_CONTROL_ESCAPES = {
    i: {9: "\\t", 10: "\\n", 13: "\\r"}.get(i, f"\\x{i:02x}") for i in [*range(32), 127]
}


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as printable text: bytes that are not UTF-8 (kept by Python as surrogates)
    shown as ``\\xNN`` escapes, and control characters as ``\\t``, ``\\n``, ``\\xNN``, so
    logs, JSON, tab-separated output and terminals never fail on, or are forged by, a name."""
    text = os.fspath(path)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.translate(_CONTROL_ESCAPES)


class NotARegularFile(ValueError):
    """A FIFO, device or socket where an image file was expected: reading it could block
    forever (a FIFO) or never end (``/dev/zero``), so it is never opened for reading."""


def open_regular(path: str | os.PathLike[str]) -> Any:
    """Open ``path`` for binary reading only if it is a regular file (checked on the open
    descriptor, opened non-blocking so a FIFO cannot hang the open itself)."""
    import stat

    from dftui.core.backbones import file_kind

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise NotARegularFile(f"{file_kind(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "rb")  # noqa: SIM115 - the caller closes it


def _too_many_pixels(width: int, height: int) -> bool:
    limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and width * height > limit


def check_image(path: str) -> str | None:
    """Cheap readability check (file header only). Returns the reason it fails, or None.

    Truncated data is only found when the image is decoded; training, evaluation and
    classification then skip the file and report it."""
    try:
        with open_regular(path) as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return "empty file (0 bytes)"
            with Image.open(fh) as img:
                w, h = img.size
        if w < 1 or h < 1:
            return "image has no pixels"
        if _too_many_pixels(w, h):
            return f"{w}×{h} pixels is beyond Pillow's decompression-bomb limit"
    except Image.DecompressionBombError:
        return "image larger than Pillow's decompression-bomb limit"
    except PermissionError:
        return "permission denied"
    except NotARegularFile as exc:
        return str(exc)
    except (OSError, ValueError, SyntaxError) as exc:
        return describe_error(exc)
    except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way on hostile bytes
        return describe_error(exc)
    return None



class ScanCancelled(Exception):
    """The scan was asked to stop (``stop`` set): a Ctrl+C need not wait for a large folder."""


def scan_folder(
    root: str | Path, check: bool = True, threads: int = 8, stop: threading.Event | None = None
) -> DatasetScan:
    """Find real/ and fake/ (case-insensitive), count and check their images.

    Raises DataError for a missing folder, a missing or empty class folder, or a file where
    a folder was expected, and ScanCancelled once ``stop`` is set. Unreadable images are
    listed, not fatal."""
    root = Path(root).expanduser()
    dirs = _class_dirs(root)
    samples: list[tuple[str, int]] = []
    unreadable: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    notes: list[str] = []
    for label, name in enumerate(CLASS_NAMES):
        files = list_files(dirs[name], IMAGE_EXTENSIONS, notes, stop)
        if not files:
            raise DataError(
                f"{dirs[name]} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                f"every data set needs both real and fake examples"
            )
        if check:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                reasons = []
                try:
                    for reason in pool.map(check_image, files):
                        if stop is not None and stop.is_set():
                            raise ScanCancelled()
                        reasons.append(reason)
                except BaseException:
                    # A stop or a second Ctrl+C: drop the checks not started yet rather
                    # than wait for the whole folder.
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        else:
            reasons = [None] * len(files)
        good = 0
        for path, reason in zip(files, reasons, strict=True):
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
    warnings.extend(notes)
    return DatasetScan(root, samples, counts, unreadable, warnings)


def load_rgb(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Decode an image as 8-bit RGB: EXIF rotation applied; grayscale, palette, RGBA, CMYK
    and 16-bit images converted. ``draft_size`` lets JPEG decode at reduced scale."""
    with open_regular(path) as fh, Image.open(fh) as img:
        if _too_many_pixels(*img.size):
            # Between 1× and 2× the limit Pillow only warns, then decodes gigabytes.
            w, h = img.size
            raise Image.DecompressionBombError(
                f"{w}×{h} pixels is beyond Pillow's decompression-bomb limit"
            )
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


def load_tensor(path: str | Path, draft_size: int | None = None) -> torch.Tensor:
    """Decode an image as a uint8 RGB tensor (3, H, W), with ``load_rgb``'s conversions.

    Decoding stays with Pillow (libjpeg-turbo, JPEG draft mode for large images): measured
    as fast as torchvision.io.decode_jpeg on face crops, whose image decoding is deprecated
    since torchvision 0.29. The time saved is in what follows: resizing the uint8 tensor
    (``ImageTransform``) instead of Pillow's resize + ToTensor (benchmarks/bench_decode.py)."""
    return _uint8_tensor(load_rgb(path, draft_size))


def _uint8_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 (3, H, W) view of an (H, W, 3) array: one copy, and the
    channels-last layout that torchvision's uint8 resize kernels prefer."""
    import numpy as np
    import torch

    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)


class ImageTransform:
    """PIL image or uint8 tensor (3, H, W) -> normalised float tensor, resized to a square of
    the input size as the reference did. The resize runs on the uint8 tensor with
    antialiasing, which matches Pillow's resize to within 2/255 per pixel (mean error about
    1e-4 after normalisation) and is faster than Pillow + ToTensor."""

    takes_tensor = True  # FaceDataset hands it load_tensor's output

    def __init__(self, pre: Preprocessing, flip: bool = False) -> None:
        self.size = int(pre.input_size)
        self.interpolation = pre.interpolation
        self.mean = tuple(float(m) for m in pre.mean)
        self.std = tuple(float(s) for s in pre.std)
        self.flip = flip

    def __call__(self, img: Image.Image | torch.Tensor) -> torch.Tensor:
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        if isinstance(img, Image.Image):
            img = _uint8_tensor(img)
        mode = {
            "bilinear": InterpolationMode.BILINEAR,
            "bicubic": InterpolationMode.BICUBIC,
            "nearest": InterpolationMode.NEAREST,
        }[self.interpolation]
        x = F.resize(img, [self.size, self.size], interpolation=mode, antialias=True)
        if self.flip and torch.rand(1).item() < 0.5:  # torch RNG: seeded per worker
            x = x.flip(-1)
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return x.float().div_(255.0).sub_(mean).div_(std)


def build_transform(pre: Preprocessing, augment: str = "none") -> Callable[[Any], Any]:
    """Resize to a square of the input size and normalise, as the reference did.
    ``augment`` adds training-time perturbations (off by default, as in the reference).

    Without the Pillow-based "robust" perturbations this is an ``ImageTransform`` (tensor
    pipeline, takes PIL images too); with them, the torchvision Pillow pipeline."""
    if augment in ("none", "light"):
        return ImageTransform(pre, flip=augment == "light")
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
            if getattr(self.transform, "takes_tensor", False):
                return self.transform(load_tensor(path, self.draft_size)), label, ""
            img = load_rgb(path, self.draft_size)
            return self.transform(img), label, ""
        except Exception as exc:  # noqa: BLE001 - any decode failure means "skip this file"
            return None, label, f"{path}: {describe_error(exc)}"


def collate_skipping(batch: list[tuple[Any, int, str]]) -> tuple[Any, Any, list[str]]:
    import torch

    good = [b for b in batch if b[0] is not None]
    skipped = [b[2] for b in batch if b[0] is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    tensors = [b[0] for b in good]
    if all(t.dim() == 3 and t.stride(0) == 1 for t in tensors):
        # ImageTransform's output is laid out channels-last (H, W, C in memory); stacking it
        # that way gives a channels-last batch, which the model takes without a reorder.
        images = torch.stack([t.permute(1, 2, 0) for t in tensors]).permute(0, 3, 1, 2)
    else:
        images = torch.stack(tensors)
    labels = torch.tensor([b[1] for b in good], dtype=torch.long)
    return images, labels, skipped


def _detach_captured_streams() -> None:
    """A forked worker inherits the dashboard's stdout/stderr capture objects (fileno() -1),
    which only work inside the parent's event loop: a write or the flush at process exit can
    kill the worker with exit code 1. Such streams are pointed at /dev/null in the worker."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            usable = stream is not None and stream.fileno() >= 0
        except (AttributeError, OSError, ValueError):
            usable = False
        if not usable:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def _forget_parent_executor_threads() -> None:
    """A worker forked from a ThreadPoolExecutor thread (the dashboard trains in one, through
    Textual's thread workers) inherits concurrent.futures' registry of the parent's executor
    threads, its own forking thread among them. At exit concurrent.futures joins them; joining
    the current thread raises, and the worker ends with status 1 although its work was done
    (which torch reports as "worker exited unexpectedly" wherever its SIGCHLD handler is
    installed). None of those threads exist in the child, so the registry is emptied."""
    module = sys.modules.get("concurrent.futures.thread")
    queues = getattr(module, "_threads_queues", None)
    if queues is not None:
        queues.clear()


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np
    import torch

    _detach_captured_streams()
    _forget_parent_executor_threads()
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
    sampler: Any = None,
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
        # A given sampler (a rank's shard in a distributed run) does its own shuffling.
        shuffle=shuffle if sampler is None else None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skipping,
        pin_memory=device.type == "cuda",
        generator=generator,
        **kwargs,
    )
