"""Issue 16: the engine's messages are shared by the CLI and the dashboard, so they carry
their ways out as settings (fixes) and each surface phrases them: flags on the command line,
fields and keys in the dashboard, never a flag there."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftui.cli import advice as cli_advice
from dftui.core.advice import SETTINGS, Fix, decode_all, encode_all
from dftui.core.demo import DemoDataError, make_demo_data
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
