"""Run records: one folder per run under the user data directory, written as the run goes
(config.json, metrics.csv, events.jsonl, run.json), so a crash leaves a readable record."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dftui.core.checkpoint import save_json
from dftui.core.errors import describe_error
from dftui.core.eventlog import (
    EVENTS_FILE,
    NON_EVENT_KINDS,
    STALE_AFTER_S,
    STOP_FILE,
    EventLogWriter,
    EventTail,
    LogGone,
    clear_stop_request,
    hostname,
)
from dftui.core.events import (
    BatchEnd,
    CheckpointSaved,
    EpochEnd,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
    event_from_dict,
)
from dftui.core.files import atomic_write
from dftui.core.untrusted import Fields, UntrustedError, check_int, parse_json, read_json

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_precision",
    "val_recall",
    "val_f1",
    "seconds",
    "images_per_s",
    "data_wait",
    "is_best",
    "lr",  # added later: older files end at is_best
)


def metric_row(e: EpochEnd) -> list[str]:
    """``e`` as a metrics.csv row (METRIC_COLUMNS)."""
    return [str(v) for v in (
        e.epoch,
        f"{e.train_loss:.6f}",
        f"{e.val_loss:.6f}",
        f"{e.val_accuracy:.6f}",
        f"{e.val_precision:.6f}",
        f"{e.val_recall:.6f}",
        f"{e.val_f1:.6f}",
        f"{e.seconds:.2f}",
        f"{e.images_per_s:.2f}",
        f"{e.data_wait:.4f}",
        int(e.is_best),
        "" if e.lr is None else f"{e.lr:.6g}",
    )]
if TYPE_CHECKING:
    from dftui.core.config import TrainConfig

# Batch events are thinned in the record (epochs are all kept); a watcher's progress bar
# moves at this pace.
BATCH_RECORD_INTERVAL_S = 1.0


def data_home() -> Path:
    """DFTUI_HOME overrides the platform's user data directory (tests, shared machines)."""
    override = os.environ.get("DFTUI_HOME")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_path

    return user_data_path("dftui", appauthor=False)


def config_home() -> Path:
    override = os.environ.get("DFTUI_HOME")
    if override:
        return Path(override).expanduser() / "config"
    from platformdirs import user_config_path

    return user_config_path("dftui", appauthor=False)


def runs_root(override: Path | None = None) -> Path:
    return Path(override) if override else data_home() / "runs"


