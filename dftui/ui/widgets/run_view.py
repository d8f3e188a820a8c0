"""RunView: the loss chart, the validation accuracy chart and the per-epoch table of one run.

Built only from core events through ``feed(event)``, so the live Training screen and the
Runs screen (replaying ``read_events(run_dir)``) draw a run the same way. Charts redraw at
most a few times a second however fast events arrive."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from dftui.core.events import BatchEnd, EpochEnd, Event, RunStarted

SMOOTHING = 0.9  # exponential moving average of the per-batch training loss
MAX_BATCH_POINTS = 4000  # older points are thinned beyond this, keeping the chart cheap
REDRAW_INTERVAL_S = 1.0  # plotext rebuilds are the costliest UI work during a run
BEST_MARK = "★"

COLUMNS = (
    ("epoch", "epoch"),
    ("train_loss", "train loss"),
    ("val_loss", "val loss"),
    ("val_acc", "val acc"),
    ("precision", "prec"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("seconds", "s"),
    ("best", "best"),
)


def smooth(values: list[float], factor: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average (as TensorBoard draws it)."""
    out = []
    avg = 0.0
    for i, v in enumerate(values, start=1):
        avg = factor * avg + (1 - factor) * v
        out.append(avg / (1 - factor**i))
    return out


def _thin(xs: list[float], ys: list[float], limit: int) -> tuple[list[float], list[float]]:
    if len(xs) <= limit:
        return xs, ys
    step = len(xs) / limit
    idx = [int(i * step) for i in range(limit)] + [len(xs) - 1]
    return [xs[i] for i in idx], [ys[i] for i in idx]


class RunChart(PlotextPlot):
    """A plotext chart that redraws only when its data changed (see RunView)."""

    DEFAULT_CSS = """
    RunChart { height: 1fr; min-height: 6; }
    """


