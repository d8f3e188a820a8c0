"""Device choice, the precision policy, channels-last and worker defaults."""

from __future__ import annotations

import os

import pytest
import torch

from dftui.core import devices
from dftui.core.devices import (
    DeviceError,
    default_channels_last,
    default_workers,
    memory_mb,
    resolve_device,
    resolve_precision,
)

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
MPS = torch.device("mps")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    p = resolve_precision("auto", CPU)
    assert (p.name, p.scaler) == (expected, False)


@pytest.mark.parametrize("bf16_ok, expected", [(True, ("bf16", False)), (False, ("fp16", True))])
def test_auto_on_cuda_bf16_else_fp16_with_scaler(
    monkeypatch: pytest.MonkeyPatch, bf16_ok: bool, expected: tuple[str, bool]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    p = resolve_precision("auto", CUDA)
    assert (p.name, p.scaler) == expected


def test_auto_on_mps_is_fp32() -> None:
    assert resolve_precision("auto", MPS).name == "fp32"


def test_explicit_choices() -> None:
    assert resolve_precision("fp32", CUDA).name == "fp32"
    assert resolve_precision("bf16", CPU).name == "bf16"
    assert resolve_precision("bf16", CPU).autocast_dtype is torch.bfloat16
    assert resolve_precision("fp32", CPU).autocast_dtype is None
    fp16 = resolve_precision("fp16", CUDA)
    assert (fp16.name, fp16.scaler, fp16.autocast_dtype) == ("fp16", True, torch.float16)
    assert resolve_precision("fp16", MPS).scaler is False  # GradScaler is CUDA-only here


def test_fp16_on_cpu_is_refused_with_a_way_out() -> None:
    with pytest.raises(DeviceError, match="bf16 or fp32"):
        resolve_precision("fp16", CPU)


def test_channels_last_where_it_measured_faster() -> None:
    assert default_channels_last(CPU) is True
    assert default_channels_last(CUDA) is True
    assert default_channels_last(MPS) is False


@pytest.mark.parametrize("cores, expected", [(1, 0), (2, 1), (4, 3), (16, 8), (64, 8)])
def test_default_workers_from_cores(monkeypatch: pytest.MonkeyPatch, cores: int, expected: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert default_workers() == expected


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_memory_mb_on_cpu() -> None:
    rss, gpu = memory_mb(CPU)
    assert rss > 10 and gpu is None
