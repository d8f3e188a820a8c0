"""Backbone registry: how to build each detector, its preprocessing and its ImageNet weights.

A backbone is one registry entry: a factory function that builds the network with its
ImageNet head, registered with ``@register_backbone(...)`` and the facts the rest of dftui
needs (input size, mean/std, the head to replace, where its ImageNet weights come from), as
timm registers its models with ``@register_model``. Everything that lists or looks up
backbones (the option table, the CLI's choices, the Setup form, loading weights) reads
``BACKBONES``, so a new backbone is one decorated function here.

State-dict keys are exactly those of the reference scripts' models (torchvision
``mobilenet_v2`` with ``classifier[1]`` replaced, timm ``xception`` -> ``legacy_xception``
with ``fc`` replaced), and the model is built in the same order (network first, then the
new head), so a given seed gives the same initial head as the reference scripts."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dftui.core.advice import Fix
from dftui.core.errors import describe_error, first_line, unexpected_error
from dftui.core.events import DownloadProgress, Emit, LogMessage

if TYPE_CHECKING:
    import torch
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 2
CLASS_NAMES = ("real", "fake")  # index = label: real = 0, fake = 1 (the reference convention)
DOWNLOAD_TIMEOUT_S = 10.0

class WeightsError(RuntimeError):
    """Weights that cannot be used; the message says what is wrong and what to do, and
    ``fixes`` the settings that get out of it (each surface phrases them)."""

    def __init__(self, message: str, fixes: tuple[Fix, ...] = ()) -> None:
        super().__init__(message)
        self.fixes = fixes

# A factory builds the network as pretrained, with its ImageNet (1000-class) head: the
# ImageNet state_dict then fits it key for key, and the 2-class head is put in by build().
Factory = Callable[[], "nn.Module"]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    title: str
    factory: Factory = field(repr=False, compare=False)
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # "bilinear" | "bicubic"
    head: str  # dotted path of the classifier layer replaced by a 2-class one
    feature_dim: int  # the head's input features
    min_size: int
    cam_layer: str  # last convolutional block, for Grad-CAM
    key_marker: str  # a state_dict key only this backbone has
    params_2class: int  # parameter count with the 2-class head
    # The pretrained source: the file's name in $TORCH_HOME/hub/checkpoints/ and where to
    # download it; "" where the backbone has no ImageNet weights (pretrained none or a file).
    weights_file: str = ""
    weights_url: str = ""
    # The start of the download's SHA-256, as torch.hub checks it (torchvision names its
    # files after it); "" where the file name's suffix is not known to be one.
    weights_sha256_prefix: str = ""

    def build(self) -> nn.Module:
        """A randomly initialised model with the 2-class head."""
        from torch import nn

        model = self.factory()
        old = model.get_submodule(self.head)
        if not isinstance(old, nn.Linear) or old.in_features != self.feature_dim:
            raise TypeError(f"backbone {self.name}: {self.head} is not a Linear layer of "
                            f"{self.feature_dim} features")
        model.set_submodule(self.head, nn.Linear(old.in_features, NUM_CLASSES))
        return model

    @property
    def cached_weights(self) -> Path:
        return hub_checkpoints_dir() / self.weights_file

    def preprocessing(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(**info: Any) -> Callable[[Factory], Factory]:
    """Register the decorated factory as a backbone named after it (or ``name=``), with the
    other fields of :class:`BackboneSpec` given here. A name or key marker already taken is
    refused: recorded runs name their backbone, and weights without metadata are matched to
    theirs by the marker, so either shared would make them ambiguous."""

    def register(factory: Factory) -> Factory:
        spec = BackboneSpec(name=info.get("name", factory.__name__), factory=factory,
                            **{k: v for k, v in info.items() if k != "name"})
        if spec.name in BACKBONES:
            raise ValueError(f"backbone {spec.name!r} is registered already")
        shared = [s.name for s in BACKBONES.values() if s.key_marker == spec.key_marker]
        if shared:
            raise ValueError(f"backbone {spec.name!r}: key marker {spec.key_marker!r} is "
                             f"{shared[0]}'s already")
        BACKBONES[spec.name] = spec
        return factory

    return register


def backbone_names() -> tuple[str, ...]:
    return tuple(BACKBONES)


@register_backbone(
    title="MobileNet-v2 (torchvision)",
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    interpolation="bilinear",
    weights_file="mobilenet_v2-b0353104.pth",
    weights_url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    weights_sha256_prefix="b0353104",
    head="classifier.1",
    feature_dim=1280,
    min_size=32,
    cam_layer="features.18",
    key_marker="features.0.0.weight",
    params_2class=2_226_434,
)
def mobilenet_v2() -> nn.Module:
    import torchvision

    return torchvision.models.mobilenet_v2(weights=None)


@register_backbone(
    title="Xception (timm legacy_xception)",
    input_size=299,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bicubic",
    weights_file="xception-43020ad28.pth",
    weights_url=(
        "https://github.com/rwightman/pytorch-image-models/releases/download/"
        "v0.1-cadene/xception-43020ad28.pth"
    ),
    head="fc",
    feature_dim=2048,
    min_size=32,
    cam_layer="act4",
    key_marker="block1.skip.weight",
    params_2class=20_811_050,
)
def xception() -> nn.Module:
    import timm

    return timm.create_model("legacy_xception", pretrained=False)


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise WeightsError(
            f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}"
        ) from None

def hub_checkpoints_dir() -> Path:
    """Where torchvision and timm cache ImageNet weights ($TORCH_HOME/hub/checkpoints)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home).expanduser() / "hub" / "checkpoints"
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return Path(xdg).expanduser() / "torch" / "hub" / "checkpoints"

