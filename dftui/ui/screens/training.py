"""Training: run ``dftui.core.train.fit`` in a thread worker and watch it live.

The engine only ever calls ``post_message`` (through ``emit``); every widget update happens
here on the UI thread. Stopping is cooperative (the engine checks the flag every batch) and
keeps the best weights; a failure is shown as its message and the app stays usable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static
from textual.worker import Worker, WorkerState

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
from dftui.ui.messages import BatchProgress, EngineEvent, wrap
from dftui.ui.widgets.hardware import HardwarePanel
from dftui.ui.widgets.navbar import NavBar
from dftui.ui.widgets.run_view import RunView

IDLE_TEXT = "No run yet: set one up on Setup (F2) and press ctrl+s there."






class TrainingScreen(Screen[None]):
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
    def start_run(self, config: Any, resume: Any = None) -> None:
        """Start ``config`` (a TrainConfig) in a thread worker; ``resume``: a run folder to
        continue (fit(resume=...))."""
        if self.running:
            raise RuntimeError("a run is already in progress")
        self.config = config
        self.running = True
        self.started = None
        self.final = None
        self.last_batch = None
        self.weights_path = None
        self.download = None
        self.events_seen = 0
        self.stop_flag = StopFlag()
        self.query_one(RunView).reset()
        self.query_one("#log", RichLog).clear()
        outcome = self.query_one("#outcome", Static)
        outcome.update("")
        outcome.set_classes("")
        self.query_one("#run-title", Static).update(
            f"starting {config.backbone} on {config.train_dir} (loading the engine…)"
        )
        self.query_one("#epoch-bar", ProgressBar).update(total=config.epochs, progress=0)
        # A known total: an indeterminate bar animates (and costs CPU) until the first batch.
        self.query_one("#batch-bar", ProgressBar).update(total=1, progress=0)
        self.query_one("#epoch-label", Label).update(f"epoch  0/{config.epochs}")
        self.query_one("#batch-label", Label).update("batch  -/-")
        self.query_one("#speed-label", Label).update("")
        self.query_one("#status-line", Static).update("")
        self._show_progress(True)
        self.refresh_bindings()
        self.worker = self._train(config, self.stop_flag, resume)

    @work(thread=True, exit_on_error=False, group="train")
    def _train(self, config: Any, stop: StopFlag, resume: Any = None) -> None:
        if config.workers is None or config.workers > 0:
            from dftui.ui.workers import prepare_multiprocessing

            # On the UI thread: it may briefly swap sys.stderr for a real file.
            self.app.call_from_thread(prepare_multiprocessing)
        post = self.post_message

        def emit(event: Event) -> None:
            post(wrap(event))

        try:
            from dftui.core.train import fit

            fit(config, emit, stop, resume=resume)  # the final event arrives through emit as well
        except Exception as exc:  # noqa: BLE001 - fit should not raise; if it does, say so
            post(wrap(RunFailed(message=f"the engine crashed: {type(exc).__name__}: {exc}")))

    def action_stop(self) -> None:
        if not self.running or self.stop_flag is None:
            self.notify("no run in progress", severity="warning")
            return
        if self.stop_flag.is_set():
            return
        self.stop_flag.request("stopped")
        self._log("info", "stop requested: finishing the current batch, best weights are kept")
        self.query_one("#run-title", Static).update(self._title_text() + " · stopping…")

    async def stop_and_wait(self, reason: str = "interrupted") -> None:
        """Ask the run to stop and wait until its thread has ended (used when quitting)."""
        if self.stop_flag is not None:
            self.stop_flag.request(reason)
        if self.worker is not None:
            await self.worker.wait()

    async def action_classify(self) -> None:
        if not self.weights_path:
            self.notify("no weights from this run yet", severity="warning")
            return
        await self.app.open_screen("classify", weights=Path(self.weights_path))  # type: ignore[attr-defined]

    async def action_new_run(self) -> None:
        await self.app.open_screen("setup")  # type: ignore[attr-defined]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.running
        if action == "classify":
            return bool(self.weights_path) and not self.running
        if action == "new_run":
            return not self.running
        return True

    # -- events from the engine --------------------------------------------------------------
    def on_batch_progress(self, message: BatchProgress) -> None:
        view = self.query_one(RunView)
        for event in message.events:
            view.feed(event)
        self.events_seen += len(message.events)
        self._show_batch(message.event)

    def on_engine_event(self, message: EngineEvent) -> None:
        self.show_event(message.event)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.worker:
            return
        if event.state == WorkerState.ERROR and self.running:
            error = event.worker.error
            self._fail(RunFailed(message=f"the engine crashed: {type(error).__name__}: {error}"))
        elif event.state in (WorkerState.SUCCESS, WorkerState.CANCELLED) and self.running:
            # fit returned without a final event reaching us (should not happen).
            self._set_idle()

    def show_event(self, event: Event) -> None:
        """Apply one core event to the screen (the live path, also used by tests)."""
        self.events_seen += 1
        view = self.query_one(RunView)
        if isinstance(event, BatchEnd):
            view.feed(event)
            self._show_batch(event)
        elif isinstance(event, RunStarted):
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
            self._log(event.level, event.text)
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
            self._finish(event)
        elif isinstance(event, RunFailed):
            self._fail(event)

    # -- drawing ------------------------------------------------------------------------
    def _title_text(self) -> str:
        s = self.started
        if s is None:
            cfg = self.config
            return f"{cfg.backbone} · {cfg.train_dir}" if cfg is not None else IDLE_TEXT
        cfg = s.config
        return (
            f"{cfg.get('backbone')} · train {s.train_size} ({s.train_counts.get('real', 0)} real / "
            f"{s.train_counts.get('fake', 0)} fake) · val {s.val_size} · batch "
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
        self.query_one("#speed-label", Label).update(
            f" {event.images_per_s:,.0f} img/s · ETA {format_duration(event.eta_s)}"
        )
        self._show_status(event)

    def _show_status(self, event: BatchEnd | None) -> None:
        s = self.started
        parts = []
        if s is not None:
            parts.append(f"{s.device_name} ({s.device})")
            parts.append(s.precision)
            parts.append(f"{s.workers} workers")
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
        self._show_progress(False)
        self.refresh_bindings()

    def _finish(self, event: RunFinished) -> None:
        self.final = event
        self.weights_path = event.weights_path
        key = self.app.key_display_for("training.classify", "c")  # type: ignore[attr-defined]
        if event.status == "finished":
            head = f"✓ Finished {event.epochs_completed} epoch(s) in {format_duration(event.seconds)}"
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
        lines = ["✗ The run failed", event.message]
        if event.weights_path:
            lines.append(f"the best weights so far are kept: {event.weights_path}")
        outcome = self.query_one("#outcome", Static)
        outcome.update("\n".join(lines))
        outcome.set_classes("failed")
        self._log("error", event.message)
        self._set_idle()