def new_run_dir(root: Path, backbone: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    n = 1
    while True:
        suffix = "" if n == 1 else f"-{n}"
        path = root / f"{stamp}-{backbone}{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


LOCK_FILE = ".lock"


def lock_run(run_dir: Path) -> Any | None:
    """Hold ``run_dir`` for this process: an open file with an exclusive ``flock``, or None
    when another process (or another run in this one) holds it. Taking the lock is one
    atomic step, so two resumes started together cannot both pass a check that each makes
    before the other has written anything; the kernel drops it when the process dies, so
    a crash leaves no stale lock. Close the returned file to let go."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; run.json's pid check only
        return open(os.devnull, "rb")
    try:
        fh = open(Path(run_dir) / LOCK_FILE, "a+b")  # noqa: SIM115 - held until the run ends
    except OSError:
        return open(os.devnull, "rb")  # an unwritable record folder fails later, with its reason
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunRecorder:
    """An event listener that keeps the run's folder up to date.

    JSON files are replaced atomically; metrics.csv and events.jsonl are appended, so a
    crash can cut at most their last line (readers skip it; a resume trims it). A failed
    write (a full disk) never stops training: it is kept in ``write_error``."""

    def __init__(
        self, run_dir: Path, resumed: bool = False, stop: threading.Event | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._folder = _folder_id(self.run_dir)
        self.write_error: str | None = None
        self.notices: list[str] = []  # warnings for the user (the trainer emits them)
        # What the record holds, kept so a folder deleted during the run can be made whole
        # again (config.json, metrics.csv, events.jsonl, skipped list), not only run.json.
        self._config: dict[str, Any] | None = None
        self._skipped: tuple[str, list[str]] | None = None
        self._metric_rows: list[list[str]] = []
        self._event_lines: list[str] = []
        if resumed:
            self._event_lines = _read_lines(self.run_dir / EVENTS_FILE)
        # A stop request left over from an earlier attempt must not stop this one.
        clear_stop_request(self.run_dir)
        self._log = EventLogWriter(self.run_dir / EVENTS_FILE)
        metrics_path = self.run_dir / "metrics.csv"
        fresh = not metrics_path.exists() or metrics_path.stat().st_size == 0
        self._metrics = open(metrics_path, "a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._metrics)
        if fresh:
            self._writer.writerow(METRIC_COLUMNS)
            self._metrics.flush()
        self._last_batch = 0.0
        self.info: dict[str, Any] = {}
        # run.json is there when resuming, or when the folder was made for this run before
        # it started (a background run: its launcher wrote the pid and host).
        try:
            self.info = read_run_info(self.run_dir)
        except (OSError, ValueError):
            self.info = {}
        # Fields of an interrupted attempt that no longer hold.
        for key in ("ended", "message"):
            self.info.pop(key, None)
        try:
            self._log.write_header()
        except OSError as exc:
            self.write_error = f"{describe_error(exc)}"

        def on_stop() -> None:
            if stop is not None:
                request = getattr(stop, "request", None)
                request("stopped") if request is not None else stop.set()

        def on_error(exc: OSError) -> None:
            self.write_error = self.write_error or f"{describe_error(exc)}"

        self._log.start_heartbeat(self.run_dir / STOP_FILE, on_stop, on_error)

    def trim_after(self, epoch: int) -> None:
        """On resume, drop metric rows past the checkpoint's epoch: they are redone. The
        file is untrusted (cut by a crash, edited): rows that do not parse are dropped."""
        path = self.run_dir / "metrics.csv"
        self._metrics.close()
        try:
            with open(path, encoding="utf-8", errors="replace", newline="") as fh:
                rows = list(csv.reader(line.replace("\0", "") for line in fh))
        except (OSError, csv.Error):
            rows = []
        header = list(METRIC_COLUMNS)
        # A file written by an older version has fewer columns (its header says which):
        # its rows are kept, the new columns left empty.
        width = len(header)
        if rows and 0 < len(rows[0]) < width and rows[0] == header[: len(rows[0])]:
            width = len(rows[0])
        kept = [
            r + [""] * (len(header) - width)
            for r in rows[1:]
            if len(r) == width and r[0].isdigit() and int(r[0]) <= epoch
        ]
        with atomic_write(path, "w") as fh:
            csv.writer(fh).writerows([header] + kept)
        self._metric_rows = kept
        self._metrics = open(path, "a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._metrics)

    def _ensure_folder(self) -> None:
        """The run folder deleted while the run goes on (by hand, by a cleaner): make it
        again with everything recorded so far and say so, rather than leave a folder with a
        run.json alone that reads "finished" with no settings, metrics or events."""
        # Compared by identity: another save (resume.pt) may have made the folder again,
        # empty, before this recorder noticed.
        if _folder_id(self.run_dir) == self._folder:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._folder = _folder_id(self.run_dir)
        try:
            self._metrics.close()
        except OSError:
            pass
        self._log.restore(self._event_lines)
        self._metrics = open(self.run_dir / "metrics.csv", "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._metrics)
        self._writer.writerows([list(METRIC_COLUMNS)] + self._metric_rows)
        self._metrics.flush()
        if self._config is not None:
            save_json(self._config, self.run_dir / "config.json")
        if self._skipped is not None:
            name, lines = self._skipped
            with atomic_write(self.run_dir / name, "w") as fh:
                fh.write("".join(line + "\n" for line in lines))
        if self.info:
            save_json(self.info, self.run_dir / "run.json")
        self.notices.append(
            f"the run folder {self.run_dir} was deleted during the run; it was made again with "
            "the record so far (settings, metrics, events); the resume checkpoint is written "
            "again at the end of this epoch"
        )

    def note_skipped(self, lines: list[str], name: str = "skipped.txt") -> None:
        """Write the list of skipped images and put their count in run.json."""
        self._skipped = (name, list(lines))
        try:
            self._ensure_folder()
            with atomic_write(self.run_dir / name, "w") as fh:
                fh.write("".join(line + "\n" for line in lines))
        except OSError as exc:
            self.write_error = self.write_error or f"{name}: {describe_error(exc)}"
        self._write_info(skipped_images=len(lines), skipped_list=name if lines else None)

    def _write_info(self, **changes: Any) -> None:
        self.info.update(changes)
        try:
            save_json(self.info, self.run_dir / "run.json")
        except OSError as exc:
            self.write_error = self.write_error or f"run.json: {describe_error(exc)}"

    def __call__(self, event: Event) -> None:
        try:
            self._ensure_folder()
            self._record(event)
        except OSError as exc:
            self.write_error = self.write_error or f"{describe_error(exc)}"

    def _record(self, event: Event) -> None:
        if isinstance(event, BatchEnd):
            now = time.monotonic()
            if now - self._last_batch < BATCH_RECORD_INTERVAL_S and event.batch != event.batches:
                return
            self._last_batch = now
        record = event.to_dict()
        self._event_lines.append(json.dumps(record, default=str))
        # fsync where losing the tail would lose what matters: an epoch's result, the end.
        self._log.write(record, sync=isinstance(event, (EpochEnd, RunFinished, RunFailed)))
        if isinstance(event, RunStarted):
            self._config = event.config
            try:
                save_json(event.config, self.run_dir / "config.json")
            except OSError as exc:
                self.write_error = self.write_error or f"config.json: {describe_error(exc)}"

            cfg = event.config
            if "world_size" not in cfg:  # resumed on one process: the record says so
                self.info.pop("world_size", None)
                self.info.pop("batch_per_process", None)
            self._write_info(
                run_id=event.run_id,
                status="running",
                pid=os.getpid(),
                host=hostname(),
                backbone=cfg.get("backbone"),
                train_dir=cfg.get("train_dir"),
                val_dir=cfg.get("val_dir"),
                device=event.device,
                precision=event.precision,
                started=self.info.get("started")
                or datetime.now(UTC).isoformat(timespec="seconds"),
                train_size=event.train_size,
                val_size=event.val_size,
                epochs=cfg.get("epochs"),
                **_world_info(cfg),
            )
        elif isinstance(event, EpochEnd):
            row = metric_row(event)
            self._metric_rows.append(row)
            self._writer.writerow(row)
            self._metrics.flush()
            if event.is_best:
                self._write_info(best_epoch=event.epoch, best_val_accuracy=event.val_accuracy)
            self._write_info(epochs_completed=event.epoch)
        elif isinstance(event, CheckpointSaved) and event.role == "best":
            # Named at once, not only at the end: a run whose process dies (a dropped
            # connection) still points at the best weights it saved.
            self._write_info(weights_path=event.path, best_epoch=event.epoch)
        elif isinstance(event, RunFinished):
            self._write_info(
                status=event.status,
                ended=datetime.now(UTC).isoformat(timespec="seconds"),
                weights_path=event.weights_path,
                best_epoch=event.best_epoch,
                best_val_accuracy=event.best_val_accuracy,
                epochs_completed=event.epochs_completed,
                early_stop_epoch=event.early_stop_epoch,
                temperature=event.temperature,
                ece_before=event.ece_before,
                ece_after=event.ece_after,
            )
        elif isinstance(event, RunFailed):
            self._write_info(
                status="failed",
                ended=datetime.now(UTC).isoformat(timespec="seconds"),
                message=event.message,
                weights_path=event.weights_path,
            )

    def close(self) -> None:
        self._log.close()
        try:
            self._metrics.close()
        except OSError:
            pass


MAX_KEPT_EVENTS_BYTES = 64 * 1024 * 1024  # a resumed run's earlier events kept in memory


def _folder_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _read_lines(path: Path) -> list[str]:
    """The whole lines of an existing event log (for remaking a deleted folder)."""
    try:
        if path.stat().st_size > MAX_KEPT_EVENTS_BYTES:
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def _world_info(cfg: dict[str, Any]) -> dict[str, Any]:
    """A distributed run's process count and per-process batch (its batch_size is the
    global one); nothing for a single-process run."""
    world = cfg.get("world_size")
    if not isinstance(world, int) or world <= 1:
        return {}
    return {"world_size": world, "batch_per_process": cfg.get("batch_per_process")}


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    run_id: str
    status: str  # running | finished | stopped | interrupted | failed
    backbone: str
    started: str
    train_dir: str
    val_dir: str
    best_val_accuracy: float | None
    best_epoch: int | None
    epochs_completed: int
    epochs: int | None
    weights_path: str | None
    message: str = ""
    pid: int = 0
    host: str = ""  # the machine running it, when not this one (a shared home folder)
    detached: bool = False  # a background run (its own process), not inside a dashboard
    heartbeat_age: float | None = None  # seconds since its event log was last written
    early_stop_epoch: int | None = None  # a run early stopping ended (status "finished")

    @property
    def live(self) -> bool:
        """Its process is (or, on another host, may be) still running it."""
        return self.status in LIVE_STATUSES

    @property
    def status_text(self) -> str:
        """The status as lists show it: 'running on host X' for another machine's run,
        'finished (early stop at epoch N)'."""
        from dftui.core.early_stop import outcome_text

        return f"{self.status} on {self.host}" if self.host else outcome_text(self.status, self.early_stop_epoch)

    @property
    def resumable(self) -> bool:
        return (self.run_dir / "resume.pt").is_file() and self.status in (
            "stopped",
            "interrupted",
            "failed",
        )


LIVE_STATUSES = ("running", "stalled")


def heartbeat_age(run_dir: Path) -> float | None:
    """Seconds since the run's event log was last written (any record, heartbeats too)."""
    try:
        return max(0.0, time.time() - (Path(run_dir) / EVENTS_FILE).stat().st_mtime)
    except OSError:
        return None


