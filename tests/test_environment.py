"""The suite itself does not depend on the machine's user: its home, data and config
folders are the session's own, even after a test undoes its monkeypatching."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_home_is_the_sessions_even_after_monkeypatch_undo(
    monkeypatch: pytest.MonkeyPatch, session_home: Path
) -> None:
    monkeypatch.undo()  # drops isolated_home's DFTUI_HOME: the session's is still there
    from dftui.core.runs import config_home, data_home

    assert Path.home() == session_home
    assert data_home().is_relative_to(session_home)
    assert config_home().is_relative_to(session_home)
    assert Path(os.environ["TORCH_HOME"]).is_relative_to(session_home)
    assert os.environ["DFTUI_OFFLINE"] == "1"


def test_terminal_and_time_zone_settings_of_the_machine_do_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.undo()
    assert "NO_COLOR" not in os.environ
    assert os.environ["TZ"] == "UTC" and time.strftime("%z") == "+0000"
