"""``dftui runs``, ``dftui attach``, ``dftui stop``: find, follow and stop runs from any
terminal, through their records on disk (run.json and the event log), never through the
process that runs them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from dftui.core.errors import describe_error

POLL_S = 0.25  # how often attach looks for new events (a stat; reads only what was added)
STATUS_EVERY_S = 1.0  # how often attach checks that the run's process is still there


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list runs: progress, best accuracy, status, pid, host",
                       description="List the recorded runs, newest first.")
    p.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    p.set_defaults(func=list_cmd)

    p = sub.add_parser(
        "attach", help="follow a run live (Ctrl+C detaches; the run goes on)",
        description="Replay what a run did so far, then follow it until it ends. The exit "
        "status follows the run's outcome: 0 finished or stopped, 1 failed, 130 interrupted. "
        "Ctrl+C detaches without stopping the run.")
    p.add_argument("run", metavar="RUN", help="a run id, its folder, or 'last'")
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    p.set_defaults(func=attach_cmd)

    p = sub.add_parser(
        "stop", help="stop a run gracefully (its checkpoint and best weights are kept)",
        description="Ask a run to stop after its current batch, and wait until it has.")
    p.add_argument("run", metavar="RUN", help="a run id, its folder, or 'last'")
    p.add_argument("--no-wait", action="store_true", help="return as soon as the stop is asked")
    p.set_defaults(func=stop_cmd)
    register_internal(sub)


def _find(ref: str) -> Path | None:
    from dftui.core.runs import find_run

    run_dir = find_run(ref)
    return run_dir


def _unknown(ref: str) -> int:
    from dftui.cli import fail

    if ref == "last":
        return fail("there are no runs yet; start one with `dftui train`")
    return fail(f"no run {ref!r}; `dftui runs` lists them")


# -- runs ----------------------------------------------------------------------------------
def _row(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "backbone": run.backbone,
        "status": run.status,
        "early_stop_epoch": run.early_stop_epoch,  # "finished" by early stopping after it
        "host": run.host or None,
        "pid": run.pid or None,
        "background": run.detached,
        "epochs_completed": run.epochs_completed,
        "epochs": run.epochs,
        "best_val_accuracy": run.best_val_accuracy,
        "best_epoch": run.best_epoch,
        "started": run.started,
        "heartbeat_age_s": None if run.heartbeat_age is None else round(run.heartbeat_age, 1),
        "weights_path": run.weights_path,
        "run_dir": str(run.run_dir),
        "message": run.message or None,
    }


def list_cmd(args: argparse.Namespace) -> int:
    from dftui.core.runs import list_runs

    runs = list_runs()
    if args.json:
        sys.stdout.write(json.dumps([_row(r) for r in runs], indent=2) + "\n")
        return 0
    if not runs:
        sys.stdout.write("no runs yet; start one with `dftui train` or the dashboard\n")
        return 0
    header = ("RUN", "BACKBONE", "EPOCHS", "BEST ACC", "STATUS", "PID", "STARTED")
    rows = []
    for r in runs:
        epochs = f"{r.epochs_completed}/{r.epochs}" if r.epochs else str(r.epochs_completed)
        acc = "-" if r.best_val_accuracy is None else f"{r.best_val_accuracy:.2%}"
        if r.best_epoch and r.best_val_accuracy is not None:
            acc += f" @{r.best_epoch}"
        status = r.status_text + (" (background)" if r.detached and r.live else "")
        pid = str(r.pid) if r.pid and r.live else "-"
        rows.append((r.run_id, r.backbone, epochs, acc, status, pid, r.started[:19]))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        sys.stdout.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    return 0


# -- attach --------------------------------------------------------------------------------
def attach_cmd(args: argparse.Namespace) -> int:
    from dftui.cli import fail

    run_dir = _find(args.run)
    if run_dir is None:
        return _unknown(args.run)
    from dftui.cli.printer import make_printer
    from dftui.cli.train_cmd import _SafePrinter

    printer = _SafePrinter(make_printer(args.plain))
    try:
        return follow(run_dir, printer)
    except KeyboardInterrupt:
        printer.close()
        _say(f"detached from run {run_dir.name}; it goes on. Follow it again with "
             f"`dftui attach {run_dir.name}`, stop it with `dftui stop {run_dir.name}`")
        return 130
    except _Gone as exc:
        printer.close()
        return fail(str(exc), 1)
    finally:
        printer.close()


class _Gone(Exception):
    pass


def _say(text: str) -> None:
    try:
        sys.stderr.write(f"dftui: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def follow(run_dir: Path, emit: Any, poll_s: float = POLL_S) -> int:
    """Feed ``emit`` the run's events (history first), until the run ends; return the exit
    status its outcome maps to. Raises _Gone when the run folder is deleted."""
    from dftui.core.eventlog import EVENTS_FILE, EventTail, LogGone, status_code
    from dftui.core.runs import read_run

    tail = EventTail(run_dir / EVENTS_FILE)
    last_status_check = 0.0
    stalled_said = False
    while True:
        try:
            events = tail.read()
        except LogGone:
            if not run_dir.is_dir():
                raise _Gone(f"the run folder {run_dir} was deleted; nothing more to follow") from None
            events = []  # not written yet: the run is starting
        for event in events:
            emit(event)
        if tail.ended is not None:
            run = read_run(run_dir)
            # A record still "running" after an end record: a resume is starting, or the
            # record is a moment behind the log. Follow on until the record agrees.
            if run is None or not run.live:
                return _ended(tail.ended)
        now = time.monotonic()
        if now - last_status_check >= STATUS_EVERY_S:
            last_status_check = now
            if not run_dir.is_dir():
                raise _Gone(f"the run folder {run_dir} was deleted; nothing more to follow")
            run = read_run(run_dir)
            if run is not None and run.status == "stalled" and not stalled_said:
                stalled_said = True  # said once; it may recover (a slow save, a busy disk)
                age = f" for {run.heartbeat_age:.0f} s" if run.heartbeat_age is not None else ""
                _say(f"run {run.run_id} has written nothing{age}: it may be stalled "
                     f"(process {run.pid or '?'})")
            elif run is not None and run.live:
                stalled_said = False
            if run is not None and not run.live:
                # Its process is gone. Read once more: the end record may have just landed.
                try:
                    for event in tail.read():
                        emit(event)
                except LogGone:
                    pass
                if tail.ended is not None:
                    return _ended(tail.ended)
                if run.status == "interrupted":
                    _say(f"run {run.run_id} was interrupted: its process is gone without an end "
                         f"record; resume it with `dftui train --resume {run.run_id}`")
                    return 130
                # A record that ended but whose log lost its end line (damaged): it tells.
                _say(f"run {run.run_id} {run.status}" + (f": {run.message}" if run.message else ""))
                return status_code(run.status)
        time.sleep(poll_s)


def _ended(final: Any) -> int:
    from dftui.core.eventlog import outcome_code
    from dftui.core.events import RunFailed

    if isinstance(final, RunFailed):  # the printers leave failures to their caller
        kept = f" (best weights kept at {final.weights_path})" if final.weights_path else ""
        from dftui.cli.printer import failure_text

        _say(f"the run failed: {failure_text(final)}{kept}")
    return outcome_code(final)


# -- stop ----------------------------------------------------------------------------------
def stop_cmd(args: argparse.Namespace) -> int:
    from dftui.cli import fail
    from dftui.core.eventlog import request_stop
    from dftui.core.runs import read_run

    run_dir = _find(args.run)
    if run_dir is None:
        return _unknown(args.run)
    run = read_run(run_dir)
    if run is None:
        return fail(f"the record of run {run_dir.name} cannot be read ({run_dir / 'run.json'})")
    if not run.live:
        sys.stdout.write(f"run {run.run_id} is not running ({run.status}); nothing to stop\n")
        return 0
    try:
        request_stop(run_dir)
    except OSError as exc:
        return fail(f"cannot ask run {run.run_id} to stop: {run_dir} is not writable "
                    f"({describe_error(exc)})", 1)
    where = f" on {run.host}" if run.host else ""
    sys.stdout.write(f"asked run {run.run_id}{where} to stop: it ends after its current batch "
                     "and keeps its checkpoint and best weights\n")
    sys.stdout.flush()
    if args.no_wait:
        return 0
    try:
        while True:
            time.sleep(POLL_S)
            now = read_run(run_dir)
            if now is None:
                if not run_dir.is_dir():
                    return fail(f"the run folder {run_dir} was deleted", 1)
                continue  # run.json being replaced; look again
            if not now.live:
                sys.stdout.write(f"run {now.run_id} {now.status} after {now.epochs_completed} "
                                 "epoch(s)\n")
                return 0 if now.status in ("stopped", "finished") else 1
    except KeyboardInterrupt:
        _say("no longer waiting; the stop request stands")
        return 130


# -- the background run process ------------------------------------------------------------
def register_internal(sub: argparse._SubParsersAction) -> None:
    # No help text: not listed in `dftui --help`; `dftui train --detach` starts it.
    p = sub.add_parser("_run", description="run a prepared run folder (used by --detach)")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=background_cmd)


def background_cmd(args: argparse.Namespace) -> int:
    import os
    import signal

    from dftui.cli.printer import PlainPrinter
    from dftui.core.background import run_prepared, set_pid
    from dftui.core.eventlog import outcome_code
    from dftui.core.events import StopFlag

    stop = StopFlag()

    def on_signal(signum: int, frame: Any) -> None:
        stop.request("interrupted")  # a shutdown or kill: resumable from its checkpoint

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no terminal to lose
    set_pid(args.run_dir, os.getpid())
    printer = PlainPrinter()  # into output.log: the plain story of the run
    final = run_prepared(args.run_dir, stop, printer)
    return outcome_code(final)
