"""Runs with a folder made before they start: background processes and dashboard runs.

``prepare_run(config, resume)`` makes (or reuses) the run folder and writes what the run
will need (``launch.json``) and a first ``run.json`` (pid, host, status "running"), so that
the run can be listed, watched and stopped from its first second. ``run_prepared(run_dir)``
runs it there (in a thread of the dashboard or in a process of its own) and makes sure its
end is recorded, even when it failed before its recorder existed. ``launch_detached``
starts ``dftui _run RUN_DIR`` as a process of its own that outlives the terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dftui.core.checkpoint import save_json
from dftui.core.errors import describe_error
from dftui.core.eventlog import EVENTS_FILE, OUTPUT_FILE, EventLogWriter, hostname
from dftui.core.events import Emit, Event, RunFailed, RunFinished
from dftui.core.runs import new_run_dir, read_run, runs_root
from dftui.core.untrusted import read_json

LAUNCH_FILE = "launch.json"


class LaunchError(Exception):
    """A run that cannot be started; the message says why and what to do."""


@dataclass(frozen=True)
class Prepared:
    run_dir: Path
    resume: bool


def prepare_run(
    config: Any, resume_dir: Path | None = None, detached: bool = False, pid: int | None = None
) -> Prepared:
    """Make the run folder (or check a resumed one is free) and write launch.json and a
    first run.json. Raises LaunchError."""
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        current = read_run(run_dir)
        if current is not None and current.live:
            where = f" on {current.host}" if current.host else f" (process {current.pid})"
            raise LaunchError(
                f"run {current.run_id} is still running{where}; stop it before resuming, "
                "or wait for it to end"
            )
    else:
        root = runs_root(config.runs_dir)
        try:
            run_dir = new_run_dir(root, config.backbone)
        except OSError as exc:
            raise LaunchError(
                f"cannot create the run record folder in {root} ({describe_error(exc)}); "
                "set DFTUI_HOME to a writable folder"
            ) from None
    try:
        save_json({"config": config.to_dict(), "resume": resume_dir is not None},
                  run_dir / LAUNCH_FILE)
        info: dict[str, Any] = {}
        if resume_dir is not None:
            try:
                loaded = read_json(run_dir / "run.json", expect=None)
                info = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                info = {}
            for key in ("ended", "message"):
                info.pop(key, None)
        info.update(
            run_id=info.get("run_id") or run_dir.name,
            status="running",
            pid=pid if pid is not None else os.getpid(),
            host=hostname(),
            detached=detached,
            backbone=info.get("backbone") or config.backbone,
            train_dir=info.get("train_dir") or str(config.train_dir),
            val_dir=info.get("val_dir") or str(config.val_dir),
            epochs=config.epochs,
            started=info.get("started")
            or datetime.now(UTC).isoformat(timespec="seconds"),
        )
        save_json(info, run_dir / "run.json")
    except OSError as exc:
        raise LaunchError(f"cannot write the run record in {run_dir} ({describe_error(exc)})") from None
    return Prepared(run_dir, resume_dir is not None)


def set_pid(run_dir: Path, pid: int) -> None:
    """Put the run's own process in run.json (the launcher wrote its own first)."""
    try:
        info = read_json(Path(run_dir) / "run.json", expect=None)
    except (OSError, ValueError):
        return
    if isinstance(info, dict) and info.get("status") == "running":
        info["pid"] = pid
        try:
            save_json(info, Path(run_dir) / "run.json")
        except OSError:
            pass


def launch_detached(
    config: Any, resume_dir: Path | None = None, command: list[str] | None = None,
    env_extra: dict[str, str] | None = None,
) -> tuple[Path, int]:
    """Start the run as a process of its own: a new session (no controlling terminal, so a
    dropped SSH connection does not reach it), stdin from /dev/null, stdout and stderr into
    output.log in the run folder. Returns (run folder, pid) at once. Raises LaunchError.

    ``command``: the dftui arguments to run instead of ``_run RUN_DIR`` (a distributed
    run's launcher, dftui.cli.launch), given the prepared folder in DFTUI_LAUNCH_RUN_DIR."""
    prepared = prepare_run(config, resume_dir, detached=True)
    run_dir = prepared.run_dir
    try:
        out = open(run_dir / OUTPUT_FILE, "ab")
    except OSError as exc:
        raise LaunchError(f"cannot write {run_dir / OUTPUT_FILE} ({describe_error(exc)})") from None
    env = dict(os.environ)
    # The child imports this same dftui, wherever it is installed or checked out.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    try:
        with out:
            if command is not None:
                env["DFTUI_LAUNCH_RUN_DIR"] = str(run_dir)
            env.update(env_extra or {})
            proc = subprocess.Popen(
                [sys.executable, "-m", "dftui", *(command or ["_run", str(run_dir)])],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
    except OSError as exc:
        _record_end(run_dir, RunFailed(message=f"the run process could not start: {exc}",
                                       run_dir=str(run_dir)))
        raise LaunchError(f"the run process could not start ({describe_error(exc)})") from None
    set_pid(run_dir, proc.pid)
    # Nobody waits for it: the child is reaped by init once this process is gone. While we
    # live (the dashboard), a thread reaps it so it never lingers as a zombie.
    threading.Thread(target=proc.wait, name="dftui-reap", daemon=True).start()
    return run_dir, proc.pid


def read_launch(run_dir: Path) -> tuple[Any, bool]:
    """(TrainConfig, resume) from launch.json. Raises LaunchError."""
    from dftui.core.config import TrainConfig

    path = Path(run_dir) / LAUNCH_FILE
    try:
        data = read_json(path, expect=None)
        config = TrainConfig.from_dict(data["config"])
        return config, bool(data.get("resume"))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise LaunchError(f"{path} cannot be read ({exc})") from None


def run_prepared(run_dir: Path, stop: threading.Event, emit: Emit = lambda e: None) -> Event:
    """Run the training prepared in ``run_dir`` and return its final event, recorded."""
    try:
        config, resume = read_launch(run_dir)
    except LaunchError as exc:
        final: Event = RunFailed(message=str(exc), run_dir=str(run_dir))
        _record_end(run_dir, final)
        return final
    from dftui.core.train import fit

    if resume:
        final = fit(config, emit, stop, resume=run_dir)
    else:
        final = fit(config, emit, stop, run_dir=run_dir)
    _record_end(run_dir, final)
    return final


def _record_end(run_dir: Path, final: Event) -> None:
    """Write the end record and the final status, unless the run's recorder already did
    (it does whenever it got that far). Only for a record this process owns."""
    path = Path(run_dir) / "run.json"
    try:
        info = read_json(path, expect=None)
    except (OSError, ValueError):
        return
    if not isinstance(info, dict) or info.get("status") != "running":
        return
    if info.get("pid") not in (os.getpid(), None) or info.get("host") not in (hostname(), None):
        return
    try:
        log = EventLogWriter(Path(run_dir) / EVENTS_FILE)
        try:
            log.write(final.to_dict(), sync=True)
        finally:
            log.close()
    except OSError:
        pass
    if isinstance(final, RunFailed):
        info.update(status="failed", message=final.message)
    elif isinstance(final, RunFinished):
        info.update(status=final.status, early_stop_epoch=final.early_stop_epoch)
    info["ended"] = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        save_json(info, path)
    except OSError:
        pass
