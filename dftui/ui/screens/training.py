"""Training: watch a run live, from its event log.

A run is started in a process of its own (a background run, which outlives the dashboard)
or in a thread worker of the dashboard; either way it writes its event log, and this screen
shows it one way only: by following that log (``EventTail``), history first, then live. So
attaching to a run started elsewhere (another terminal, an earlier dashboard, `dftui train
--detach`) shows exactly what its own dashboard would, from epoch 1. Stopping is cooperative
(the engine checks every batch) and keeps the best weights; a failure is shown as its
message and the app stays usable."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static
from textual.worker import Worker, WorkerState

from dftui.core.advice import decode_all
from dftui.core.eventlog import EVENTS_FILE, EventTail, LogGone
from dftui.core.events import (
    BatchEnd,
    CheckpointSaved,
    DownloadProgress,
    EpochEnd,
    Event,
    LogMessage,
    RunFailed,
    RunFinished,
    RunStarted,
    StopFlag,
    format_duration,
)
from dftui.ui.advice import with_advice
from dftui.ui.messages import coalesce
from dftui.ui.screens.base import DftuiScreen
from dftui.ui.widgets.hardware import HardwarePanel
from dftui.ui.widgets.navbar import NavBar
from dftui.ui.widgets.run_view import RunView

IDLE_TEXT = "No run yet: set one up on Setup (F2) and press ctrl+s there."
POLL_S = 0.25  # how often the followed log is checked (a stat; reads only what was added)
STATUS_EVERY_S = 1.0  # how often the run's process is checked while following it
POLL_BUDGET = 4 << 20  # bytes read per poll on the UI thread; the rest at the next one


class HistoryRead(Message):
    """The events a run logged before this screen followed it (read in a thread)."""

    def __init__(self, generation: int, events: list[Event], error: str = "") -> None:
        super().__init__()
        self.generation = generation
        self.events = events
        self.error = error



class TrainingScreen(DftuiScreen[None]):
    TITLE = "Training"
    BINDINGS = [
        Binding("s", "stop", "Stop run", id="training.stop"),
        Binding("c", "classify", "Classify with weights", id="training.classify"),
        Binding("n", "new_run", "New run", id="training.new"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.running = False
        self.config: Any = None
        self.stop_flag: StopFlag | None = None
        self.worker: Worker[Any] | None = None
        self.started: RunStarted | None = None
        self.final: RunFinished | RunFailed | None = None
        self.last_batch: BatchEnd | None = None
        self.weights_path: str | None = None
        self.download: DownloadProgress | None = None
        self.events_seen = 0
        self.run_dir: Path | None = None  # the run followed
        self.background = False  # it runs in a process of its own
        self.tail: EventTail | None = None
        self._generation = 0  # bumps with every run followed: late messages are dropped
        self._poller: Timer | None = None
        self._last_status = 0.0
        self._attempt_elapsed = 0.0  # elapsed seconds of the attempt being read
        self._prior_seconds = 0.0  # time of earlier attempts of a resumed run
        self._pending_end: RunFinished | RunFailed | None = None
        self.thread_done: threading.Event | None = None  # set when an in-process run ends

    def compose(self) -> ComposeResult:
        yield NavBar("training")
        with Vertical(id="train-head"):
            yield Static(IDLE_TEXT, id="run-title")
            with Horizontal(classes="progress-row", id="epoch-row"):
                yield Label("epoch  -/-", id="epoch-label", classes="progress-label")
                yield ProgressBar(id="epoch-bar", show_eta=False)
            with Horizontal(classes="progress-row", id="batch-row"):
                yield Label("batch  -/-", id="batch-label", classes="progress-label")
                yield ProgressBar(id="batch-bar", show_eta=False)
                yield Label("", id="speed-label")
            yield Static("", id="status-line")
            yield HardwarePanel(id="hardware")
            yield Static("", id="outcome")
        yield RunView(id="run-view")
        yield RichLog(id="log", max_lines=1000, wrap=True, markup=False, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log", RichLog).border_title = "log"
        self._show_progress(False)

    # -- starting and stopping -------------------------------------------------------------
    def start_run(self, config: Any, resume: Any = None, detach: bool = False, nproc: int = 1) -> bool:
        """Start ``config`` (a TrainConfig) and follow it: ``detach``: in a process of its
        own that outlives the dashboard, else in a thread worker. ``resume``: a run folder to
        continue. False (and a notification saying why) when it cannot start."""
        if self.running:
            raise RuntimeError("a run is already in progress")
        from dftui.core.background import LaunchError, launch_detached, prepare_run

        # Several processes: the run is torchrun's launcher (dftui/cli/launch.py), detached,
        # taking its settings from the folder prepared here.
        command = ["train", "--nproc-per-node", str(nproc)] if nproc > 1 else None
        detach = detach or command is not None
        try:
            if detach:
                run_dir, _pid = launch_detached(config, Path(resume) if resume else None, command)
            else:
                run_dir = prepare_run(config, Path(resume) if resume else None).run_dir
        except LaunchError as exc:
            self.notify(str(exc), title="Cannot start", severity="error", timeout=10)
            return False
        self.config = config
        self.stop_flag = None if detach else StopFlag()
        self._follow(run_dir, background=detach, title=(
            f"starting {config.backbone} on {config.train_dir} "
            + ("in the background (loading the engine…)" if detach else "(loading the engine…)")))
        if not detach:
            assert self.stop_flag is not None
            self.thread_done = threading.Event()
            self.worker = self._train(run_dir, self.stop_flag, config, self.thread_done)
        return True

    def attach(self, run_dir: Path) -> None:
        """Follow a run started elsewhere (a background run, another dashboard's)."""
        if self.running:
            raise RuntimeError("a run is already in progress")
        self.config = None
        self.stop_flag = None
        self._follow(Path(run_dir), background=True, title=f"attaching to {Path(run_dir).name}…")

    def _follow(self, run_dir: Path, background: bool, title: str) -> None:
        self._generation += 1
        self.run_dir = run_dir
        self.background = background
        self.worker = None
        self.running = True
        self.started = None
        self.final = None
        self.last_batch = None
        self.weights_path = None
        self.download = None
        self.events_seen = 0
        self._attempt_elapsed = 0.0
        self._prior_seconds = 0.0
        self._pending_end = None
        self.tail = EventTail(run_dir / EVENTS_FILE)
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        self.query_one(RunView).reset()
        self.query_one("#log", RichLog).clear()
        outcome = self.query_one("#outcome", Static)
        outcome.update("")
        outcome.set_classes("")
        self.query_one("#run-title", Static).update(title)
        epochs = self.config.epochs if self.config is not None else 1
        self.query_one("#epoch-bar", ProgressBar).update(total=epochs, progress=0)
        # A known total: an indeterminate bar animates (and costs CPU) until the first batch.
        self.query_one("#batch-bar", ProgressBar).update(total=1, progress=0)
        self.query_one("#epoch-label", Label).update(
            f"epoch  0/{epochs}" if self.config is not None else "epoch  -/-")
        self.query_one("#batch-label", Label).update("batch  -/-")
        self.query_one("#speed-label", Label).update("")
        self.query_one("#status-line", Static).update("")
        self._show_progress(True)
        self.refresh_bindings()
        self._read_history(self._generation, self.tail)

    @work(thread=True, exit_on_error=False, group="history", exclusive=True)
    def _read_history(self, generation: int, tail: EventTail) -> None:
        # A long run's log can be hundreds of MB: read (thinned) off the UI thread.
        try:
            events = tail.read()
            self.post_message(HistoryRead(generation, events))
        except LogGone:
            self.post_message(HistoryRead(generation, []))
        except OSError as exc:
            self.post_message(HistoryRead(generation, [], f"cannot read {tail.path}: {exc}"))

    def on_history_read(self, message: HistoryRead) -> None:
        if message.generation != self._generation:
            return
        if message.error:
            self._log("error", message.error)
        self._apply(message.events)
        self.query_one(RunView).flush()
        if self.running and self._poller is None:
            self._poller = self.set_interval(POLL_S, self._poll)

    def _poll(self) -> None:
        """Read what the run added to its log; notice a run whose process is gone."""
        tail = self.tail
        if tail is None or not self.running:
            return
        try:
            events = tail.read(budget_bytes=POLL_BUDGET)
        except LogGone:
            events = []
            if self.run_dir is not None and not self.run_dir.exists():
                self._lost(f"the run folder {self.run_dir} was deleted; nothing more to follow")
                return
        except OSError as exc:
            self._lost(f"cannot read {tail.path}: {exc}")
            return
        self._apply(events)
        now = time.monotonic()
        if self.running and self.worker is None and now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self._check_process()

    def _check_process(self) -> None:
        """A background run whose process is gone without an end record was interrupted."""
        from dftui.core.runs import read_run

        assert self.run_dir is not None
        run = read_run(self.run_dir)
        if run is None or run.live:
            return
        try:
            self._apply(self.tail.read() if self.tail else [])  # the end may have just landed
        except (LogGone, OSError):
            pass
        if not self.running:
            return
        if run.status == "interrupted" or run.status not in ("finished", "stopped", "failed"):
            self._lost(f"run {run.run_id} was interrupted: its process is gone without an end "
                       "record. Resume it from the Runs screen (F5, r)", status="interrupted")
        elif run.status == "failed":
            self._fail(RunFailed(message=run.message or "the run failed", run_dir=str(self.run_dir),
                                 weights_path=run.weights_path))
        else:
            self._finish(self._final_from_record(run))

    def _final_from_record(self, run: Any) -> RunFinished:
        # run.json names the weights only at the end; the log said where the best went.
        weights = run.weights_path or self.weights_path
        return RunFinished(run.status, run.epochs_completed, run.best_epoch,
                           run.best_val_accuracy if weights else None, weights, None,
                           str(run.run_dir), self._prior_seconds + self._attempt_elapsed,
                           early_stop_epoch=run.early_stop_epoch)

    def _lost(self, text: str, status: str = "") -> None:
        if status:
            from dftui.core.runs import read_run

            run = read_run(self.run_dir) if self.run_dir is not None else None
            if run is not None:
                final = self._final_from_record(run)
                self._finish(RunFinished(status, final.epochs_completed, final.best_epoch,
                                         final.best_val_accuracy, final.weights_path, None,
                                         final.run_dir, final.seconds))
                self._log("warning", text)
                return
        self._log("error", text)
        outcome = self.query_one("#outcome", Static)
        outcome.update(f"✗ {text}")
        outcome.set_classes("failed")
        self._set_idle()

    def _apply(self, events: list[Event]) -> None:
        view = self.query_one(RunView)
        # The bridge's rule (ui/messages.py): a long history holds thousands of batches; the
        # chart takes every one, the progress widgets only the last of a run of them.
        for group in coalesce(events):
            event = group[-1]
            if isinstance(event, BatchEnd):
                for batch in group:
                    view.feed(batch)
                self.events_seen += len(group)
                self._attempt_elapsed = event.elapsed_s
                self._show_batch(event)
                continue
            if isinstance(event, (RunFinished, RunFailed)) and self.tail is not None:
                if event is not self.tail.ended:
                    self._attempt_over(event)  # a resume followed it in the log
                    continue
                if self._record_live():
                    # The run's record still says running: a resume about to write on, or
                    # the record a moment behind its log. The next polls decide.
                    self._pending_end = event
                    continue
            self.show_event(event)
        self._settle_pending()

    def _settle_pending(self) -> None:
        pending = self._pending_end
        if pending is None or self.tail is None:
            return
        if self.tail.ended is not pending:
            self._attempt_over(pending)  # a new attempt started after it
            self._pending_end = None
        elif not self._record_live():
            self._pending_end = None
            self.show_event(pending)

    def _record_live(self) -> bool:
        if self.worker is not None and not self.worker.is_finished:
            return True
        from dftui.core.runs import read_run

        run = read_run(self.run_dir) if self.run_dir is not None else None
        return run is not None and run.live

    def _attempt_over(self, event: RunFinished | RunFailed) -> None:
        if isinstance(event, RunFinished):
            self._attempt_elapsed = event.seconds
            self._log("info", f"an earlier attempt {event.status} after epoch "
                              f"{event.epochs_completed}; the run was resumed")
        else:
            self._log("warning", f"an earlier attempt failed: {event.message}")

    @work(thread=True, exit_on_error=False, group="train")
    def _train(self, run_dir: Path, stop: StopFlag, config: Any, done: threading.Event) -> Event:
        try:
            if config.workers is None or config.workers > 0:
                from dftui.ui.workers import prepare_multiprocessing

                # On the UI thread: it may briefly swap sys.stderr for a real file.
                self.app.call_from_thread(prepare_multiprocessing)
            from dftui.core.background import run_prepared

            # Nothing is posted from here: the screen reads the run's log, as for any run.
            return run_prepared(run_dir, stop)
        finally:
            done.set()  # launch() waits on it should the app end first (see there)

    def action_stop(self) -> None:
        if not self.running:
            self.notify("no run in progress", severity="warning")
            return
        if self.stop_flag is not None:
            if self.stop_flag.is_set():
                return
            self.stop_flag.request("stopped")
        else:
            from dftui.core.eventlog import request_stop

            assert self.run_dir is not None
            try:
                request_stop(self.run_dir)  # the run's own process watches for it
            except OSError as exc:
                self.notify(f"cannot ask the run to stop: {exc}", severity="error", timeout=8)
                return
        self._log("info", "stop requested: finishing the current batch, best weights are kept")
        self.query_one("#run-title", Static).update(self._title_text() + " · stopping…")

    @property
    def in_process(self) -> bool:
        """A run in this dashboard's thread (quitting ends it), not a background one."""
        return self.running and self.worker is not None

    async def stop_and_wait(self, reason: str = "interrupted") -> None:
        """Ask an in-process run to stop and wait until its thread has ended (quitting)."""
        if self.stop_flag is not None:
            self.stop_flag.request(reason)
        if self.worker is not None:
            await self.worker.wait()
        self._poll_to_end()

    def _poll_to_end(self) -> None:
        if self.running and self.tail is not None:
            try:
                self._apply(self.tail.read())
            except (LogGone, OSError):
                pass

    async def action_classify(self) -> None:
        if not self.weights_path:
            self.notify("no weights from this run yet", severity="warning")
            return
        await self.app.open_screen("classify", weights=Path(self.weights_path))

    async def action_new_run(self) -> None:
        await self.app.open_screen("setup")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.running
        if action == "classify":
            return bool(self.weights_path) and not self.running
        if action == "new_run":
            return not self.running
        return True

    # -- events from the engine --------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.worker or not self.running:
            return
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self._fail(RunFailed(message=f"the engine crashed: {type(error).__name__}: {error}"))
        elif event.state in (WorkerState.SUCCESS, WorkerState.CANCELLED):
            # The run's end is in its log: read it now. Should the log be unwritable (a full
            # disk), the worker's own result still ends the screen's run.
            self._poll_to_end()
            result = event.worker.result
            if self.running and isinstance(result, (RunFinished, RunFailed)):
                self.show_event(result)
            elif self.running:
                self._set_idle()

    def show_event(self, event: Event) -> None:
        """Apply one core event to the screen (the live path, also used by tests)."""
        self.events_seen += 1
        view = self.query_one(RunView)
        if isinstance(event, BatchEnd):
            view.feed(event)
            self._attempt_elapsed = event.elapsed_s
            self._show_batch(event)
        elif isinstance(event, RunStarted):
            if self.started is not None or self.final is not None:
                # A resume of the run: it goes on after an earlier attempt's end.
                self._prior_seconds += self._attempt_elapsed
                self._attempt_elapsed = 0.0
                self._resumed()
            self.started = event
            view.feed(event)
            self.query_one("#run-title", Static).update(self._title_text())
            self.query_one("#epoch-bar", ProgressBar).update(
                total=int(event.config.get("epochs", 1)), progress=event.start_epoch
            )
            self._show_status(None)
        elif isinstance(event, EpochEnd):
            view.feed(event)
            self.query_one("#epoch-bar", ProgressBar).update(total=event.epochs, progress=event.epoch)
            self.query_one("#epoch-label", Label).update(f"epoch {event.epoch:>2}/{event.epochs}")
            best = " ★ best" if event.is_best else ""
            self._log("info", f"epoch {event.epoch}/{event.epochs}: val acc "
                              f"{event.val_accuracy * 100:.2f}%, val loss {event.val_loss:.4f}{best}")
        elif isinstance(event, LogMessage):
            self._log(event.level, with_advice(event.text, decode_all(event.fixes)))
        elif isinstance(event, CheckpointSaved):
            if event.role == "best":
                self.weights_path = event.path
                self._log("info", f"best weights saved (epoch {event.epoch}): {event.path}")
        elif isinstance(event, DownloadProgress):
            self.download = event
            total = f"{event.total_bytes / 2**20:.0f}" if event.total_bytes else "?"
            self.query_one("#status-line", Static).update(
                f"downloading {event.file}: {event.done_bytes / 2**20:.0f}/{total} MiB"
            )
        elif isinstance(event, RunFinished):
            self._attempt_elapsed = event.seconds
            self._finish(event)
        elif isinstance(event, RunFailed):
            self._fail(event)

    def _resumed(self) -> None:
        """An earlier attempt ended in the log and the run went on: it is not over."""
        if self.final is not None:
            self.final = None
            outcome = self.query_one("#outcome", Static)
            outcome.update("")
            outcome.set_classes("")
            self.running = True
            self._show_progress(True)
            self.refresh_bindings()

    # -- drawing ------------------------------------------------------------------------
    def _title_text(self) -> str:
        s = self.started
        if s is None:
            cfg = self.config
            return f"{cfg.backbone} · {cfg.train_dir}" if cfg is not None else IDLE_TEXT
        cfg = s.config
        # The class balancing chosen (the log says the imbalance it answers).
        balance = cfg.get("balance")
        balanced = f" · balance {balance}" if isinstance(balance, str) and balance != "none" else ""
        return (
            f"{cfg.get('backbone')} · train {s.train_size} ({s.train_counts.get('real', 0)} real / "
            f"{s.train_counts.get('fake', 0)} fake){balanced} · val {s.val_size} · batch "
            f"{cfg.get('batch_size')} · lr {cfg.get('lr'):g}"
        )

    def _show_batch(self, event: BatchEnd) -> None:
        self.last_batch = event
        phase = "train" if event.phase == "train" else "val  "
        self.query_one("#batch-label", Label).update(
            f"{phase} {event.batch:>4}/{event.batches}"
        )
        self.query_one("#batch-bar", ProgressBar).update(total=event.batches, progress=event.batch)
        self.query_one("#epoch-label", Label).update(
            f"epoch {event.epoch:>2}/{event.epochs}"
        )
        # The engine's ETA is the whole run's; on the batch row say so, and give this epoch's
        # share of it (training batches left over all batches left, a uniform-speed guess).
        left_here = event.batches - event.batch
        left_run = left_here + (event.epochs - event.epoch) * event.batches
        epoch_left = ""
        if event.phase == "train" and event.eta_s is not None and left_run > 0:
            epoch_left = f" · epoch {format_duration(event.eta_s * left_here / left_run)}"
        self.query_one("#speed-label", Label).update(
            f" {event.images_per_s:,.0f} img/s{epoch_left} · run ETA {format_duration(event.eta_s)}"
        )
        self._show_status(event)

    def _show_status(self, event: BatchEnd | None) -> None:
        s = self.started
        parts = []
        if s is not None:
            parts.append(f"{s.device_name} ({s.device})")
            parts.append(s.precision)
            parts.append(f"{s.workers} worker{'' if s.workers == 1 else 's'}")
        if event is not None:
            if event.phase == "train":
                parts.append(f"data wait {event.data_wait * 100:.0f}%")
            parts.append(f"RSS {event.rss_mb:,.0f} MiB")
            if event.gpu_mb is not None:
                parts.append(f"GPU {event.gpu_mb:,.0f} MiB")
        self.query_one("#status-line", Static).update(" · ".join(parts))

    def _log(self, level: str, text: str) -> None:
        style = {"warning": "yellow", "error": "bold red"}.get(level, "")
        prefix = {"warning": "⚠ ", "error": "✗ "}.get(level, "")
        self.query_one("#log", RichLog).write(Text(prefix + text, style=style))

    def _show_progress(self, visible: bool) -> None:
        for widget_id in ("#epoch-row", "#batch-row"):
            self.query_one(widget_id).display = visible

    def _set_idle(self) -> None:
        self.running = False
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        self._show_progress(False)
        self.refresh_bindings()

    def _finish(self, event: RunFinished) -> None:
        self.final = event
        self.weights_path = event.weights_path
        key = self.app.key_display_for("training.classify", "c")
        total = self._prior_seconds + event.seconds  # a resumed run: every attempt
        if event.status == "finished":
            head = f"✓ Finished {event.epochs_completed} epoch(s) in {format_duration(total)}"
            if event.early_stop_epoch is not None:
                head += f" (early stop at epoch {event.early_stop_epoch})"
            if self._prior_seconds:
                head += " (resumed)"
        else:
            head = f"■ {event.status.capitalize()} after {event.epochs_completed} epoch(s)"
        lines = [head]
        if event.weights_path:
            acc = event.best_val_accuracy or 0.0
            lines[0] += f" · best epoch {event.best_epoch}, val acc {acc * 100:.2f}%"
            lines.append(f"weights: {event.weights_path} · {key} classifies with them")
        else:
            lines.append("no epoch completed, so no weights were saved")
        outcome = self.query_one("#outcome", Static)
        outcome.update("\n".join(lines))
        outcome.set_classes("done")
        self._log("info", head.lstrip("✓■ "))
        self._set_idle()
        self.query_one("#run-title", Static).update(self._title_text())

    def _fail(self, event: RunFailed) -> None:
        self.final = event
        if event.weights_path:
            self.weights_path = event.weights_path
        message = with_advice(event.message, decode_all(event.fixes))  # fields, not flags
        lines = ["✗ The run failed", message]
        if event.weights_path:
            lines.append(f"the best weights so far are kept: {event.weights_path}")
        outcome = self.query_one("#outcome", Static)
        outcome.update("\n".join(lines))
        outcome.set_classes("failed")
        self._log("error", message)
        # The header said "starting … (loading the engine…)": say how it ended instead.
        known = self.started is not None or self.config is not None
        self.query_one("#run-title", Static).update(
            f"{self._title_text()} · failed" if known else "The run failed")
        self._set_idle()