def offline() -> bool:
    return os.environ.get("DFTUI_OFFLINE", "").lower() in ("1", "true", "yes")

class DownloadMismatch(OSError):
    """The downloaded bytes are not the file expected (truncated, corrupted or tampered)."""


def _download(spec: BackboneSpec, dest: Path, emit: Emit, url: str | None = None) -> None:
    """Fetch the ImageNet weights with a short timeout, reporting progress as events, and
    check their SHA-256 against the start of it that the file name carries (torch.hub's
    check_hash rule) before the file may enter the cache. Anything short of a verified
    file leaves nothing behind: the cache is shared with every other PyTorch project."""
    import hashlib
    import urllib.request  # here, not at module level: it pulls in ssl (~90 ms of start-up)

    from dftui.core.files import atomic_write

    sha = hashlib.sha256()
    done = 0
    total_bytes: int | None = None
    # atomic_write renames the file into the cache only when this block ends without an
    # exception; any raise (including the checks below) deletes the temporary file.
    with atomic_write(dest) as fh, urllib.request.urlopen(
        url or spec.weights_url, timeout=DOWNLOAD_TIMEOUT_S
    ) as resp:
        total = resp.headers.get("Content-Length")
        total_bytes = int(total) if total and total.isdigit() else None
        last_report = -1
        while chunk := resp.read(1 << 20):
            fh.write(chunk)
            sha.update(chunk)
            done += len(chunk)
            if done - last_report >= (4 << 20) or done == total_bytes:
                emit(DownloadProgress(spec.weights_file, done, total_bytes))
                last_report = done
        if total_bytes is not None and done != total_bytes:
            raise DownloadMismatch(f"the download stopped at {done} of {total_bytes} bytes")
        digest = sha.hexdigest()
        prefix = spec.weights_sha256_prefix
        if prefix and not digest.startswith(prefix):
            raise DownloadMismatch(
                f"the downloaded file's SHA-256 starts {digest[: len(prefix)]}, not {prefix} as "
                "its name says (corrupted or tampered with on the way); it was deleted"
            )
    emit(DownloadProgress(spec.weights_file, done, total_bytes))


