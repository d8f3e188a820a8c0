"""Quitting: the dashboard process ends at once after a clean shutdown (no interpreter
teardown of torch), with the terminal restored, the exit code kept and nothing unsaved."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import struct
import sys
import time
from pathlib import Path

import pytest

from dftui.ui import launch as launch_mod
from dftui.ui.app import DftuiApp


def test_leave_now_flushes_then_exits_with_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[object] = []

    class Stream:
        def __init__(self, name: str) -> None:
            self.name = name

        def flush(self) -> None:
            events.append(f"flush {self.name}")

    def fake_exit(code: int) -> None:
        events.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(sys, "stdout", Stream("stdout"))
    monkeypatch.setattr(sys, "stderr", Stream("stderr"))
    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setattr(launch_mod.logging, "shutdown", lambda: events.append("logging"))
    with pytest.raises(SystemExit):
        launch_mod.leave_now(3)
    assert events == ["flush stdout", "flush stderr", "logging", 3]


async def test_a_setup_choice_typed_just_before_quitting_is_saved(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = tmp_path / "settings.json"
    app = DftuiApp(initial="setup", load_torch=False, settings_path=settings)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        app.screen.query_one("#epochs").value = "7"  # saved a second later, normally
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert json.loads(settings.read_text())["setup"]["epochs"] == "7"


def test_the_dashboard_process_quits_at_once_with_the_terminal_restored(tmp_path: Path) -> None:
    import fcntl
    import termios

    env = {**os.environ, "DFTUI_HOME": str(tmp_path / "home"), "TERM": "xterm-256color",
           "DFTUI_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    (tmp_path / "processed_data" / "train_cropped").mkdir(parents=True)  # no torch needed
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(tmp_path)
        os.execvpe(sys.executable, [sys.executable, "-m", "dftui"], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    seen = b""
    status = None
    sent = False
    deadline = time.monotonic() + 60
    try:
        while status is None and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    pass
            if not sent and b"f7 Evaluate" in seen:
                time.sleep(0.5)
                os.write(fd, b"\x1b")  # the first-run dialog, if any, closes
                time.sleep(0.3)
                os.write(fd, b"\x11")  # ctrl+q
                sent = True
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert sent, seen[-2000:]
    assert status is not None and os.waitstatus_to_exitcode(status) == 0, seen[-2000:]
    assert b"\x1b[?1049l" in seen  # the alternate screen was left: the terminal is restored


async def test_the_quit_question_changes_when_the_run_ends_while_it_is_open(tmp_path: Path) -> None:
    from textual.widgets import Static

    from dftui.ui.screens.confirm import ConfirmScreen

    running = [True]
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(100, 30)) as pilot:
        dialog = ConfirmScreen("A training run is in progress.\nStop it and quit?", "Stop and quit",
                               "Keep training", still_asks=lambda: running[0],
                               otherwise=("The training run has ended.\nQuit dftui?", "Quit", "Stay"))
        await app.push_screen(dialog)
        await pilot.pause(0.6)
        assert "in progress" in str(dialog.query_one("#confirm-question", Static).render())
        running[0] = False  # the run finishes while the question is open
        await pilot.pause(0.8)
        assert "has ended" in str(dialog.query_one("#confirm-question", Static).render())
        assert "Quit (y)" in str(dialog.query_one("#yes").label)
