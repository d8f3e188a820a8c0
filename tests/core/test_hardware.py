"""Hardware sampling: the run's process (psutil, children included) and NVIDIA GPUs through
nvidia-ml-py when importable (a fake pynvml module here: no GPU on the test machines), and
nothing when it is absent or no driver answers."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from dftui.core.hardware import HardwareSampler, NvmlReader


def test_process_figures_include_children_and_a_gone_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = HardwareSampler(os.getpid(), gpu=False)
        first = sampler.sample()
        assert first.alive and first.rss_mb > 10 and first.cpu_percent is not None
        sum(range(2_000_000))  # some CPU between two samples
        second = sampler.sample()
        assert second.cpu_percent >= 0
        assert len(sampler.history["cpu"]) == 2 and len(sampler.history["rss"]) == 2
        assert child.pid in sampler._process._procs  # the child is measured too
    finally:
        child.kill()
        child.wait()
    gone = HardwareSampler(child.pid, gpu=False).sample()
    assert not gone.alive and gone.cpu_percent is None


def _fake_pynvml(fail_init: bool = False) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init() -> None:
        if fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    class Util:
        gpu = 87

    class Mem:
        used = 10 * 2**30
        total = 80 * 2**30

    def temperature(handle, sensor):
        if handle == 1:
            raise NVMLError("Not Supported")
        return 64

    nvml.NVMLError = NVMLError
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.nvmlInit = init
    nvml.nvmlDeviceGetCount = lambda: 2
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H200" if h == 0 else "NVIDIA H200"
    nvml.nvmlDeviceGetUtilizationRates = lambda h: Util()
    nvml.nvmlDeviceGetMemoryInfo = lambda h: Mem()
    nvml.nvmlDeviceGetTemperature = temperature
    return nvml


def test_gpu_figures_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    sampler = HardwareSampler(os.getpid())
    sample = sampler.sample()
    assert [g.name for g in sample.gpus] == ["NVIDIA H200", "NVIDIA H200"]
    g0, g1 = sample.gpus
    assert (g0.util_percent, g0.mem_used_mb, g0.mem_total_mb, g0.temp_c) == (87, 10240, 81920, 64)
    assert g1.temp_c is None  # a figure the GPU does not report is left out, not an error
    assert list(sampler.history["gpu0.util"]) == [87]


def test_no_nvml_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    reader = NvmlReader()
    assert not reader.available and "nvidia-ml-py" in reader.note and reader.sample() == ()
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail_init=True))  # no driver
    reader = NvmlReader()
    assert not reader.available and "Not Found" in reader.note
    assert HardwareSampler(os.getpid()).sample().gpus == ()