def resolve_pretrained_file(spec: BackboneSpec, source: str, emit: Emit) -> Path | None:
    """The file to initialise from: None for ``none``, the cache (downloading if needed) for
    ``imagenet``, else a local path. Never falls back silently to random weights."""
    if source == "none":
        return None
    if source != "imagenet":
        path = Path(source).expanduser()
        if not path.exists():  # a FIFO or device is named as such by load_state_dict_file
            raise WeightsError(
                f"pretrained weights file {path} does not exist; give an existing "
                "ImageNet state_dict",
                (Fix("pretrained", "imagenet"), Fix("pretrained", "none")),
            )
        return path
    if not spec.weights_file or not spec.weights_url:
        raise WeightsError(
            f"no ImageNet weights are known for {spec.name}; start from random weights or "
            "give a weights file",
            (Fix("pretrained", "none"), Fix("pretrained")),
        )
    cached = spec.cached_weights
    if cached.is_file():
        return cached
    # The flags or fields for the other ways out are added by each surface (fixes).
    ways_out = (
        f"Copy {spec.weights_file} into {cached.parent} (download it from "
        f"{spec.weights_url} on a machine that is online)."
    )
    no_cache_fixes = (Fix("pretrained"), Fix("pretrained", "none"))
    if offline():
        raise WeightsError(
            f"ImageNet weights for {spec.name} are not cached: {spec.weights_file} was not "
            f"found in {cached.parent}, and downloads are off (DFTUI_OFFLINE). {ways_out}",
            no_cache_fixes,
        )
    emit(LogMessage("info", f"downloading {spec.weights_file} from {spec.weights_url}"))
    try:
        _download(spec, cached, emit)
    except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"ImageNet weights for {spec.name} are not cached ({spec.weights_file} not found "
            f"in {cached.parent}) and could not be downloaded: {reason}. {ways_out}",
            no_cache_fixes,
        ) from None
    return cached

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
PICKLE_PROTO = 0x80  # the legacy format starts with a pickle protocol opcode


def _refused_global(message: str) -> str | None:
    """The code a refused pickle refers to (e.g. ``posix.system``), from torch's message."""
    import re

    match = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"global:? ([\w.]+)", message)
    return match.group(1) if match else None


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a state_dict safely with clear errors. ``weights_only=True``: the unpickler only
    builds tensors and plain containers, so a file that refers to Python code is refused
    and nothing in it is executed."""
    import torch

    path = Path(path).expanduser()
    with open_regular_file(path, "weights file") as fh:
        head = fh.read(4)
        if not head:
            raise WeightsError(f"{path} is empty (0 bytes); it is not a weights file")
        if head != ZIP_MAGIC and head[0] != PICKLE_PROTO:
            kind = "a text file" if _looks_like_text(path) else "not a PyTorch weights file"
            raise WeightsError(
                f"{path} is {kind}, not PyTorch weights (a .pth saved with torch.save); "
                "check the path"
            )
        if head == ZIP_MAGIC:
            check_declared_size(fh, path)
        fh.seek(0)
        obj = _torch_load(fh, path)
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    # Weights saved from DataParallel / DistributedDataParallel carry a "module." prefix.
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def open_regular_file(path: Path, what: str) -> Any:
    """Open ``path`` for reading, only if it is a regular file (``data.open_regular``: a FIFO
    would block forever and a device never end), with the weights' messages."""
    from dftui.core.data import NotARegularFile, open_regular

    try:
        return open_regular(path)
    except FileNotFoundError:
        raise WeightsError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise WeightsError(f"{path} is a folder; give a .pth weights file") from None
    except NotARegularFile as exc:
        raise WeightsError(f"{path} is {exc}; give a .pth weights file") from None
    except OSError as exc:
        raise WeightsError(f"{what} {path} cannot be read: {describe_error(exc)}") from None


