"""Issue 16: the engine's messages are shared by the CLI and the dashboard, so they carry
their ways out as settings (fixes) and each surface phrases them: flags on the command line,
fields and keys in the dashboard, never a flag there."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dftui.cli import advice as cli_advice
from dftui.core.advice import SETTINGS, Fix, decode_all, encode_all, fixes_of
from dftui.core.demo import DemoDataError, make_demo_data
from dftui.core.devices import DeviceError, resolve_device
from dftui.core.prepare import (
    PrepareConfig,
    PrepareError,
    PrepareFailed,
    _check_out,
    prepare_openforensics,
)
from dftui.core.train import _NOT_FINITE_FIXES, RunAborted, _Trainer
from dftui.ui import advice as ui_advice


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_setting_is_phrased_by_both_surfaces(setting: str) -> None:
    for fix in (Fix(setting), Fix(setting, "none")):
        assert cli_advice.phrase(fix).startswith("--")
        ui = ui_advice.phrase(fix)
        assert ui and "--" not in ui


def test_fixes_survive_the_event_log_and_unknown_ones_are_dropped() -> None:
    fixes = [Fix("pretrained"), Fix("pretrained", "none"), Fix("overwrite")]
    assert decode_all(encode_all(fixes)) == fixes
    assert decode_all(["from_the_future=1", "overwrite"]) == [Fix("overwrite")]


def test_demo_data_refusal_is_phrased_per_surface(tmp_path: Path) -> None:
    make_demo_data(tmp_path, n=2, size=16)
    with pytest.raises(DemoDataError) as info:
        make_demo_data(tmp_path, n=2, size=16)
    assert "--" not in str(info.value)
    cli = cli_advice.with_advice(str(info.value), info.value.fixes)
    ui = ui_advice.with_advice(str(info.value), info.value.fixes)
    assert "--out DIR" in cli and "--force" in cli
    assert "Output folder (Prepare)" in ui and "ctrl+d" in ui and "--" not in ui


def _both(exc: BaseException) -> tuple[str, str]:
    """The message as the CLI and as the dashboard word it; the core's own text has no flag."""
    assert "--" not in str(exc), str(exc)
    fixes = fixes_of(exc)
    assert fixes, "the message carries its ways out"
    return cli_advice.with_advice(str(exc), fixes), ui_advice.with_advice(str(exc), fixes)


def test_a_missing_device_is_phrased_per_surface(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda")
    cli, ui = _both(info.value)
    assert "--device auto" in cli and "--device cpu" in cli
    assert "set Device (Setup) to auto" in ui and "set Device (Setup) to cpu" in ui and "--" not in ui


def test_a_distributed_device_clash_is_phrased_per_surface() -> None:
    trainer = SimpleNamespace(config=SimpleNamespace(device="cpu"),
                              dist=SimpleNamespace(enabled=True, backend="nccl"))
    with pytest.raises(DeviceError) as info:
        _Trainer._pick_device(trainer)  # type: ignore[arg-type]
    cli, ui = _both(info.value)
    assert "--device cuda" in cli
    assert "set Device (Setup) to cuda" in ui and "--" not in ui


def test_an_unwritable_prepare_output_is_phrased_per_surface(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PrepareError) as info:
        _check_out(blocker / "out")
    cli, ui = _both(info.value)
    assert "--out DIR" in cli
    assert "Output folder (Prepare)" in ui and "--" not in ui


def test_a_failed_prepare_event_keeps_its_fixes(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    root = tmp_path / "root"
    root.mkdir()
    (root / "Train_poly.json").write_text("{}")
    events: list[object] = []
    final = prepare_openforensics(PrepareConfig(root=root, out=blocker / "out"), events.append)
    assert isinstance(final, PrepareFailed) and "--" not in final.message, final
    assert decode_all(final.fixes) == [Fix("data_out")]


def test_a_loss_that_is_not_finite_is_phrased_per_surface() -> None:
    exc = RunAborted("the training loss became nan", 1, 1, fixes=_NOT_FINITE_FIXES)
    cli, ui = _both(exc)
    assert "--lr RATE" in cli and "--precision fp32" in cli
    assert "Learning rate (Setup)" in ui and "set Precision (Setup) to fp32" in ui and "--" not in ui
