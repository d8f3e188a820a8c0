"""Dashboard tests: the hardware panel samples the real machine (CPU %, memory) while a run
goes; in snapshots that would change from run to run, so it is off unless a test turns it on
(tests/ui/test_hardware_panel.py sets its own interval and a fake sampler)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_hardware_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    from dftui.ui.widgets import hardware

    monkeypatch.setattr(hardware, "SAMPLE_EVERY_S", 3600.0)
