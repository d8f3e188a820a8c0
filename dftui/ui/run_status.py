"""The one-line status of the run the dashboard follows, for the header of every screen:
"▶ mobilenet_v2 · epoch 3/8 · 61% · ETA 04:12 · best 87.5%".

It is read from the Training screen, which gets every event of the run (its last batch, its
epoch table, its final event), so the header and the Training screen never disagree. The
header polls once a second (``STATUS_EVERY_S``) and repaints only when the text changed."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from rich.text import Text

from dftui.core.early_stop import outcome_text
from dftui.core.events import BatchEnd, RunFailed, RunFinished, format_duration

STATUS_EVERY_S = 1.0

# Training screen -> the final event the user has seen there: once seen, the header drops it.
_seen_end: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


def mark_end_seen(training: Any) -> None:
    final = getattr(training, "final", None)
    if final is not None:
        _seen_end[training] = final


def progress_fraction(batch: BatchEnd) -> float:
    """How much of the whole run is done at this batch (validation counts as the epoch's end)."""
    epochs = max(1, batch.epochs)
    within = batch.batch / max(1, batch.batches) if batch.phase == "train" else 1.0
    return min(1.0, max(0.0, (batch.epoch - 1 + within) / epochs))


def _best(view: Any) -> tuple[float, int] | None:
    rows = getattr(view, "rows", None) or {}
    best = getattr(view, "best_epoch", None)
    if best in rows:
        return rows[best].val_accuracy, best
    return None


def status_text(training: Any, view: Any = None) -> Text | None:
    """The header line for the Training screen's run, or None when there is nothing to say
    (no run yet, or its end was already seen on the Training screen)."""
    if training is None:
        return None
    running = bool(getattr(training, "running", False))
    final = getattr(training, "final", None)
    started = getattr(training, "started", None)
    config = getattr(training, "config", None)
    backbone = (started.config.get("backbone") if started is not None
                else getattr(config, "backbone", None)) or "run"
    best = _best(view)
    best_text = f" · best {best[0] * 100:.1f}%" if best else ""
    if running:
        text = Text("▶ ", style="bold green")
        text.append(str(backbone), style="bold")
        batch = getattr(training, "last_batch", None)
        if isinstance(batch, BatchEnd):
            text.append(f" · epoch {batch.epoch}/{batch.epochs}")
            text.append(f" · {progress_fraction(batch) * 100:.0f}%")
            text.append(f" · ETA {format_duration(batch.eta_s)}")
        else:
            text.append(" · starting…", style="dim")
        text.append(best_text)
        text.append("   F3 Training", style="dim")
        return text
    if final is None or _seen_end.get(training) is final:
        return None
    if isinstance(final, RunFinished):
        mark, style = ("✓", "bold green") if final.status == "finished" else ("■", "bold yellow")
        text = Text(f"{mark} ", style=style)
        text.append(f"{outcome_text(final.status, final.early_stop_epoch)} ", style=style)
        text.append(f"{backbone} · {final.epochs_completed} epoch(s){best_text}")
    elif isinstance(final, RunFailed):
        text = Text("✗ failed ", style="bold red")
        text.append(f"{backbone}: {final.message}")
    else:
        return None
    text.append("   F3 Training", style="dim")
    return text
