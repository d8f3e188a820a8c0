"""Background runs in the dashboard: a run started in the background outlives the app that
started it; a new app announces it, attaches with one key and shows its whole history (from
epoch 1) and its end; `s` stops it gracefully. A hang-up (SIGHUP) to a dashboard training in
its own thread leaves the run "interrupted" (resumable), never "running" with a dead pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dftui.core.events import RunFinished
from dftui.core.runs import read_run
from dftui.ui.app import DftuiApp
from dftui.ui.screens.runs import RunsScreen, status_cell
from dftui.ui.screens.training import TrainingScreen
from dftui.ui.widgets.run_view import RunView
from tests.ui.helpers import one_thread, run_config, wait_for


@pytest.mark.slow
async def test_background_run_outlives_the_app_and_is_found_again(
        dataset, standin_weights, tmp_path: Path) -> None:
    one_thread()
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        config = run_config(dataset, standin_weights, tmp_path, epochs=30)
        assert await app.start_training(config, detach=True)
        screen = app.screen
        assert isinstance(screen, TrainingScreen) and screen.background
        await wait_for(pilot, lambda: len(screen.query_one(RunView).rows) >= 1, timeout=120,
                       what="epoch 1 of the background run")
        run_dir = screen.run_dir
        assert run_dir is not None
        await pilot.press("ctrl+q")  # no question: a background run is not stopped by quitting
    assert "goes on in the background" in str(app._exit_renderables) or app.return_code == 0
    run = read_run(run_dir)
    assert run is not None and run.live and run.detached and run.pid != os.getpid()

    app2 = DftuiApp(load_torch=False, announce_runs=True)  # as `dftui` starts it
    async with app2.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: type(app2.screen).__name__ == "ConfirmScreen",
                       what="the announcement of the run in progress")
        await pilot.press("y")  # one key attaches
        await wait_for(pilot, lambda: isinstance(app2.screen, TrainingScreen), what="Training")
        training = app2.screen
        view = training.query_one(RunView)
        await wait_for(pilot, lambda: len(view.rows) >= 2, timeout=120, what="epoch 2")
        # The whole history, from epoch 1, though this app attached later.
        assert min(view.rows) == 1
        assert view.batch_x and min(view.batch_x) < 1.0
        await pilot.press("s")  # stop it gracefully
        await wait_for(pilot, lambda: training.final is not None, timeout=120, what="the stop")
        assert isinstance(training.final, RunFinished) and training.final.status == "stopped"
        assert sorted(view.rows) == list(range(1, training.final.epochs_completed + 1))
        # The Runs screen lists it, ended, with no live mark.
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app2.screen, RunsScreen), what="Runs")
        assert "●" not in str(status_cell(read_run(run_dir)))  # type: ignore[arg-type]
    run = read_run(run_dir)
    assert run is not None and run.status == "stopped" and run.resumable


def test_live_runs_are_marked(tmp_path: Path) -> None:
    import socket

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "events.jsonl").write_text("{}\n")
    info = {"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
            "detached": True, "run_id": "r"}
    (run_dir / "run.json").write_text(json.dumps(info))
    assert str(status_cell(read_run(run_dir))) == "● running (bg)"  # type: ignore[arg-type]
    (run_dir / "run.json").write_text(json.dumps({**info, "host": "gpu-box-7"}))
    assert str(status_cell(read_run(run_dir))) == "● running on gpu-box-7"  # type: ignore[arg-type]


SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dftui.core.config import TrainConfig
    from dftui.ui.app import DftuiApp
    from dftui.ui.launch import finish_in_process_run

    out = Path(sys.argv[1])
    config = TrainConfig.from_dict(__import__("json").loads(sys.argv[2]))

    class App(DftuiApp):
        def on_mount(self):
            super().on_mount()
            self.call_later(self.go)

        async def go(self):
            await self.start_training(config, detach=False)
            self.set_interval(0.2, self.check)

        def check(self):
            screen = self.get_open_screen("training")
            if screen.run_dir is not None and screen.query_one("RunView").rows:
                out.write_text(str(screen.run_dir))

    app = App(load_torch=False)
    try:
        app.run(headless=True)
    finally:
        finish_in_process_run(app)
""")


@pytest.mark.slow
def test_sighup_to_the_dashboard_leaves_its_run_interrupted(dataset, standin_weights,
                                                           tmp_path: Path) -> None:
    config = run_config(dataset, standin_weights, tmp_path, epochs=40)
    marker = tmp_path / "run_dir.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(marker), json.dumps(config.to_dict())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 150
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not reach epoch 1"
            time.sleep(0.2)
        run_dir = Path(marker.read_text())
        proc.send_signal(signal.SIGHUP)  # the terminal (SSH connection) is gone
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err, err
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted", info
    run = read_run(run_dir)
    assert run is not None and run.status == "interrupted" and run.resumable
