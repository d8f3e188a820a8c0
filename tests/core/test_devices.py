"""Device choice, the precision policy, channels-last and worker defaults."""

from __future__ import annotations

import os

import pytest
import torch

from dftui.core import devices
from dftui.core.devices import (
    DeviceError,
    default_channels_last,
    memory_mb,
    resolve_device,
    resolve_precision,
)
from dftui.core.machine import default_workers

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
MPS = torch.device("mps")


@pytest.fixture(autouse=True)
def no_forced_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the policy itself, so a DFTUI_PRECISION set for the whole suite
    must not decide what "auto" means here; the tests that want it set it."""
    monkeypatch.delenv("DFTUI_PRECISION", raising=False)


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


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("forced", ["fp32", "bf16", " BF16 "])
def test_environment_forces_what_auto_means_whatever_the_cpu(
    monkeypatch: pytest.MonkeyPatch, native: bool, forced: str
) -> None:
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setenv("DFTUI_PRECISION", forced)
    assert resolve_precision("auto", CPU).name == forced.strip().lower()
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", CUDA).name == forced.strip().lower()
    assert resolve_precision("auto", MPS).name == forced.strip().lower()


@pytest.mark.parametrize("value", ["", "auto", "  "])
def test_environment_auto_or_empty_keeps_the_policy(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv("DFTUI_PRECISION", value)
    assert resolve_precision("auto", CPU).name == "bf16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", CPU).name == "fp32"


def test_explicit_precision_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFTUI_PRECISION", "bf16")
    assert resolve_precision("fp32", CPU).name == "fp32"
    monkeypatch.setenv("DFTUI_PRECISION", "fp32")
    assert resolve_precision("bf16", CPU).name == "bf16"
    monkeypatch.setenv("DFTUI_PRECISION", "nonsense")  # not even read when not needed
    assert resolve_precision("fp32", CPU).name == "fp32"


def test_bad_environment_value_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFTUI_PRECISION", "float32")
    with pytest.raises(DeviceError) as err:
        resolve_precision("auto", CPU)
    message = str(err.value)
    assert "DFTUI_PRECISION='float32'" in message and "fp32, bf16" in message
    assert "\n" not in message and "unset it" in message
    monkeypatch.setenv("DFTUI_PRECISION", "fp16")
    with pytest.raises(DeviceError, match="fp16 \\(from DFTUI_PRECISION\\).*bf16 or fp32"):
        resolve_precision("auto", CPU)
    assert resolve_precision("auto", CUDA).name == "fp16"


def test_unknown_requested_precision_is_refused() -> None:
    with pytest.raises(DeviceError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", CPU)


def test_channels_last_where_it_measured_faster() -> None:
    assert default_channels_last(CPU) is True
    assert default_channels_last(CUDA) is True
    assert default_channels_last(MPS) is False


@pytest.mark.parametrize("cores, loaders, croppers", [
    (1, 0, 1), (2, 1, 2), (4, 3, 4), (16, 8, 8), (64, 8, 8),
])
def test_default_workers_from_usable_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, loaders: int, croppers: int
) -> None:
    # The cores this process may use (taskset, a container), not the host's count.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    assert default_workers() == loaders  # training: one core stays with the loop
    assert default_workers(spare=0) == croppers  # prepare: the pool does all the work


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    # As on a machine without a GPU, whatever this one has.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")


def test_memory_mb_on_cpu() -> None:
    rss, gpu = memory_mb(CPU)
    assert rss > 10 and gpu is None
