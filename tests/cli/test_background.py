"""Background runs from the CLI: `dftui train --detach`, then `runs`, `attach`, `stop`; a
background run killed with -9 reads "interrupted", resumes and finishes. Faults are tried on
hand-made records (no torch): unknown run, finished run, damaged log, deleted folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from dftui.cli import main
from dftui.cli.runs_cmd import _Gone, follow
from dftui.core.events import EpochEnd, RunFailed, RunFinished, RunStarted
from dftui.core.runs import read_run

TIMEOUT = 180


def _dftui(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dftui", *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def _train_args(dataset, standin: Path, out: Path, epochs: int) -> list[str]:
    return ["--train", str(dataset["train"]), "--val", str(dataset["val"]),
            "--epochs", str(epochs), "--batch-size", "8", "--img-size", "32", "--workers", "0",
            "--pretrained", str(standin), "--precision", "fp32", "--device", "cpu",
            "--out", str(out)]


def _run_id(stdout: str) -> str:
    first = stdout.splitlines()[0]
    assert first.startswith("run ") and "started in the background" in first, stdout
    return first.split()[1]


def _wait(condition, timeout: float = TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_detach_then_attach_to_the_end(dataset, standin_weights, tmp_path: Path) -> None:
    launched = _dftui("train", *_train_args(dataset, standin_weights, tmp_path / "w", 3), "--detach")
    returned = time.time()
    assert launched.returncode == 0, launched.stderr
    run_id = _run_id(launched.stdout)
    assert f"dftui attach {run_id}" in launched.stdout
    listed = json.loads(_dftui("runs", "--json").stdout)
    mine = next(r for r in listed if r["run_id"] == run_id)
    assert mine["background"] and mine["host"] is None
    assert mine["status"] in ("running", "finished")
    attached = _dftui("attach", "last", "--plain")
    assert attached.returncode == 0, attached.stderr
    lines = attached.stdout.splitlines()
    # The whole story, from its start (replayed) to its end (followed).
    assert lines[0].startswith(f"run {run_id}:")
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert lines[-1].startswith("run finished")
    run = read_run(next((Path(os.environ["DFTUI_HOME"]) / "runs").glob(run_id)))
    assert run is not None and run.status == "finished" and run.epochs_completed == 3
    # It returned at once, not after training: the run ended after the command returned.
    # (Compared with the run itself, not with a number of seconds, which depends on the machine.)
    ended = json.loads((run.run_dir / "run.json").read_text())["ended"]
    assert datetime.fromisoformat(ended).timestamp() >= int(returned), (ended, returned)
    assert (run.run_dir / "output.log").read_text().strip()  # the process's own output
    # Attaching again to the finished run replays it and exits with its outcome.
    again = _dftui("attach", run_id, "--plain")
    assert again.returncode == 0 and again.stdout == attached.stdout


@pytest.mark.slow
def test_kill_9_background_run_is_interrupted_and_resumes(dataset, standin_weights,
                                                          tmp_path: Path) -> None:
    # Far more epochs than it gets to: on a fast machine a short run could end before the kill.
    args = _train_args(dataset, standin_weights, tmp_path / "w", 500)
    run_id = _run_id(_dftui("train", *args, "--detach").stdout)
    run_dir = Path(os.environ["DFTUI_HOME"]) / "runs" / run_id
    _wait(lambda: (read_run(run_dir) or read_run(run_dir)).epochs_completed >= 1,  # type: ignore[union-attr]
          what="epoch 1")
    pid = read_run(run_dir).pid  # type: ignore[union-attr]
    attach = subprocess.Popen([sys.executable, "-m", "dftui", "attach", run_id, "--plain"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    out, err = attach.communicate(timeout=60)
    assert attach.returncode == 130, (out, err)
    assert "interrupted" in err and f"dftui train --resume {run_id}" in err
    assert "Traceback" not in err
    run = read_run(run_dir)
    assert run is not None and run.status == "interrupted" and run.resumable
    target = run.epochs_completed + 1  # one more epoch proves the resume; 500 would be slow
    resumed = _dftui("train", "--resume", run_id, "--epochs", str(target), "--detach")
    assert resumed.returncode == 0, resumed.stderr
    followed = _dftui("attach", run_id, "--plain")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines()[-1].startswith("run finished")
    run = read_run(run_dir)
    assert run is not None and run.status == "finished" and run.epochs_completed == target


# -- faults on hand-made records (fast) ------------------------------------------------------
def _make_run(root: Path, name: str, events: list, status: str = "finished", **info) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    base = {"run_id": name, "status": status, "backbone": "mobilenet_v2", "pid": 0,
            "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00", "epochs": 2,
            "epochs_completed": 2}
    (run_dir / "run.json").write_text(json.dumps({**base, **info}))
    with open(run_dir / "events.jsonl", "w") as fh:
        for event in events:
            fh.write((event if isinstance(event, str) else json.dumps(event.to_dict())) + "\n")
    return run_dir


def _story(run_dir: Path, final) -> list:
    started = RunStarted(
        run_id=run_dir.name,
        run_dir=str(run_dir),
        config={"epochs": 2, "backbone": "mobilenet_v2"},
        device="cpu",
        device_name="CPU",
        precision="fp32",
        channels_last=False,
        train_size=40,
        val_size=20,
        train_counts={"real": 20, "fake": 20},
        val_counts={"real": 10, "fake": 10},
        steps_per_epoch=5,
        start_epoch=0,
        params=1000,
        workers=0,
    )
    epochs = [
        EpochEnd(
            epoch=e,
            epochs=2,
            train_loss=0.5,
            val_loss=0.4,
            val_accuracy=0.9,
            val_precision=0.9,
            val_recall=0.9,
            val_f1=0.9,
            seconds=1.0,
            images_per_s=10.0,
            data_wait=0.0,
            is_best=True,
            best_epoch=e,
        )
        for e in (1, 2)
    ]
    return [started, *epochs, final]


def _runs_root() -> Path:
    return Path(os.environ["DFTUI_HOME"]) / "runs"


def test_attach_unknown_and_finished_and_damaged(capsys) -> None:
    root = _runs_root()
    assert main(["attach", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    ok = root / "20260101-000000-mobilenet_v2"
    _make_run(
        root,
        ok.name,
        [
            "garbage {",
            *_story(
                ok,
                RunFinished(
                    status="finished",
                    epochs_completed=2,
                    best_epoch=2,
                    best_val_accuracy=0.9,
                    weights_path="/w",
                    metadata_path="/j",
                    run_dir=str(ok),
                    seconds=3.0,
                ),
            ),
            '{"event": "epoch_end", "epoch": 1',
        ],
    )
    assert main(["attach", ok.name, "--plain"]) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "run finished" in out
    bad = root / "20260101-000001-mobilenet_v2"
    _make_run(
        root,
        bad.name,
        _story(bad, RunFailed(message="out of memory", run_dir=str(bad))),
        status="failed",
        started="2026-01-01T00:00:09+00:00",
    )
    assert main(["attach", "last", "--plain"]) == 1  # the newest run, which failed
    assert "out of memory" in capsys.readouterr().err


def test_attach_reports_a_dead_process_and_a_deleted_folder(capsys) -> None:
    root = _runs_root()
    gone = root / "20260101-000002-mobilenet_v2"
    _make_run(root, gone.name, _story(gone, None)[:-1], status="running", pid=2**22 + 77)
    assert main(["attach", gone.name, "--plain"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err
    # A live-looking run whose folder is deleted while attached.
    live = root / "20260101-000003-mobilenet_v2"
    _make_run(root, live.name, _story(live, None)[:-1], status="running", pid=os.getpid())
    threading.Timer(0.5, shutil.rmtree, args=(live,)).start()
    with pytest.raises(_Gone):
        follow(live, lambda e: None, poll_s=0.05)
    _make_run(root, live.name, _story(live, None)[:-1], status="running", pid=os.getpid())
    threading.Timer(0.5, shutil.rmtree, args=(live,)).start()
    assert main(["attach", live.name, "--plain"]) == 1
    assert "was deleted" in capsys.readouterr().err


def test_runs_and_stop(capsys) -> None:
    root = _runs_root()
    assert main(["runs"]) == 0
    assert "no runs yet" in capsys.readouterr().out
    done = _make_run(root, "20260101-000004-mobilenet_v2", [], best_val_accuracy=0.9, best_epoch=1)
    _make_run(root, "20260101-000005-mobilenet_v2", [], status="running", pid=2**22 + 5,
              host="gpu-box-7", started="2026-01-02T00:00:00+00:00")
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "running on gpu-box-7" in out and "finished" in out and "90.00% @1" in out
    rows = {r["run_id"]: r for r in json.loads((main(["runs", "--json"]), capsys.readouterr().out)[1])}
    assert rows[done.name]["status"] == "finished"
    assert rows["20260101-000005-mobilenet_v2"]["host"] == "gpu-box-7"
    # Stopping a run that is not running says so; the remote one gets a stop request file.
    assert main(["stop", done.name]) == 0
    assert "not running (finished)" in capsys.readouterr().out
    assert main(["stop", "20260101-000005-mobilenet_v2", "--no-wait"]) == 0
    assert "on gpu-box-7" in capsys.readouterr().out
    assert (root / "20260101-000005-mobilenet_v2" / "stop-request").is_file()
    assert main(["stop", "missing"]) == 2