class RunView(Vertical):
    """Charts over an epoch table. ``feed`` any core event; irrelevant ones are ignored."""

    DEFAULT_CSS = """
    RunView { height: 1fr; }
    RunView #run-charts { height: 3fr; min-height: 8; }
    RunView #loss-chart { width: 2fr; }
    RunView #acc-chart { width: 1fr; }
    RunView #epoch-table { height: 2fr; min-height: 4; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.started: RunStarted | None = None
        self.epochs_total: int | None = None
        self.batch_x: list[float] = []
        self.batch_loss: list[float] = []
        self.rows: dict[int, EpochEnd] = {}
        self.best_epoch: int | None = None
        self._dirty = True
        self._table_ready = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-charts"):
            yield RunChart(id="loss-chart")
            yield RunChart(id="acc-chart")
        table: DataTable[Any] = DataTable(id="epoch-table", cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        table = self.query_one("#epoch-table", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self._table_ready = True
        for epoch in sorted(self.rows):
            self._put_row(self.rows[epoch])
        self._redraw()
        self.set_interval(REDRAW_INTERVAL_S, self._redraw_if_dirty)

    # -- events ------------------------------------------------------------------------
    def reset(self) -> None:
        self.started = None
        self.epochs_total = None
        self.batch_x.clear()
        self.batch_loss.clear()
        self.rows.clear()
        self.best_epoch = None
        if self._table_ready:
            self.query_one("#epoch-table", DataTable).clear()
        self._dirty = True

    def feed(self, event: Event) -> None:
        if isinstance(event, BatchEnd):
            if event.phase != "train":
                return
            self.epochs_total = event.epochs
            self.batch_x.append(event.epoch - 1 + event.batch / max(1, event.batches))
            self.batch_loss.append(event.loss)
            if len(self.batch_x) > MAX_BATCH_POINTS:
                # Keep every other point of the older half: the shape survives, cost stays flat.
                half = len(self.batch_x) // 2
                self.batch_x[:half] = self.batch_x[:half:2]
                self.batch_loss[:half] = self.batch_loss[:half:2]
            self._dirty = True
        elif isinstance(event, EpochEnd):
            self.epochs_total = event.epochs
            self.rows[event.epoch] = event
            previous_best = self.best_epoch
            self.best_epoch = event.best_epoch
            if self._table_ready:
                self._put_row(event)
                if previous_best is not None and previous_best != self.best_epoch:
                    self._mark_best(previous_best, False)
                if self.best_epoch is not None:
                    self._mark_best(self.best_epoch, True)
            self._dirty = True
        elif isinstance(event, RunStarted):
            self.started = event
            epochs = event.config.get("epochs")  # a recorded config is untrusted
            self.epochs_total = epochs if type(epochs) is int and epochs > 0 else None
            # A resumed run redoes everything after its checkpoint: a replay of its record
            # holds the abandoned epoch's points too, which the new ones replace.
            keep = [i for i, x in enumerate(self.batch_x) if x <= event.start_epoch]
            self.batch_x[:] = [self.batch_x[i] for i in keep]
            self.batch_loss[:] = [self.batch_loss[i] for i in keep]
            for epoch in [e for e in self.rows if e > event.start_epoch]:
                del self.rows[epoch]
                if self._table_ready:
                    table = self.query_one("#epoch-table", DataTable)
                    if str(epoch) in table.rows:
                        table.remove_row(str(epoch))
            self._dirty = True

    # -- table -------------------------------------------------------------------------
    def _cells(self, e: EpochEnd) -> list[Any]:
        return [
            f"{e.epoch}/{e.epochs}",
            f"{e.train_loss:.4f}",
            f"{e.val_loss:.4f}",
            f"{e.val_accuracy * 100:.2f}%",
            f"{e.val_precision:.3f}",
            f"{e.val_recall:.3f}",
            f"{e.val_f1:.3f}",
            f"{e.seconds:.1f}",
            BEST_MARK if e.epoch == self.best_epoch else "",
        ]

    def _put_row(self, e: EpochEnd) -> None:
        table = self.query_one("#epoch-table", DataTable)
        key = str(e.epoch)
        if key in table.rows:
            for (col, _), value in zip(COLUMNS, self._cells(e)):
                table.update_cell(key, col, value)
        else:
            table.add_row(*self._cells(e), key=key)
            table.move_cursor(row=table.row_count - 1)

    def _mark_best(self, epoch: int, best: bool) -> None:
        table = self.query_one("#epoch-table", DataTable)
        if str(epoch) in table.rows:
            table.update_cell(str(epoch), "best", BEST_MARK if best else "")

    # -- charts ------------------------------------------------------------------------
    def flush(self) -> None:
        """Draw now rather than at the next tick (after a replay fed many events at once)."""
        if self._table_ready:
            self._redraw_if_dirty()

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._redraw()

    def _redraw(self) -> None:
        self._dirty = False
        self._draw_loss(self.query_one("#loss-chart", RunChart))
        self._draw_acc(self.query_one("#acc-chart", RunChart))

    def _epoch_ticks(self, plt: Any, last: int) -> None:
        if last <= 0:
            return
        step = max(1, round(last / 8))
        ticks = list(range(0, last + 1, step))
        if ticks[-1] != last:
            ticks.append(last)
        plt.xticks(ticks)

    def _draw_loss(self, chart: RunChart) -> None:
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        # Series are told apart in the title: a legend box would hide the first epochs
        # in a short chart.
        plt.title("loss: batch (blue) train (green) val (red)")
        plt.xlabel("epoch")
        last = self.epochs_total or (max(self.rows) if self.rows else 1)
        if self.batch_x:
            xs, ys = _thin(self.batch_x, smooth(self.batch_loss), 2 * max(40, chart.size.width))
            plt.plot(xs, ys, marker="braille", color="blue")
        if self.rows:
            epochs = sorted(self.rows)
            plt.plot(epochs, [self.rows[e].train_loss for e in epochs], marker="dot",
                     color="green")
            plt.plot(epochs, [self.rows[e].val_loss for e in epochs], marker="dot", color="red")
        plt.xlim(0, last)
        self._epoch_ticks(plt, last)
        chart.refresh()

    def _draw_acc(self, chart: RunChart) -> None:
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("val accuracy %")
        plt.xlabel("epoch")
        last = self.epochs_total or (max(self.rows) if self.rows else 1)
        if self.rows:
            epochs = sorted(self.rows)
            accs = [self.rows[e].val_accuracy * 100 for e in epochs]
            plt.plot(epochs, accs, marker="dot", color="red")
            low = min(accs)
            plt.ylim(max(0.0, min(low - 5, 90.0)), 100.5)
        else:
            plt.ylim(0, 100)
        plt.xlim(0, last)
        self._epoch_ticks(plt, last)
        chart.refresh()
