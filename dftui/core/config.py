"""Run configuration: one frozen dataclass shared by the CLI, the dashboard and the engine."""

from __future__ import annotations

import os
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from dftui.core.balance import BALANCE_CHOICES
from dftui.core.early_stop import EARLY_STOP_METRICS
from dftui.core.options import option, problems

PRETRAINED_CHOICES = ("imagenet", "none")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
MAX_SEED = 2**32 - 1  # numpy's seed range; torch's per-epoch seed (seed * 1000 + epoch) fits int64
MAX_IMG_SIZE = 1024  # 4.5x Xception's 299 px: beyond it a batch of 32 needs tens of GiB


AUGMENT_CHOICES = ("none", "light", "robust")
OPTIMIZER_CHOICES = ("adam", "adamw", "sgd")
LR_SCHEDULE_CHOICES = ("none", "cosine", "step", "plateau")
DEFAULT_MOMENTUM = 0.9
PATH_FIELDS = ("train_dir", "val_dir", "out_dir", "runs_dir")


def _backbone_names() -> tuple[str, ...]:
    from dftui.core.backbones import backbone_names

    return backbone_names()


def _img_size_problem(size: int) -> str | None:
    if size > MAX_IMG_SIZE:
        return (f"image size {size} is too large; use at most {MAX_IMG_SIZE} pixels "
                "(the backbones were pretrained at 224 or 299)")
    return None


def img_size_problem(size: int | None, backbone: str) -> str | None:
    """The rule tying the image size to the backbone (too small for its layers); the Setup
    form checks it as the size is typed."""
    from dftui.core.backbones import BACKBONES

    spec = BACKBONES.get(backbone)
    if size is None or spec is None or size >= spec.min_size:
        return None
    return f"image size {size} is too small for {backbone}; use at least {spec.min_size} pixels"


def _device_problem(dev: str) -> str | None:
    if dev in DEVICE_CHOICES or dev.startswith("cuda:"):
        return None
    return f"unknown device {dev!r}; use auto, cpu, cuda, cuda:N or mps"


