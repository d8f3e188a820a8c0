"""What machine this is, in the terms that change dftui's behaviour: the CPU (its native bf16
decides the automatic precision), cores, accelerators, torch and Python. CI prints it before
the tests and the test suite puts it in its header, so a red run can be read."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name where the system says it (Linux /proc/cpuinfo, macOS
    sysctl), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            # x86 says "model name"; some ARM kernels only "Hardware" or "CPU part".
            if key.strip() in ("model name", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                 text=True, timeout=5, check=False)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> str:
    """The instruction-set extensions that decide the CPU's bf16 speed (Linux only; empty
    where /proc/cpuinfo does not list them)."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "bf16", "sve")
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                have = set(value.split())
                return " ".join(flag for flag in wanted if flag in have) or "none of " + ", ".join(wanted)
    except OSError:
        pass
    return ""


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset limits them), not the host's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


MAX_DEFAULT_WORKERS = 8  # beyond this, more workers mostly add memory and start-up time


def default_workers(spare: int = 1) -> int:
    """Worker processes or threads when the user chose none: one per usable core, leaving
    ``spare`` cores to the process's own loop, at most MAX_DEFAULT_WORKERS.

    Training leaves one (its loop feeds the model while loaders decode; on one core that
    means no loader processes at all, which beats two processes fighting for it); face
    cropping leaves none (its main thread only collects results)."""
    return max(0, min(MAX_DEFAULT_WORKERS, usable_cores() - spare))


def describe() -> list[tuple[str, str]]:
    """(name, value) rows: CPU, cores, native bf16, the precision "auto" resolves to on the
    CPU (after DFTUI_PRECISION), accelerators, torch, Python, OS."""
    import torch

    from dftui.core.devices import (
        PRECISION_ENV,
        DeviceError,
        cpu_has_native_bf16,
        resolve_precision,
    )

    try:
        auto = resolve_precision("auto", torch.device("cpu")).name
    except DeviceError as exc:
        auto = f"error: {exc}"
    forced = os.environ.get(PRECISION_ENV, "")
    rows = [
        ("cpu", f"{cpu_model()} ({platform.machine()})"),
        ("cores", str(usable_cores())),
        *([("cpu flags", flags)] if (flags := cpu_flags()) else []),
        ("native bf16", "yes" if cpu_has_native_bf16() else "no"),
        ("precision auto on cpu", auto + (f" ({PRECISION_ENV}={forced})" if forced else "")),
    ]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(("cuda", names))
    if torch.backends.mps.is_available():
        rows.append(("mps", "yes"))
    rows += [
        ("torch", torch.__version__),
        ("python", platform.python_version()),
        ("os", platform.platform()),
    ]
    return rows


def describe_line() -> str:
    return "; ".join(f"{name}: {value}" for name, value in describe())


def describe_text() -> str:
    rows = describe()
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"  {name + ':':<{width}}{value}" for name, value in rows)


def benchmark_line() -> str:
    """One line for benchmark output: the figures move with the CPU and with other load."""
    from dftui.core.devices import cpu_has_native_bf16

    bf16 = "yes" if cpu_has_native_bf16() else "no"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_model()}, {usable_cores()} cores, native bf16 {bf16}, "
            f"load average {load:.1f} (a shared machine moves these figures)")
