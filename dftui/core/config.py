"""Run configuration: one frozen dataclass shared by the CLI, the dashboard and the engine."""

from __future__ import annotations

import math
import os
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

PRETRAINED_CHOICES = ("imagenet", "none")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
MAX_SEED = 2**32 - 1  # numpy's seed range; torch's per-epoch seed (seed * 1000 + epoch) fits int64
MAX_IMG_SIZE = 1024  # 4.5x Xception's 299 px: beyond it a batch of 32 needs tens of GiB


PATH_FIELDS = ("train_dir", "val_dir", "out_dir", "runs_dir")


def absolute_path(path: str | Path) -> Path:
    """``path`` made absolute and normalised (``a/../b`` → ``b``) without resolving links."""
    return Path(os.path.abspath(Path(path).expanduser()))


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why."""


WEIGHTS_SUFFIX = ".pth"
MAX_WEIGHTS_NAME_BYTES = 180  # room for the run tag and temporary-file affixes under 255


def weights_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a weights file name, or None. One rule for the CLI's ``--name``
    and the dashboard's weights field: a plain ``.pth`` file name, so that its metadata
    (the same name with ``.json``) is another file in the same folder, never the weights
    themselves (``--name x.json`` once made both one path) and never somewhere else."""
    if not name or not name.strip():
        return "enter a file name such as mobilenet_v2_deepfake.pth"
    if "/" in name or "\\" in name or name in (".", ".."):
        return f"{name!r} is not a plain file name; give a name without folders (the folder is set separately)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r} contains control characters (a tab or a line break); remove them"
    if name.startswith("."):
        return f"{name!r} starts with a dot (a hidden file); give a visible name such as model.pth"
    # Lower case exactly: the dashboard's weights lists find ``*.pth`` (case-sensitive).
    if not name.endswith(WEIGHTS_SUFFIX) or len(name) == len(WEIGHTS_SUFFIX):
        return (
            f"{name!r} does not end in {WEIGHTS_SUFFIX}; weights are a .pth file and their "
            "metadata goes beside it as a .json file of the same name"
        )
    if len(name.encode("utf-8", "surrogateescape")) > MAX_WEIGHTS_NAME_BYTES:
        return f"the name is too long (at most {MAX_WEIGHTS_NAME_BYTES} bytes)"
    if str(Path(name).with_suffix(".json")) == name:
        return f"{name!r} would be its own metadata file; give a name ending in {WEIGHTS_SUFFIX}"
    return None


@dataclass(frozen=True)
class TrainConfig:
    """Everything a fine-tuning run needs. Defaults are the reference project's."""

    backbone: str = "mobilenet_v2"
    train_dir: Path = Path("processed_data/train_cropped")
    val_dir: Path = Path("processed_data/val_cropped")
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-4
    img_size: int | None = None  # None: the backbone's own input size
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    pretrained: str = "imagenet"  # imagenet | none | path to a local ImageNet state_dict
    workers: int | None = None  # None: chosen from the machine's cores
    seed: int = 42
    out_dir: Path = Path("weights")
    weights_name: str | None = None  # None: {backbone}_deepfake.pth
    overwrite: bool = False
    channels_last: bool | None = None  # None: where it measures faster
    compile: bool = False
    augment: str = "none"
    runs_dir: Path | None = None  # None: the user data directory
    mp_context: str | None = None  # data-loader start method; None: the platform default
    # Batch norm with several processes (dftui train --nproc-per-node): sync_bn normalises
    # with statistics over all ranks (SyncBatchNorm, CUDA/NCCL only); freeze_bn keeps the
    # layers' stored statistics (eval mode) while their weights still train. Neither: each
    # rank normalises with its own batch and the running statistics are averaged at every
    # epoch end.
    sync_bn: bool = False
    freeze_bn: bool = False

    def validate(self) -> None:
        """Raise ConfigError for a setting that cannot work, before any heavy work starts."""
        from dftui.core.backbones import BACKBONES

        if self.backbone not in BACKBONES:
            raise ConfigError(
                f"unknown backbone {self.backbone!r}; choose one of: {', '.join(BACKBONES)}"
            )
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be at least 1 (got {self.epochs})")
        if self.batch_size <= 0:
            raise ConfigError(f"batch size must be at least 1 (got {self.batch_size})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be greater than 0 and finite (got {self.lr})")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be between 0 and {MAX_SEED} (got {self.seed})")
        if self.img_size is not None:
            if self.img_size > MAX_IMG_SIZE:
                raise ConfigError(
                    f"image size {self.img_size} is too large; use at most {MAX_IMG_SIZE} pixels "
                    "(the backbones were pretrained at 224 or 299)"
                )
            minimum = BACKBONES[self.backbone].min_size
            if self.img_size < minimum:
                raise ConfigError(
                    f"image size {self.img_size} is too small for {self.backbone}; "
                    f"use at least {minimum} pixels"
                )
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"data-loader workers must be 0 or more (got {self.workers})")
        if self.precision not in PRECISION_CHOICES:
            raise ConfigError(
                f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISION_CHOICES)}"
            )
        dev = self.device
        if not (dev in DEVICE_CHOICES or dev.startswith("cuda:")):
            raise ConfigError(f"unknown device {dev!r}; use auto, cpu, cuda, cuda:N or mps")
        if self.sync_bn and self.freeze_bn:
            raise ConfigError("choose either synchronised or frozen batch norm, not both")
        if self.augment not in ("none", "light", "robust"):
            raise ConfigError(f"unknown augmentation {self.augment!r}; use none, light or robust")
        if self.weights_name is not None:
            problem = weights_name_problem(self.weights_name)
            if problem:
                raise ConfigError(f"weights name: {problem}")

    @property
    def weights_path(self) -> Path:
        return Path(self.out_dir) / (self.weights_name or f"{self.backbone}_deepfake.pth")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (paths as strings)."""
        out = {}
        for k, v in asdict(self).items():
            out[k] = str(v) if isinstance(v, Path) else v
        return out

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """A config from its JSON form (a run's config.json: untrusted). Unknown keys are
        ignored, missing ones take their defaults; a value of the wrong type raises
        UntrustedError (a ValueError) naming the setting."""
        from dftui.core.untrusted import UntrustedError, check_typed, json_type

        if not isinstance(data, dict):
            raise UntrustedError(f"the settings should be a JSON object, not {json_type(data)}")
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in data:
                kwargs[f.name] = check_typed(data[f.name], hints[f.name], f.name)
        return cls(**kwargs)

    def relative_paths(self) -> list[str]:
        """The settings holding a path relative to the current folder (older run records)."""
        names = [k for k in PATH_FIELDS if getattr(self, k) is not None
                 and not Path(getattr(self, k)).expanduser().is_absolute()]
        if self.pretrained not in PRETRAINED_CHOICES and not Path(self.pretrained).expanduser().is_absolute():
            names.append("pretrained")
        return names

    def absolute(self) -> TrainConfig:
        """The same settings with every path absolute (from the current folder), so the run
        record works from any folder: ``dftui train --resume RUN`` elsewhere must train on
        the same data and write to the same weights folder. Symbolic links are kept as given."""
        changes: dict[str, Any] = {
            k: absolute_path(getattr(self, k)) for k in PATH_FIELDS if getattr(self, k) is not None
        }
        if self.pretrained not in PRETRAINED_CHOICES:
            changes["pretrained"] = str(absolute_path(self.pretrained))
        return replace(self, **changes)

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)
