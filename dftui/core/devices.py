"""Device choice (CUDA, then Apple MPS, then CPU) and the precision policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dftui.core.advice import Fix
from dftui.core.config import PRECISION_CHOICES

if TYPE_CHECKING:
    import torch


class DeviceError(RuntimeError):
    """A requested device that this machine does not have; ``fixes`` the settings out of it
    (each surface phrases them: a flag on the command line, the field in the dashboard)."""

    def __init__(self, message: str, fixes: tuple[Fix, ...] = ()) -> None:
        super().__init__(message)
        self.fixes = fixes


# The devices every machine can fall back to.
_FALLBACK_FIXES = (Fix("device", "auto"), Fix("device", "cpu"))


@dataclass(frozen=True)
class DeviceInfo:
    id: str  # "cuda:0", "mps", "cpu"
    label: str  # human-readable, with the GPU name


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32" | "bf16" | "fp16"
    scaler: bool  # fp16 training needs a gradient scaler

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)


def list_devices() -> list[DeviceInfo]:
    """Only what exists on this machine, in preference order."""
    import torch

    found = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            found.append(DeviceInfo(f"cuda:{i}", f"cuda:{i} {torch.cuda.get_device_name(i)}"))
    if torch.backends.mps.is_available():
        found.append(DeviceInfo("mps", "mps (Apple GPU)"))
    found.append(DeviceInfo("cpu", "cpu"))
    return found


def resolve_device(requested: str = "auto") -> torch.device:
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {requested!r} was asked for but no CUDA GPU is available here",
                _FALLBACK_FIXES,
            )
        dev = torch.device(requested)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {requested!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        return dev
    if requested == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(
                "device 'mps' was asked for but Apple MPS is not available here",
                _FALLBACK_FIXES,
            )
        return torch.device("mps")
    if requested == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps")


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return "CPU"


def cpu_has_native_bf16() -> bool:
    """AMX or AVX-512 BF16: bf16 matrix work runs natively and faster than fp32."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


PRECISION_ENV = "DFTUI_PRECISION"


def precision_from_env() -> str:
    """What ``DFTUI_PRECISION`` asks "auto" to mean: unset or empty is "auto". It lets a whole
    test suite (or every run on a machine) take the other precision's code path on purpose,
    because the automatic choice depends on the CPU the suite happens to run on."""
    import os

    value = os.environ.get(PRECISION_ENV, "").strip().lower()
    if not value:
        return "auto"
    if value not in PRECISION_CHOICES:
        raise DeviceError(
            f"environment variable {PRECISION_ENV}={os.environ[PRECISION_ENV]!r} is not a "
            f"precision; set it to one of {', '.join(PRECISION_CHOICES)}, or unset it"
        )
    return value


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """auto: ``DFTUI_PRECISION`` when set, else bf16 on CUDA GPUs that support it, else fp16
    with a scaler; bf16 on CPUs with native bf16, else fp32; fp32 on MPS (its autocast has not
    been measured here). An explicit fp32/bf16/fp16 wins over the environment."""
    import torch

    forced = requested == "auto" and precision_from_env() != "auto"
    if forced:
        requested = precision_from_env()
    if requested == "fp32":
        return Precision("fp32", scaler=False)
    if requested == "bf16":
        return Precision("bf16", scaler=False)
    if requested == "fp16":
        if device.type == "cpu":
            where = f" (from {PRECISION_ENV})" if forced else ""
            raise DeviceError(
                f"fp16{where} is not supported for training on the CPU; use bf16 or fp32"
            )
        return Precision("fp16", scaler=device.type == "cuda")
    if requested != "auto":
        raise DeviceError(f"unknown precision {requested!r}; use {', '.join(PRECISION_CHOICES)}")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", scaler=False)
        return Precision("fp16", scaler=True)
    if device.type == "cpu" and cpu_has_native_bf16():
        return Precision("bf16", scaler=False)
    return Precision("fp32", scaler=False)


def default_channels_last(device: torch.device) -> bool:
    # Measured faster for both backbones on CPU (oneDNN) and on CUDA with tensor cores.
    return device.type in ("cpu", "cuda")


def memory_mb(device: torch.device | None = None) -> tuple[float, float | None]:
    """(process RSS, GPU memory allocated on CUDA) in MiB."""
    import psutil

    rss = psutil.Process().memory_info().rss / 2**20
    gpu = None
    if device is not None and device.type == "cuda":
        import torch

        gpu = torch.cuda.memory_allocated(device) / 2**20
    return rss, gpu