def _ema_decay_problem(decay: float) -> str | None:
    if not 0.0 < decay < 1.0:
        return f"EMA decay must be between 0 and 1, both excluded (got {decay:g}); 0.9998 is usual"
    return None


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

    # Each training option is declared once, here (core/options.py): the CLI flags, the
    # Setup form and validation are derived from these declarations.
    backbone: str = option(
        "mobilenet_v2", label="backbone", help="the ImageNet-pretrained network to fine-tune",
        choices_from=_backbone_names, section="model")
    train_dir: Path = option(
        Path("processed_data/train_cropped"), label="training folder", flag="--train",
        help="training folder holding real/ and fake/", section="data", resume="keep")
    val_dir: Path = option(
        Path("processed_data/val_cropped"), label="validation folder", flag="--val",
        help="validation folder holding real/ and fake/", section="data")
    epochs: int = option(
        15, label="epochs",
        help="epochs to train; a resumed run keeps its own unless given (not below those done)",
        minimum=1, resume="extend")
    batch_size: int = option(32, label="batch size", help="images per step", minimum=1)
    lr: float = option(
        1e-4, label="learning rate", help="the optimiser's learning rate",
        minimum=0.0, minimum_inclusive=False)
    img_size: int | None = option(
        None, label="image size", help="input size in pixels (default: the backbone's, 224 or 299)",
        rule=_img_size_problem, section="model")  # the minimum depends on the backbone: validate()
    device: str = option(
        "auto", label="device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps",
        rule=_device_problem, section="hardware", resume="free")
    precision: str = option(
        "auto", label="precision",
        help="auto: bf16 where the hardware has it, fp16+scaler on older GPUs, else fp32; "
        "DFTUI_PRECISION, when set, decides what auto means",
        choices=PRECISION_CHOICES, section="hardware", resume="free")
    pretrained: str = option(
        "imagenet", label="pretrained weights",
        help="imagenet (cached or downloaded), none (random init), or a local .pth path",
        section="model")
    workers: int | None = option(
        None, label="workers", help="data-loader worker processes (default: from the machine's cores)",
        minimum=0, section="hardware", resume="free")
    seed: int = option(42, label="seed", help="random seed", minimum=0, maximum=MAX_SEED)
    out_dir: Path = option(Path("weights"), label="weights folder", flag="--out",
                           help="weights folder", section="output")
    weights_name: str | None = option(
        None, label="weights name", flag="--name",
        help="weights file name (default: {backbone}_deepfake.pth)", section="output",
        rule=lambda name: None if name is None else weights_name_problem(name))
    overwrite: bool = option(False, label="overwrite", help="replace existing weights of the same name",
                             section="output", resume="free")
    channels_last: bool | None = None  # None: where it measures faster
    compile: bool = option(False, label="compile", help="torch.compile the model",
                           section="hardware", resume="free")
    augment: str = option(
        "none", label="augmentation", help="training augmentation (none: as the reference)",
        choices=AUGMENT_CHOICES, section="data",
        # "robust" mirrors the perturbations of Test-Challenge.
        choice_labels=(("none", "none (as the reference)"), ("light", "light: horizontal flip"),
                       ("robust", "robust: flip, JPEG, blur, noise, colour")))
    # The recipe beyond the reference's fixed Adam (core/optim.py builds these by name
    # through timm's factories). The defaults are the reference recipe.
    optimizer: str = option(
        "adam", label="optimiser",
        help="adam (the reference), adamw (decoupled weight decay) or sgd (with momentum)",
        choices=OPTIMIZER_CHOICES)
    weight_decay: float = option(
        0.0, label="weight decay",
        help="weight decay (0: none, the reference); biases and batch norm are not decayed",
        minimum=0.0, maximum=1.0)
    momentum: float = option(
        DEFAULT_MOMENTUM, label="momentum", help="SGD's momentum (optimiser sgd only)",
        minimum=0.0, rule=lambda m: "must be below 1" if m >= 1 else None)
    lr_schedule: str = option(
        "none", label="learning-rate schedule",
        help="none (constant, the reference); cosine (from the full rate towards 0 by the last "
        "epoch); step (x0.1 every few epochs: the step interval); plateau (x0.1 after 2 epochs "
        "without a lower validation loss); any of them after the warm-up",
        choices=LR_SCHEDULE_CHOICES)
    lr_step_epochs: int = option(
        5, label="step interval", metavar="N",
        help="with the step schedule, the epochs between two cuts of the learning rate (x0.1), "
        "counted after the warm-up", minimum=1)
    warmup_epochs: int = option(
        0, label="warm-up epochs",
        help="epochs rising linearly from a tenth of the learning rate to all of it, before "
        "the schedule (needs a schedule other than none)", minimum=0)
    accum_steps: int = option(
        1, label="accumulation steps",
        help="batches whose gradients add up to one optimiser step: an effective batch of "
        "batch size x steps with the memory of one batch", minimum=1, maximum=1024)
    label_smoothing: float = option(
        0.0, label="label smoothing",
        help="share of each target spread over both classes (0: plain cross-entropy, the "
        "reference); the validation loss stays plain", minimum=0.0,
        rule=lambda s: "must be below 0.5 (at 0.5 both classes get the same target)" if s >= 0.5 else None)
    # Recipe options beyond the reference (all off by default): early stopping, a frozen
    # backbone for the first epochs, class balancing, weight averaging (EMA).
    early_stop_patience: int = option(
        0, label="early-stopping patience",
        help="end the run after this many epochs without improvement of the early-stopping "
        "metric (0: off, as the reference)", minimum=0)
    early_stop_metric: str = option(
        "val_loss", label="early-stopping metric",
        help="the validation metric early stopping watches: val_loss (lower is better) or "
        "val_acc (higher is better)", choices=tuple(EARLY_STOP_METRICS))
    early_stop_min_delta: float = option(
        0.0, label="early-stopping min delta",
        help="the least change of the metric that counts as an improvement", minimum=0.0)
    freeze_epochs: int = option(
        0, label="frozen-backbone epochs",
        help="train only the classifier head for the first N epochs, then the whole network "
        "(0: full fine-tuning from the start, as the reference)", minimum=0)
    balance: str = option(
        "none", label="class balancing",
        help="for imbalanced folders: none (as the reference), sampler (draw both classes "
        "equally often) or loss (class-weighted cross-entropy)", choices=BALANCE_CHOICES)
    ema: bool = option(
        False, label="weight averaging (EMA)",
        help="keep an exponential moving average of the weights, validate it every epoch and "
        "save it as the run's weights")
    ema_decay: float = option(
        0.9998, label="EMA decay", help="the moving average's decay (with timm's warm-up)",
        rule=_ema_decay_problem)
    # Off by default: the reference recipe's p_fake values stay what the reference scripts
    # give for the same weights; the weights themselves are the same either way.
    calibrate: bool = option(
        False, label="calibrate",
        help="after training, fit a temperature on the validation set (with the best weights) "
        "so that probabilities match accuracy; stored in the weights' metadata, used by "
        "predict and evaluate, ECE reported before and after",
        section="recipe", resume="free")
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
        # The declared rules first (choices, bounds, each option's own rule), then the
        # rules that tie two options together.
        found = problems(self)
        if found:
            raise ConfigError(found[0][1])
        small = img_size_problem(self.img_size, self.backbone)
        if small:
            raise ConfigError(small)
        if self.sync_bn and self.freeze_bn:
            raise ConfigError("choose either synchronised or frozen batch norm, not both")
        if self.warmup_epochs and self.lr_schedule == "none":
            raise ConfigError(
                "warm-up epochs need a learning-rate schedule: choose cosine, step or plateau, "
                "or set warm-up epochs to 0")
        if self.warmup_epochs and self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"warm-up epochs ({self.warmup_epochs}) must be fewer than the {self.epochs} "
                "epochs of the run")
        if self.momentum != DEFAULT_MOMENTUM and self.optimizer != "sgd":
            raise ConfigError(
                f"momentum applies to the sgd optimiser, not {self.optimizer}: choose sgd, or "
                f"leave momentum at {DEFAULT_MOMENTUM}")

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
