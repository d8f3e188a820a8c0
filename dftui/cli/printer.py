"""The CLI's event listener: Rich progress on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from dftui.core.balance import Imbalance
from dftui.core.early_stop import outcome_text, recipe_notes
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
    format_duration,
)


def log_text(event: LogMessage) -> str:
    """The message with its ways out as options (the event keeps them as settings)."""
    from dftui.cli.advice import with_advice
    from dftui.core.advice import decode_all

    return with_advice(event.text, decode_all(event.fixes))


def failure_text(event: RunFailed) -> str:
    from dftui.cli.advice import with_advice
    from dftui.core.advice import decode_all

    return with_advice(event.message, decode_all(event.fixes))



def _epoch_line(e: EpochEnd) -> str:
    best = "  *best" if e.is_best else ""
    return (
        f"epoch {e.epoch}/{e.epochs}  train_loss {e.train_loss:.4f}  val_loss {e.val_loss:.4f}  "
        f"val_acc {e.val_accuracy:.4f}  P {e.val_precision:.3f}  R {e.val_recall:.3f}  "
        f"F1 {e.val_f1:.3f}  {e.seconds:.1f}s  {e.images_per_s:.1f} img/s{best}"
        + (f"  (EMA; trained model: val_loss {e.raw_val_loss:.4f} val_acc {e.raw_val_accuracy:.4f})"
           if e.raw_val_loss is not None and e.raw_val_accuracy is not None else "")
    )


def _started_line(e: RunStarted) -> str:
    line = (
        f"run {e.run_id}: {e.config['backbone']} on {e.device} ({e.device_name}, {e.precision}), "
        f"train {e.train_size} ({e.train_counts['real']} real / {e.train_counts['fake']} fake, "
        f"{_ratio(e.train_counts)}, class balancing: {e.config.get('balance', 'none')}), "
        f"val {e.val_size}, {e.steps_per_epoch} steps/epoch, {e.workers} loader worker{'' if e.workers == 1 else 's'}; "
        f"best weights go to {e.config.get('weights_path')}"
    )
    world = e.config.get("world_size")
    if isinstance(world, int) and world > 1:  # a distributed run (dftui train --nproc-per-node)
        line += (
            f"; {world} processes ({e.config.get('backend')}), batch "
            f"{e.config.get('batch_per_process')} per process, {e.config.get('batch_size')} global"
        )
    notes = _optimisation_notes(e.config) + recipe_notes(e.config)
    if e.config.get("calibrate") is True:
        notes.append("temperature calibration on the validation set after training")
    if notes:
        line += "; " + ", ".join(notes)
    return line


def _optimisation_notes(config: dict[str, Any]) -> list[str]:
    """The optimiser, schedule, accumulation and label smoothing where they differ from
    the reference, read from the recorded config (untrusted: odd values shown as they are)."""
    notes = []
    name, decay = config.get("optimizer", "adam"), config.get("weight_decay") or 0
    if name != "adam" or decay:
        extra = [f"momentum {config.get('momentum')}"] if name == "sgd" else []
        if decay:
            extra.append(f"weight decay {decay}")
        notes.append(f"{name}" + (f" ({', '.join(extra)})" if extra else ""))
    schedule, warmup = config.get("lr_schedule", "none"), config.get("warmup_epochs") or 0
    if schedule != "none":
        notes.append(f"{schedule} learning-rate schedule"
                     + (f" after {warmup} warm-up epoch(s)" if warmup else ""))
    steps, batch = config.get("accum_steps", 1), config.get("batch_size")
    if isinstance(steps, int) and steps > 1 and isinstance(batch, int):
        notes.append(f"batch {batch} × {steps} accumulated steps = effective batch {batch * steps}")
    smoothing = config.get("label_smoothing")
    if smoothing:
        notes.append(f"label smoothing {smoothing}")
    return notes


def _ratio(counts: dict[str, int]) -> str:
    text = Imbalance(counts).describe()
    return text[text.rfind("(") + 1:-1]  # "ratio 4.00:1" or "one class is empty"


def escape(text: str) -> str:
    """Text for Rich markup: a file name holding "[/]" must print, not raise MarkupError."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def shown_path(path: str | None) -> str:
    """A recorded (absolute) path as the user would type it: relative to the current folder
    when it lies below it, else as recorded."""
    import os

    if not path:
        return str(path)
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel == ".." or rel.startswith(".." + os.sep) else rel