def live_status(info: dict[str, Any], run_dir: Path) -> tuple[str, str, float | None]:
    """(status, other host or "", heartbeat age) of a run record. A record that says
    "running" is checked: on this host by its pid (gone: "interrupted") and its heartbeat
    (old: "stalled"); on another host only by its heartbeat, since its pid means nothing
    here."""
    status = str(info.get("status", "unknown"))
    host = info.get("host")
    other = host if isinstance(host, str) and host and host != hostname() else ""
    if status != "running":
        return status, other, None
    age = heartbeat_age(run_dir)
    if not other:
        if not pid_alive(run_pid(info)):
            return "interrupted", "", age  # its process is gone: killed or crashed
    if age is not None and age > STALE_AFTER_S:
        return "stalled", other, age
    return "running", other, age


DAMAGED = "damaged"  # a run whose record cannot be read whole; its message says why
RUN_STATUSES = ("running", "finished", "stopped", "interrupted", "failed")


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """run.json as an object. FileNotFoundError when there is none; UntrustedError (a
    ValueError) with the reason when it is damaged."""
    return read_json(Path(run_dir) / "run.json")


def run_pid(info: dict[str, Any]) -> int:
    """The run's process id from its record, 0 when it is missing or not a number."""
    try:
        pid = check_int(info.get("pid", 0) or 0, "pid", minimum=0)
    except UntrustedError:
        return 0
    return pid


