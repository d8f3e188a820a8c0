"""What the machine does for a run: CPU and memory of the run's process (with its data-loader
workers), and on NVIDIA GPUs their utilisation, memory and temperature.

psutil (a dependency) gives the process figures. GPU figures come from NVIDIA's NVML through
``nvidia-ml-py`` (imported as ``pynvml``) when it is installed and a driver answers: it is
optional, never required (``pip install dftui[gpu]``); without it the GPU part is simply
absent, with the reason kept in ``gpu_note``.

A sample costs a few system calls (no sleeping: CPU % is measured between two samples), so
a caller can take one every second or two."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

HISTORY = 40  # samples kept for the sparklines


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    util_percent: float | None
    mem_used_mb: float | None
    mem_total_mb: float | None
    temp_c: float | None


@dataclass(frozen=True)
class HardwareSample:
    pid: int
    alive: bool
    cpu_percent: float | None  # of one core: 250 = two and a half cores busy
    rss_mb: float | None
    gpus: tuple[GpuSample, ...] = ()


class NvmlReader:
    """GPU figures through NVML; ``available`` is False (and ``note`` says why) when
    nvidia-ml-py is not installed or no NVIDIA driver answers."""

    def __init__(self) -> None:
        self.available = False
        self.note = ""
        self._nvml: Any = None
        self._handles: list[tuple[int, Any, str]] = []
        try:
            import pynvml  # nvidia-ml-py
        except ImportError:
            self.note = "GPU figures need nvidia-ml-py (pip install nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(handle)
                if isinstance(name, bytes):  # older nvidia-ml-py
                    name = name.decode("utf-8", "replace")
                self._handles.append((i, handle, str(name)))
        except Exception as exc:  # noqa: BLE001 - NVMLError and its many subclasses, OSError
            self.note = f"no NVIDIA GPU figures ({exc})"
            return
        self._nvml = pynvml
        self.available = bool(self._handles)
        if not self.available:
            self.note = "NVML found no GPU"

    def sample(self) -> tuple[GpuSample, ...]:
        if not self.available:
            return ()
        nvml = self._nvml
        out = []
        for index, handle, name in self._handles:
            out.append(GpuSample(
                index, name,
                _try(lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)),
                _try(lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20),
                _try(lambda: nvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20),
                _try(lambda: float(nvml.nvmlDeviceGetTemperature(handle,
                                                                 nvml.NVML_TEMPERATURE_GPU))),
            ))
        return tuple(out)


def _try(read: Any) -> Any:
    """One NVML figure, None when this GPU does not report it (e.g. no temperature sensor)."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return None


class ProcessReader:
    """CPU and resident memory of a process and its children (data-loader workers). The
    Process objects are kept between samples: psutil measures CPU % since the last call."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._psutil = psutil
        self.pid = pid
        self._procs: dict[int, Any] = {}

    def sample(self) -> tuple[bool, float | None, float | None]:
        psutil = self._psutil
        try:
            root = self._procs.get(self.pid) or psutil.Process(self.pid)
            procs = [root] + root.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False, None, None
        kept: dict[int, Any] = {}
        cpu = 0.0
        rss = 0
        for proc in procs:
            proc = self._procs.get(proc.pid, proc)  # the same object: its CPU baseline
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(interval=None)
                    rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            kept[proc.pid] = proc
        self._procs = kept
        return True, cpu, rss / 2**20


@dataclass
class HardwareSampler:
    """Samples one run's process (``pid``) and the GPUs, keeping a short history."""

    pid: int = field(default_factory=os.getpid)
    gpu: bool = True  # False: do not even try NVML (CPU-only runs)

    def __post_init__(self) -> None:
        self._process = ProcessReader(self.pid)
        self._nvml: NvmlReader | None = NvmlReader() if self.gpu else None
        self.history: dict[str, deque[float]] = {}

    @property
    def gpu_note(self) -> str:
        return self._nvml.note if self._nvml is not None else ""

    def sample(self) -> HardwareSample:
        alive, cpu, rss = self._process.sample()
        gpus = self._nvml.sample() if self._nvml is not None else ()
        result = HardwareSample(self.pid, alive, cpu, rss, gpus)
        self.remember(result)
        return result

    def remember(self, s: HardwareSample) -> None:
        values: dict[str, float | None] = {"cpu": s.cpu_percent, "rss": s.rss_mb}
        for g in s.gpus:
            values[f"gpu{g.index}.util"] = g.util_percent
            values[f"gpu{g.index}.mem"] = g.mem_used_mb
        for key, value in values.items():
            if value is not None:
                self.history.setdefault(key, deque(maxlen=HISTORY)).append(value)
