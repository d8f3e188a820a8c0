"""`dftui train` in a subprocess, interrupted the ways it is in real life: Ctrl+C, SIGTERM, a
dropped SSH session (SIGHUP with the terminal gone), Ctrl+C to the whole process group with
loader workers, and kill -9 at random moments, during saves too. Each time the files on disk
load, the record is readable, and `dftui train --resume` continues to a finished run whose
metrics match an uninterrupted one."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from dftui.core.checkpoint import load_weights
from dftui.core.config import TrainConfig
from dftui.core.events import EpochEnd
from dftui.core.runs import read_run
from dftui.core.train import RESUME_FILE, fit

TIMEOUT = 120  # seconds for any one subprocess; the machine may be busy


def _train_args(dataset, out: Path, epochs: int, workers: int = 0) -> list[str]:
    return [
        "--train", str(dataset["train"]), "--val", str(dataset["val"]),
        "--epochs", str(epochs), "--batch-size", "8", "--img-size", "32",
        "--workers", str(workers), "--pretrained", "none", "--precision", "fp32",
        "--device", "cpu", "--out", str(out), "--plain",
    ]


class Proc:
    """A `python -m dftui train` subprocess whose output lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, **popen) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "dftui", "train", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env or dict(os.environ), **popen,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.p.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.p.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, sink: list[str]) -> None:
        try:
            for line in stream:
                sink.append(line)
        except (ValueError, OSError):
            pass

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in line for line in self.out):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"never saw {text!r}; out={self.out} err={self.err}")

    def finish(self) -> int:
        code = self.p.wait(TIMEOUT)
        for t in self._threads:
            t.join(5)
        return code

    @property
    def run_dir(self) -> Path:
        for line in self.out:
            if line.startswith("run ") and ":" in line:
                run_id = line.split()[1].rstrip(":")
                return Path(os.environ["DFTUI_HOME"]) / "runs" / run_id
        raise AssertionError(f"no run line in {self.out}")


def _check_disk_state(run_dir: Path, out: Path) -> int:
    """Everything on disk is whole: returns the epochs the resume checkpoint holds (0: none)."""
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] in ("running", "interrupted", "failed", "finished")
    summary = read_run(run_dir)
    assert summary is not None and summary.status != "running"  # its process is gone
    json.loads((run_dir / "config.json").read_text())
    for weights in out.glob("*.pth"):
        state, meta = load_weights(weights)
        assert state and meta["backbone"] == "mobilenet_v2"
    epochs = 0
    if (run_dir / RESUME_FILE).exists():
        ckpt = torch.load(run_dir / RESUME_FILE, map_location="cpu", weights_only=True)
        epochs = int(ckpt["state"]["epoch"])
        assert summary.resumable or summary.status == "finished"
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows and rows[0][0] == "epoch"
    return epochs


def _metric_rows(run_dir: Path) -> list[list[str]]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.reader(fh))[1:]


def test_sigint_sigterm_sighup_then_resume(dataset, tmp_path):
    out = tmp_path / "w"
    first = Proc(_train_args(dataset, out, epochs=40))
    first.wait_for("epoch 1/40")
    first.p.send_signal(signal.SIGINT)
    assert first.finish() == 130, first.err
    assert any("resume with" in line for line in first.err)
    run_dir = first.run_dir
    done = _check_disk_state(run_dir, out)
    assert done >= 1 and read_run(run_dir).status == "interrupted"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"

    for sig in (signal.SIGTERM, signal.SIGHUP):
        nxt = Proc(["--resume", str(run_dir), "--plain"])
        nxt.wait_for(f"epoch {done + 1}/40")
        if sig == signal.SIGHUP:
            # A dropped SSH session: the terminal goes (writes fail), then SIGHUP comes.
            nxt.p.stdout.close()
            time.sleep(0.3)
        nxt.p.send_signal(sig)
        assert nxt.finish() == 130, (sig, nxt.err)
        now = _check_disk_state(run_dir, out)
        assert now > done and read_run(run_dir).status == "interrupted"
        done = now

    last = Proc(["--resume", run_dir.name, "--epochs", str(done + 1), "--plain"])
    assert last.finish() == 0, last.err
    summary = read_run(run_dir)
    assert summary.status == "finished" and summary.epochs_completed == done + 1
    assert [int(r[0]) for r in _metric_rows(run_dir)] == list(range(1, done + 2))
    assert load_weights(summary.weights_path)


def test_ctrl_c_to_the_process_group_with_loader_workers(dataset, tmp_path):
    """A terminal's Ctrl+C reaches the loader workers too; the run still ends "interrupted"."""
    out = tmp_path / "w"
    proc = Proc(_train_args(dataset, out, epochs=40, workers=2), start_new_session=True)
    proc.wait_for("epoch 1/40")
    os.killpg(proc.p.pid, signal.SIGINT)
    assert proc.finish() == 130, proc.err
    run_dir = proc.run_dir
    assert _check_disk_state(run_dir, out) >= 1
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