def read_run(run_dir: Path) -> RunSummary | None:
    """A run's summary from its run.json; None when the folder has none (not a run, or one
    being created). A damaged record still gives a summary, with status "damaged" and the
    reason in ``message``: every field is checked, so the screens never fail on it."""
    run_dir = Path(run_dir)
    try:
        info = read_run_info(run_dir)
    except FileNotFoundError:
        return None
    except (UntrustedError, OSError) as exc:
        return _damaged(run_dir, f"run.json: {exc}")
    f = Fields(info)
    status = f.str("status", "unknown")
    pid = f.int("pid", 0, minimum=0)
    summary = RunSummary(
        run_dir=run_dir,
        run_id=f.str("run_id", run_dir.name) or run_dir.name,
        status=status,
        backbone=f.str("backbone", "?") or "?",
        started=f.str("started", ""),
        train_dir=f.str("train_dir", ""),
        val_dir=f.str("val_dir", ""),
        best_val_accuracy=f.float("best_val_accuracy"),
        best_epoch=f.int("best_epoch", minimum=0),
        epochs_completed=f.int("epochs_completed", 0, minimum=0),
        epochs=f.int("epochs", minimum=0),
        weights_path=f.str("weights_path", None),
        message=f.str("message", ""),
        early_stop_epoch=f.int("early_stop_epoch", None, minimum=1),
    )
    if f.problems:
        why = "; ".join(f.problems[:3]) + ("; ..." if len(f.problems) > 3 else "")
        return replace(summary, status=DAMAGED, message=f"run.json is damaged: {why}")
    status, other_host, age = live_status(info, run_dir)
    return replace(summary, status=status, pid=pid, host=other_host, heartbeat_age=age,
                   detached=info.get("detached") is True)


def _damaged(run_dir: Path, reason: str) -> RunSummary:
    return RunSummary(
        run_dir=run_dir, run_id=run_dir.name, status=DAMAGED, backbone="?", started="",
        train_dir="", val_dir="", best_val_accuracy=None, best_epoch=None,
        epochs_completed=0, epochs=None, weights_path=None, message=reason,
    )


def list_runs(root: Path | None = None) -> list[RunSummary]:
    """Past runs, newest first."""
    root = runs_root(root)
    if not root.is_dir():
        return []
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []
    runs = [read_run(p) for p in folders]
    return sorted((r for r in runs if r), key=_start_key, reverse=True)


def _start_key(run: RunSummary) -> str:
    """The start time for sorting; a damaged record has none: its folder name (a local
    time stamp, YYYYmmdd-HHMMSS-...) stands in."""
    if run.started:
        return run.started
    name = run.run_dir.name
    if len(name) >= 15 and name[:8].isdigit() and name[8] == "-" and name[9:15].isdigit():
        return f"{name[:4]}-{name[4:6]}-{name[6:8]}T{name[9:11]}:{name[11:13]}:{name[13:15]}"
    return ""