def file_kind(mode: int) -> str:
    """'a FIFO (named pipe)', 'a character device', ... for a file that is not regular."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


MAX_INFLATION = 2  # declared bytes per stored byte; torch.save stores tensors uncompressed


def check_declared_size(fh: Any, path: Path) -> None:
    """Refuse a zip whose entries declare far more data than the file holds (a deflate
    bomb: a 1 MB file that inflates to 1 GiB) before anything is inflated."""
    import zipfile

    size = os.fstat(fh.fileno()).st_size
    try:
        fh.seek(0)
        with zipfile.ZipFile(fh) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a readable zip: torch.load gives the damaged-file message
    if declared > MAX_INFLATION * size + (1 << 20):
        raise WeightsError(
            f"{path} declares {declared / 2**20:,.0f} MiB of data in a {size / 2**20:,.1f} MiB "
            "file (a compressed archive, not a torch.save file); refused before inflating it"
        )


def _torch_load(fh: Any, path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        code = _refused_global(str(exc))
        if code:
            raise WeightsError(
                f"{path} was refused: it refers to Python code ({code}) that would run when "
                "it is loaded. Nothing was executed. dftui loads only tensors; re-save the "
                "file as a plain state_dict on a machine you trust"
            ) from None
        raise WeightsError(
            f"{path} was refused: it holds pickled data that is not plain tensors (or it is "
            "damaged). Nothing was executed. dftui loads only state_dicts of tensors"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError) as exc:
        raise WeightsError(
            f"{path} is not a readable PyTorch weights file (truncated or damaged?): {first_line(exc)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged file may fail anywhere in torch.load
        raise WeightsError(
            f"{path} is not a readable PyTorch weights file ({unexpected_error(exc)})"
        ) from None


def _looks_like_text(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            sample = fh.read(512)
        sample.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return True


def check_state_dict(
    spec: BackboneSpec, state: dict[str, Any], path: Path, ignore_head: bool = False
) -> None:
    """Raise WeightsError unless ``state`` has exactly the keys and shapes of ``spec``'s
    2-class model (the head is skipped with ``ignore_head``). The model is built on the
    meta device, so the check allocates no memory for weights."""
    import torch

    with torch.device("meta"):
        own = spec.build().state_dict()
    head = spec.head + "."
    if ignore_head:
        own = {k: v for k, v in own.items() if not k.startswith(head)}
        state = {k: v for k, v in state.items() if not k.startswith(head)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            parts.append(f"{len(mismatched)} of another shape (e.g. {mismatched[0]})")
        raise WeightsError(
            f"{path} does not fit {spec.name}: tensors {'; '.join(parts)}; it was made for a "
            "different model or is incomplete"
        )
    # Values, not only shapes: a tensor of the wrong kind (complex, bool, integer weights)
    # or holding NaN/infinity would load and then give NaN scores, read as a verdict.
    wrong_kind = [
        f"{k} is {state[k].dtype}"
        for k, v in own.items()
        if (v.dtype.is_floating_point and not state[k].dtype.is_floating_point)
        or (not v.dtype.is_floating_point
            and (state[k].dtype.is_floating_point or state[k].is_complex() or state[k].dtype == torch.bool))
    ]
    if wrong_kind:
        raise WeightsError(
            f"{path} holds {len(wrong_kind)} tensor(s) of the wrong type for {spec.name} weights "
            f"(e.g. {wrong_kind[0]}); it is damaged or not a model's weights. Use other weights"
        )
    not_finite = [
        k for k, t in state.items() if t.dtype.is_floating_point and not bool(torch.isfinite(t).all())
    ]
    if not_finite:
        more = f" and {len(not_finite) - 1} other tensor(s)" if len(not_finite) > 1 else ""
        raise WeightsError(
            f"{path} holds values that are not finite (NaN or infinity) in {not_finite[0]}{more}; "
            "it cannot give meaningful scores (a run that diverged, or a damaged file). Use "
            "other weights"
        )


def infer_backbone(state: dict[str, Any]) -> BackboneSpec:
    for spec in BACKBONES.values():
        if spec.key_marker in state:
            return spec
    sample = ", ".join(list(state)[:3])
    raise WeightsError(
        f"these weights match no known backbone (first keys: {sample}); dftui knows "
        f"{', '.join(BACKBONES)}"
    )

def load_pretrained(
    model: nn.Module, spec: BackboneSpec, source: str, emit: Emit = lambda e: None
) -> Path | None:
    """Initialise ``model`` (2-class head) from an ImageNet state_dict with a 1000-class head;
    the head stays freshly initialised. Returns the file used, or None for ``none``."""
    path = resolve_pretrained_file(spec, source, emit)
    if path is None:
        return None
    state = load_state_dict_file(path)
    found = infer_backbone(state).name
    if found != spec.name:
        raise WeightsError(
            f"{path} holds weights for {found}, not {spec.name}; choose the {found} backbone "
            f"or give a {spec.name} file"
        )
    check_state_dict(spec, state, path, ignore_head=True)
    head = spec.head + "."
    body = {k: v for k, v in state.items() if not k.startswith(head)}
    missing, unexpected = model.load_state_dict(body, strict=False)
    missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not fit {spec.name}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return path

def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

