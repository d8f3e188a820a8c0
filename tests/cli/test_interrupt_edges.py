"""Issue 12, Ctrl+C edge cases of `dftui train` (subprocesses, as in test_interrupt.py): during
the folder scan, twice, during the last epoch's save, and twice inside a save. The exit status
is 130 for an interruption, a complete run reads "finished", and `--resume` is advised only
when there is a checkpoint to resume."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.cli.test_interrupt import TIMEOUT, Proc, _train_args

# Test-only hooks: a slow folder walk (the scan) and slow fsyncs (the saves), each logged
# with what it works on, so a signal can be sent while the process is inside them.
SLOW_HOOKS = textwrap.dedent(
    """
    import os, time
    _log = os.environ["DFTUI_TEST_LOG"]
    _walk, _fsync = os.walk, os.fsync

    def _note(text):
        with open(_log, "a") as fh:
            fh.write(text + "\\n")

    def walk(top, *args, **kwargs):
        for item in _walk(top, *args, **kwargs):
            _note("walk " + str(item[0]))
            time.sleep(float(os.environ.get("DFTUI_TEST_WALK_S", "0")))
            yield item

    def fsync(fd):
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            name = "?"
        _note("save " + name)
        if os.environ.get("DFTUI_TEST_SAVE_MATCH", "?") in name:
            time.sleep(float(os.environ.get("DFTUI_TEST_SAVE_S", "0")))
        return _fsync(fd)

    os.walk, os.fsync = walk, fsync
    """
)

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc"),
    pytest.mark.slow,  # each starts `dftui train` (torch import) on a busy machine: ~20 s
]


@pytest.fixture
def hooked(tmp_path: Path) -> tuple[dict[str, str], Path]:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_HOOKS)
    log = tmp_path / "hooks.log"
    log.write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), env.get("PYTHONPATH", "")])
    env["DFTUI_TEST_LOG"] = str(log)
    return env, log


def wait_log(proc: Proc, log: Path, text: str) -> None:
    end = time.monotonic() + TIMEOUT
    while text not in log.read_text():
        assert proc.p.poll() is None, f"ended before {text!r}: {proc.err}"
        assert time.monotonic() < end, f"never saw {text!r} in the hook log"
        time.sleep(0.005)


def runs_made() -> list[Path]:
    root = Path(os.environ["DFTUI_HOME"]) / "runs"
    return sorted(root.iterdir()) if root.is_dir() else []


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_during_the_scan_stops_at_once_and_advises_no_resume(
    dataset, tmp_path, hooked, presses: int
) -> None:
    env, log = hooked
    env["DFTUI_TEST_WALK_S"] = "5"  # each of the scan's 4 folders takes 5 s
    proc = Proc(_train_args(dataset, tmp_path / "w", epochs=1), env=env)
    wait_log(proc, log, "walk ")
    started = time.monotonic()
    for _ in range(presses):
        proc.p.send_signal(signal.SIGINT)
        time.sleep(0.2)
    assert proc.finish() == 130, proc.err
    # The folder being walked finishes (5 s), the rest of the scan (15 s more) does not.
    assert time.monotonic() - started < 14, "it waited for the whole scan"
    err = "".join(proc.err)
    assert "--resume" not in err and "nothing was trained" in err, err
    assert "Traceback" not in err
    assert runs_made() == []  # no run folder left with nothing in it


def test_ctrl_c_during_the_last_epochs_save_leaves_a_finished_run(dataset, tmp_path, hooked) -> None:
    env, log = hooked
    env["DFTUI_TEST_SAVE_S"] = "0.5"
    env["DFTUI_TEST_SAVE_MATCH"] = ".mobilenet_v2_deepfake.pth."
    proc = Proc(_train_args(dataset, tmp_path / "w", epochs=1), env=env)
    wait_log(proc, log, "save " + str(tmp_path / "w" / ".mobilenet_v2_deepfake.pth."))
    proc.p.send_signal(signal.SIGINT)
    assert proc.finish() == 0, proc.err
    info = json.loads((proc.run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_completed"] == 1
    assert (tmp_path / "w" / "mobilenet_v2_deepfake.pth").is_file()


def test_two_ctrl_c_inside_the_first_checkpoint_save_do_not_advise_resume(
    dataset, tmp_path, hooked
) -> None:
    env, log = hooked
    env["DFTUI_TEST_SAVE_S"] = "1.0"
    env["DFTUI_TEST_SAVE_MATCH"] = "/.resume.pt."
    proc = Proc(_train_args(dataset, tmp_path / "w", epochs=3), env=env)
    wait_log(proc, log, "save " + str(Path(os.environ["DFTUI_HOME"]) / "runs"))
    wait_log(proc, log, "/.resume.pt.")
    proc.p.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.p.send_signal(signal.SIGINT)
    assert proc.finish() == 130, proc.err
    err = "".join(proc.err)
    assert not (proc.run_dir / "resume.pt").exists()
    assert "--resume" not in err and "nothing to resume" in err, err