def _finished_line(e: RunFinished) -> str:
    if not e.run_dir:
        return f"run {e.status} before it started; nothing was trained or recorded"
    status = outcome_text(e.status, e.early_stop_epoch)
    if e.best_epoch is None:
        return f"run {status} after {e.epochs_completed} epoch(s); no weights saved; record: {e.run_dir}"
    calibrated = ""
    if e.temperature is not None:
        ece = (f", validation ECE {e.ece_before:.4f} → {e.ece_after:.4f}"
               if e.ece_before is not None and e.ece_after is not None else "")
        calibrated = f", calibrated (T={e.temperature:.3g}{ece})"
    return (
        f"run {status}: best epoch {e.best_epoch} (val_acc {e.best_val_accuracy:.4f}) "
        f"saved to {shown_path(e.weights_path)}{calibrated}; record: {e.run_dir}"
    )


class PlainPrinter:
    """Lines for logs and pipes: nothing per batch."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        # The streams of the moment, not those of import time (a test's capture, a redirect).
        self.out, self.err = out or sys.stdout, err or sys.stderr

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.out.write(_started_line(event) + "\n")
        elif isinstance(event, EpochEnd):
            self.out.write(_epoch_line(event) + "\n")
        elif isinstance(event, LogMessage) and event.level != "info":
            self.err.write(f"{event.level}: {log_text(event)}\n")
        elif isinstance(event, RunFinished):
            self.out.write(_finished_line(event) + "\n")
        elif isinstance(event, DownloadProgress) and event.done_bytes == event.total_bytes:
            self.err.write(f"downloaded {event.file}\n")
        self.out.flush()

    def close(self) -> None:
        pass


class RichPrinter:
    """Progress bars for the epoch and the run, with speed and ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.run_task: int | None = None
        self.batch_task: int | None = None
        self.download_task: int | None = None

    def __call__(self, event: Event) -> None:
        p = self.progress
        if isinstance(event, RunStarted):
            self.console.print(_started_line(event), markup=False)
            p.start()
            self.run_task = p.add_task(
                "run", total=event.config["epochs"], completed=event.start_epoch, info=""
            )
            self.batch_task = p.add_task("epoch", total=event.steps_per_epoch, info="")
        elif isinstance(event, BatchEnd) and self.batch_task is not None:
            eta = f"ETA {format_duration(event.eta_s)}" if event.eta_s is not None else ""
            label = f"epoch {event.epoch}" if event.phase == "train" else f"val {event.epoch}"
            p.update(
                self.batch_task,
                description=label,
                total=event.batches,
                completed=event.batch,
                info=f"loss {event.loss:.4f}  {event.images_per_s:.1f} img/s  {eta}",
            )
        elif isinstance(event, EpochEnd):
            p.console.print(_epoch_line(event), markup=False)
            if self.run_task is not None:
                p.update(self.run_task, completed=event.epoch, info=f"best epoch {event.best_epoch}")
        elif isinstance(event, LogMessage):
            style = {"warning": "yellow", "error": "red"}.get(event.level, "dim")
            p.console.print(f"[{style}]{event.level}: {escape(log_text(event))}[/]", markup=True,
                            highlight=False)
        elif isinstance(event, DownloadProgress):
            if self.download_task is None:
                p.start()
                self.download_task = p.add_task(
                    f"download {event.file}", total=event.total_bytes, info=""
                )
            p.update(self.download_task, completed=event.done_bytes)
        elif isinstance(event, CheckpointSaved) and event.role == "best":
            p.console.print(f"[green]saved best weights (epoch {event.epoch}) to "
                            f"{escape(shown_path(event.path))}[/]")
        elif isinstance(event, RunFinished):
            p.stop()
            self.console.print(_finished_line(event), markup=False)
        elif isinstance(event, RunFailed):
            p.stop()

    def close(self) -> None:
        self.progress.stop()



def wants_rich(force_plain: bool = False) -> bool:
    """Rich output (colour, live progress bars) only on a terminal: a pipe or a log file gets
    plain lines, as does anyone who asked for --plain."""
    return not force_plain and sys.stdout.isatty()


class Printer(Protocol):
    """What every command's event listener offers: take an event, close at the end."""

    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


def make_printer(
    force_plain: bool = False,
    plain: Callable[[], Printer] = PlainPrinter,
    rich: Callable[[], Printer] = RichPrinter,
) -> Printer:
    """The listener for a command's events: ``rich`` on a terminal, else ``plain``. The
    defaults print training; ``dftui prepare`` passes its own pair."""
    return rich() if wants_rich(force_plain) else plain()