SLOW_IO = textwrap.dedent(
    """
    # Test-only: slows the atomic saves of `dftui train` so that kill -9 lands inside them.
    import os, time
    _log = os.environ.get("DFTUI_TEST_SAVE_LOG")
    _fsync, _fdopen = os.fsync, os.fdopen

    def _note(text):
        if _log:
            with open(_log, "a") as fh:
                fh.write(text + "\\n")

    def fsync(fd):
        _note("save")
        time.sleep(0.15)
        return _fsync(fd)

    class _Slow:
        def __init__(self, fh):
            self._fh = fh
        def write(self, data):
            time.sleep(0.0005)
            return self._fh.write(data)
        def __getattr__(self, name):
            return getattr(self._fh, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self._fh.__exit__(*exc)

    def fdopen(fd, mode="r", *args, **kwargs):
        fh = _fdopen(fd, mode, *args, **kwargs)
        return _Slow(fh) if "w" in mode and "b" in mode else fh

    os.fsync, os.fdopen = fsync, fdopen
    """
)


def test_kill_9_at_random_moments_then_resume(dataset, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_IO)
    save_log = tmp_path / "saves.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), env.get("PYTHONPATH", "")])
    env["DFTUI_TEST_SAVE_LOG"] = str(save_log)
    out = tmp_path / "w"
    epochs = 3
    rng = random.Random(int(os.environ.get("DFTUI_FAULT_SEED", "7")))
    run_dir: Path | None = None
    kills = []
    for attempt in range(4):
        save_log.write_text("")
        if run_dir is not None and (run_dir / RESUME_FILE).exists():
            proc = Proc(["--resume", str(run_dir), "--plain"], env=env)
        else:
            if run_dir is not None:  # killed before its first checkpoint: a clear refusal
                refused = Proc(["--resume", str(run_dir), "--plain"], env=env)
                assert refused.finish() == 1
                assert any("nothing to resume" in line for line in refused.err)
            proc = Proc(_train_args(dataset, out, epochs=epochs), env=env)
        proc.wait_for("run ")
        run_dir = proc.run_dir
        if attempt % 2 == 0:
            # Inside a save: wait for the n-th save to start, then kill during its slow part.
            nth = rng.randint(1, 4)
            end = time.monotonic() + TIMEOUT
            while save_log.read_text().count("save") < nth and time.monotonic() < end:
                if proc.p.poll() is not None:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.12))
            moment = f"during save {nth}"
        else:
            delay = rng.uniform(0.2, 3.0)
            time.sleep(delay)
            moment = f"{delay:.2f}s in"
        if proc.p.poll() is None:
            proc.p.kill()
            kills.append(moment)
        proc.finish()
        _check_disk_state(run_dir, out)
        if read_run(run_dir).status == "finished":
            break  # it ended before the kill came

    assert run_dir is not None
    print("kill -9 moments:", kills)
    assert len(kills) >= 3, kills  # most attempts really killed a running trainer
    if not (run_dir / RESUME_FILE).exists():
        proc = Proc(_train_args(dataset, out, epochs=epochs), env=env)
        proc.finish()
        run_dir = proc.run_dir
    elif read_run(run_dir).status != "finished":
        final = Proc(["--resume", str(run_dir), "--plain"], env=env)
        assert final.finish() == 0, (kills, final.err)
        assert not list(out.glob(".*.tmp")), kills
    summary = read_run(run_dir)
    assert summary.status == "finished", (kills, summary)
    # The resumed run swept up what kills inside saves left half-written.
    assert not list(run_dir.glob(".*.tmp")), kills
    rows = _metric_rows(run_dir)
    assert [int(r[0]) for r in rows] == list(range(1, epochs + 1)), (kills, rows)
    _check_disk_state(run_dir, out)

    # Killed and resumed, the run ends as an uninterrupted one does (float noise aside).
    whole: list[EpochEnd] = []
    cfg = TrainConfig(
        train_dir=dataset["train"], val_dir=dataset["val"], epochs=epochs, batch_size=8,
        img_size=32, workers=0, precision="fp32", pretrained="none", device="cpu",
        out_dir=tmp_path / "whole",
    )
    fit(cfg, lambda e: whole.append(e) if isinstance(e, EpochEnd) else None)
    for row, ref in zip(rows, whole, strict=True):
        assert float(row[1]) == pytest.approx(ref.train_loss, rel=1e-4, abs=1e-5), kills
        assert float(row[2]) == pytest.approx(ref.val_loss, rel=1e-4, abs=1e-5), kills
        assert float(row[3]) == pytest.approx(ref.val_accuracy, abs=1e-6), kills