def find_run(ref: str, root: Path | None = None) -> Path | None:
    """A run folder from a path, a run id, or 'last'."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    runs = list_runs(root)
    if ref == "last":
        return runs[0].run_dir if runs else None
    for run in runs:
        if run.run_id == ref or run.run_dir.name == ref:
            return run.run_dir
    return None


def resume_config(
    run_dir: Path, epochs: int | None = None, given: Mapping[str, Any] | None = None
) -> TrainConfig:
    """The settings a run was started with (its config.json), for ``fit(config, ...,
    resume=run_dir)``, with the options ``given`` anew (and ``epochs``) applied by each
    option's resume rule (core/options.py ``resumed``: epochs may change but not below what
    is done, device/workers/... may change, the recipe must not). Raises ValueError with a
    readable message when the file is missing or damaged, or a given value cannot apply."""
    from dftui.core.config import TrainConfig
    from dftui.core.options import resumed

    path = Path(run_dir) / "config.json"
    try:
        config = TrainConfig.from_dict(read_json(path))
    except FileNotFoundError:
        raise ValueError(f"{run_dir} has no config.json; it cannot be resumed") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"the settings of run {run_dir} cannot be read ({path.name}: {exc})") from None
    changes = dict(given or {})
    if epochs is not None:
        changes["epochs"] = epochs
    if not changes:
        return config
    summary = read_run(run_dir)
    done = {"epochs": summary.epochs_completed} if summary is not None else {}
    return resumed(config, changes, done)


LONG_LOG_BYTES = 4 << 20  # beyond this a replay samples the batch events (see EventTail)
MAX_EVENT_LINE = 1024 * 1024  # an event is a few hundred bytes; a longer line is not ours


def read_events_checked(run_dir: Path) -> tuple[list[Event], list[str]]:
    """The recorded events, and the reasons of the lines that could not be used (cut by a
    crash, hand-edited, of a wrong type). Every line is untrusted: one bad line is skipped
    and reported, the rest still replay."""
    out: list[Event] = []
    problems: list[str] = []
    path = Path(run_dir) / "events.jsonl"
    if not path.is_file():
        return out, problems
    if path.stat().st_size > LONG_LOG_BYTES:
        # A long run: read as attaching does (batch events sampled, never all parsed);
        # damaged lines are counted rather than listed.
        tail = EventTail(path)
        try:
            out = tail.read()
        except LogGone:
            return [], []
        if tail.skipped_lines:
            problems.append(f"{tail.skipped_lines} line(s) damaged or not understood")
        return out, problems
    with open(path, "rb") as fh:
        number = 0
        while True:
            raw = fh.readline(MAX_EVENT_LINE + 1)
            if not raw:
                break
            number += 1
            if len(raw) > MAX_EVENT_LINE:
                while raw and not raw.endswith(b"\n"):  # skip the rest, a chunk at a time
                    raw = fh.readline(MAX_EVENT_LINE)
                problems.append(f"line {number}: too long to be an event")
                continue
            if not raw.strip():
                continue
            try:
                data = parse_json(raw)
                if isinstance(data, dict) and data.get("event") in NON_EVENT_KINDS:
                    continue  # the log's own records (header, heartbeat), not events
                out.append(event_from_dict(data))
            except ValueError as exc:
                problems.append(f"line {number}: {exc}")
    return out, problems


def read_events(run_dir: Path) -> list[Event]:
    """The recorded events (lines that cannot be used, e.g. cut by a crash, are skipped)."""
    return read_events_checked(run_dir)[0]


def note_outcome(run_dir: Path, cause: str | None) -> str | None:
    """After a distributed run's processes have ended, complete its record with what only
    the launcher saw (``cause``: a rank killed by a signal, a rank's own error). A record
    still saying "running" lost rank 0 itself: it becomes "interrupted" (resumable). Returns
    the run's status, or None when no record was written (the run never began)."""
    path = Path(run_dir) / "run.json"
    try:
        info = read_json(path, expect=None)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    status = str(info.get("status", "unknown"))
    changes: dict[str, Any] = {}
    pid = info.get("pid")
    if status == "running" and not (isinstance(pid, int) and pid_alive(pid)):
        status = "interrupted"
        changes.update(status=status, ended=datetime.now(UTC).isoformat(timespec="seconds"))
    if cause and cause not in str(info.get("message", "")):
        changes["message"] = cause if not info.get("message") else f"{info['message']} ({cause})"
    if changes:
        info.update(changes)
        try:
            save_json(info, path)
        except OSError:
            pass
    return status
