"""Weights on disk: a plain state_dict (loadable by ``model.load_state_dict(torch.load(p))``)
with its metadata in a JSON file beside it, never inside it. Writes are atomic."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dftui.core.backbones import (
    CLASS_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NUM_CLASSES,
    WeightsError,
    check_state_dict,
    infer_backbone,
    load_state_dict_file,
)
from dftui.core.data import Preprocessing
from dftui.core.untrusted import read_json

if TYPE_CHECKING:
    import torch

METADATA_FORMAT = 1
# The reference scripts resized every backbone's input to 224×224 with ImageNet mean/std.
REFERENCE_PREPROCESSING = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear")


def metadata_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: a
    crash or a full disk leaves the old file, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def remove_stale_temp(path: str | Path) -> int:
    """Delete the temporary files a killed atomic_write left for ``path`` (call only when no
    other process can be writing it). Returns how many were removed."""
    path = Path(path)
    removed = 0
    for tmp in path.parent.glob(f".{_glob_escape(path.name)}.*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def save_torch(obj: Any, path: str | Path) -> None:
    import torch

    with atomic_write(path) as fh:
        torch.save(obj, fh)


def save_json(data: Any, path: str | Path) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=2, default=str)


def free_weights_path(path: Path) -> Path:
    """``path`` if free, else the first ``stem-2.pth``, ``stem-3.pth``, ... that is."""
    if not path.exists():
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists() and not metadata_path(candidate).exists():
            return candidate
        n += 1


def build_metadata(backbone: str, preprocessing: Preprocessing, **extra: Any) -> dict[str, Any]:
    import torch

    from dftui import __version__

    return {
        "format": METADATA_FORMAT,
        "backbone": backbone,
        "classes": {name: i for i, name in enumerate(CLASS_NAMES)},
        "preprocessing": preprocessing.to_dict(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dftui_version": __version__,
        "torch_version": torch.__version__,
        **extra,
    }


def save_weights(
    state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any]
) -> Path:
    """Save weights then metadata, both atomically. Returns the metadata path."""
    path = Path(path)
    # Detached CPU copies keep the file loadable on machines without the training device.
    cpu_state = {k: v.detach().to("cpu").clone() for k, v in state_dict.items()}
    save_torch(cpu_state, path)
    meta_path = metadata_path(path)
    save_json(metadata, meta_path)
    return meta_path


def read_metadata(weights: str | Path) -> dict[str, Any] | None:
    """The metadata beside ``weights``; None when there is none or it cannot be read (see
    ``read_metadata_checked`` for the reason)."""
    return read_metadata_checked(weights)[0]


def read_metadata_checked(weights: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """(metadata, None), (None, None) when there is no metadata file, or (None, reason) when
    there is one that cannot be used: the file is untrusted (hand-edited, huge, nested
    absurdly deep, not an object), and a list of weights must show it, not fail on it."""
    path = metadata_path(weights)
    try:
        return read_json(path), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"{path.name}: {exc}"


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a dftui or reference-format weights file; returns (state_dict, metadata).

    Without a metadata file the weights are taken as the reference scripts made them:
    backbone from the keys, 224×224 resize, ImageNet mean/std, real = 0, fake = 1."""
    path = Path(path).expanduser()
    state = load_state_dict_file(path)
    spec = infer_backbone(state)
    meta = read_metadata(path)
    if meta is not None and meta.get("backbone") not in (None, spec.name):
        raise WeightsError(
            f"{path} holds {spec.name} weights but its metadata says {meta.get('backbone')}; "
            f"the file or its {metadata_path(path).name} was replaced"
        )
    head = state.get(f"{spec.head}.weight")
    if head is None or head.ndim != 2 or head.shape[0] != NUM_CLASSES:
        shape = tuple(head.shape) if head is not None else "none"
        raise WeightsError(
            f"{path} is a {spec.name} model but its head is not 2-class real/fake "
            f"({spec.head}.weight has shape {shape}); is it an ImageNet file? Use it as "
            "--pretrained for training instead"
        )
    check_state_dict(spec, state, path)
    if meta is None and metadata_path(path).is_file():
        # Our writes are atomic, so this is a hand-edited or foreign file: guessing the
        # preprocessing could give silently wrong answers.
        raise WeightsError(
            f"the metadata file {metadata_path(path)} beside {path.name} is not valid JSON; "
            "fix it, or move it away to use the weights with the reference preprocessing"
        )
    if meta is None:
        meta = {
            "backbone": spec.name,
            "classes": {name: i for i, name in enumerate(CLASS_NAMES)},
            "preprocessing": REFERENCE_PREPROCESSING.to_dict(),
            "reference_format": True,
        }
    meta.setdefault("backbone", spec.name)
    meta.setdefault("preprocessing", REFERENCE_PREPROCESSING.to_dict())
    try:
        Preprocessing.from_dict(meta["preprocessing"])
    except (KeyError, TypeError, ValueError):
        raise WeightsError(
            f"the metadata file {metadata_path(path)} has an unusable \"preprocessing\" entry; "
            "fix it, or move the file away to use the reference preprocessing"
        ) from None
    return state, meta


def list_weights(folder: str | Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """The .pth files in ``folder`` with their metadata (None for reference-format files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [(p, read_metadata(p)) for p in sorted(folder.glob("*.pth"))]
