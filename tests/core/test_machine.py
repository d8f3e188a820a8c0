"""The machine description CI prints before the tests and the suite puts in its header."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dftui.core import devices, machine


def test_describe_names_what_decides_the_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DFTUI_PRECISION", raising=False)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    rows = dict(machine.describe())
    assert {"cpu", "cores", "native bf16", "precision auto on cpu", "torch", "python"} <= set(rows)
    assert rows["native bf16"] == "no" and rows["precision auto on cpu"] == "fp32"
    assert int(rows["cores"]) >= 1 and rows["cpu"].strip()

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv("DFTUI_PRECISION", "fp32")
    rows = dict(machine.describe())
    assert rows["native bf16"] == "yes"
    assert rows["precision auto on cpu"] == "fp32 (DFTUI_PRECISION=fp32)"


def test_a_bad_environment_value_is_shown_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFTUI_PRECISION", "half")
    text = machine.describe_text()
    assert "error: environment variable DFTUI_PRECISION='half'" in text


def test_cpu_model_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS and some containers have no /proc/cpuinfo: still a name, never an exception."""
    real_read = machine.Path.read_text

    def no_proc(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(self).startswith("/proc/"):
            raise FileNotFoundError(self)
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(machine.Path, "read_text", no_proc)
    assert machine.cpu_model().strip()
    assert machine.cpu_flags() == ""


def test_ci_prints_the_machine_before_the_readme_test_command() -> None:
    from pathlib import Path

    script = (Path(__file__).parents[2] / ".ci" / "run").read_text()
    lines = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert lines[-1] == "python -m pytest -q"  # the README's command, exactly, last
    assert "describe_text" in lines[-2]
    first = next(i for i, line in enumerate(lines) if "cpu_model" in line)
    assert first < next(i for i, line in enumerate(lines) if "pip install" in line)
    # The pre-install line needs only the standard library.
    code = "import sys; from dftui.core.machine import cpu_model, usable_cores; " \
           "assert 'torch' not in sys.modules; print(cpu_model(), usable_cores())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
