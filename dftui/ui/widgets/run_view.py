"""RunView: the loss chart, the validation accuracy chart and the per-epoch table of one run.

Built only from core events through ``feed(event)``, so the live Training screen and the
Runs screen (replaying ``read_events(run_dir)``) draw a run the same way. Charts redraw at
most a few times a second however fast events arrive, and not at all while nothing changes.

Keys (while the charts' table has focus, or a maximised chart): f maximises the loss chart,
then the accuracy chart, then restores them (escape restores too); l switches the loss axis
between linear and log; [ and ] lower and raise the smoothing of the batch loss."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable

from dftui.core.events import BatchEnd, EpochEnd, Event, RunStarted
from dftui.ui.widgets.charts import (
    ChartData,
    ChartPanel,
    ChartsBox,
    Series,
    smooth,
    thin,
)

__all__ = ["RunView", "smooth", "COLUMNS"]

MAX_BATCH_POINTS = 4000  # older points are thinned beyond this, keeping the chart cheap
REDRAW_INTERVAL_S = 1.0  # chart redraws are the costliest UI work during a run (chart_bench)
BEST_MARK = "★"
BATCH_STYLE = "dodger_blue1"
RAW_STYLE = "grey42"
TRAIN_STYLE = "green"
VAL_STYLE = "red"
BEST_STYLE = "yellow"
LR_STYLE = "magenta"  # where the learning rate's warm-up ended or the rate was cut

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


class RunView(ChartsBox):
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
        self._acc_dirty = True
        self._table_ready = False
        # Vertical marks other than the best epoch and the learning-rate marks (those are
        # derived from the epochs, see _lr_marks): (epoch, style).
        self.marks: list[tuple[float, str]] = []
        self.redraws = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-charts"):
            yield ChartPanel(id="loss-chart")
            yield ChartPanel(id="acc-chart")
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
        self.watch_maximized()

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
        self._acc_dirty = True

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
            self._acc_dirty = True
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
            self._acc_dirty = True

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
            for (col, _), value in zip(COLUMNS, self._cells(e), strict=True):
                table.update_cell(key, col, value)
        else:
            table.add_row(*self._cells(e), key=key)
            table.move_cursor(row=table.row_count - 1)

    def _mark_best(self, epoch: int, best: bool) -> None:
        table = self.query_one("#epoch-table", DataTable)
        if str(epoch) in table.rows:
            table.update_cell(str(epoch), "best", BEST_MARK if best else "")

    # -- charts ------------------------------------------------------------------------
    def add_mark(self, epoch: float, style: str = "magenta") -> None:
        """A vertical line on both charts at ``epoch`` (e.g. where the learning rate changed)."""
        self.marks.append((float(epoch), style))
        self._dirty = True
        self._acc_dirty = True

    def flush(self) -> None:
        """Draw now rather than at the next tick (after a replay fed many events at once)."""
        if self._table_ready:
            self._redraw_if_dirty()

    def _redraw_if_dirty(self) -> None:
        # Batch events change only the loss chart; the accuracy chart waits for an epoch.
        if self._dirty:
            self.redraws += 1
            self._dirty = False
            self._draw_loss(self.query_one("#loss-chart", ChartPanel))
        if self._acc_dirty:
            self._acc_dirty = False
            self._draw_acc(self.query_one("#acc-chart", ChartPanel))

    def _redraw(self) -> None:
        self._dirty = self._acc_dirty = True
        self._redraw_if_dirty()

    def _last_epoch(self) -> int:
        return self.epochs_total or (max(self.rows) if self.rows else 1)

    def _lr_marks(self) -> list[float]:
        """Where the learning rate changed course: the end of the warm-up, and each cut
        (step, plateau) to half the rate or less. A cosine's gentle epoch-to-epoch decline
        is not marked: a line every epoch would hide the curves."""
        marks: list[float] = []
        warmup = self.started.config.get("warmup_epochs") if self.started is not None else None
        if type(warmup) is int and 0 < warmup < self._last_epoch():  # a record is untrusted
            marks.append(float(warmup))
        epochs = sorted(self.rows)
        for prev, cur in zip(epochs, epochs[1:], strict=False):
            before, after = self.rows[prev].lr, self.rows[cur].lr
            if cur == prev + 1 and before and after is not None and after <= before / 2:
                marks.append(float(prev))  # the new rate starts with epoch cur
        return marks

    def _marks(self) -> list[tuple[float, str]]:
        marks = list(self.marks) + [(x, LR_STYLE) for x in self._lr_marks()]
        if self.best_epoch is not None and self.best_epoch in self.rows:
            marks.append((float(self.best_epoch), BEST_STYLE))
        return marks

    def _draw_loss(self, panel: ChartPanel) -> None:
        last = self._last_epoch()
        series = []
        if self.batch_x:
            width = 2 * max(40, panel.size.width)  # braille: two points per cell across
            if self.smoothing > 0:
                # Raw, faint, under the smoothed line: one point per cell is enough for a
                # background and halves the cost of drawing it (chart_bench).
                xs, ys = thin(self.batch_x, self.batch_loss, width // 2)
                series.append(Series(xs, ys, RAW_STYLE))
            xs, ys = thin(self.batch_x, smooth(self.batch_loss, self.smoothing), width)
            series.append(Series(xs, ys, BATCH_STYLE))
        if self.rows:
            epochs = sorted(self.rows)
            series.append(Series([float(e) for e in epochs],
                                 [self.rows[e].train_loss for e in epochs], TRAIN_STYLE))
            series.append(Series([float(e) for e in epochs],
                                 [self.rows[e].val_loss for e in epochs], VAL_STYLE))
            series.append(Series([float(e) for e in epochs],
                                 [self.rows[e].val_loss for e in epochs], VAL_STYLE, marker="•"))
        panel.chart.show(ChartData(
            series=series, x_range=(0, last), whole_x_ticks=True,
            marks=self._marks(), log_y=self.log_loss, pad_right=1,
        ))
        title = Text.assemble(
            ("loss", "bold"), "  ", ("━ batch", BATCH_STYLE), " ", ("━ train", TRAIN_STYLE), " ",
            ("━ val", VAL_STYLE), " ", ("│ best", BEST_STYLE),
            (" │ lr" if self._lr_marks() else "", LR_STYLE),
            (f"  smooth {self.smoothing:g}" + (" · log" if self.log_loss else ""), "dim"),
            (self._key_hint(panel), "dim"),
        )
        panel.set_title(title)

    def _draw_acc(self, panel: ChartPanel) -> None:
        last = self._last_epoch()
        series = []
        y_range: tuple[float | None, float | None] = (0.0, 100.0)
        if self.rows:
            epochs = sorted(self.rows)
            accs = [self.rows[e].val_accuracy * 100 for e in epochs]
            xs = [float(e) for e in epochs]
            series.append(Series(xs, accs, VAL_STYLE))
            series.append(Series(xs, accs, VAL_STYLE, marker="•"))
            if self.best_epoch in self.rows:
                best = self.rows[self.best_epoch].val_accuracy * 100
                series.append(Series([float(self.best_epoch)], [best], BEST_STYLE, marker=BEST_MARK))
            low = min(accs)
            y_range = (max(0.0, min(low - 5, 90.0)), 100.0)
        panel.chart.show(ChartData(
            series=series, x_range=(0, last), whole_x_ticks=True,
            y_range=y_range, marks=self._marks(), pad_right=1,
        ))
        best_text = ""
        if self.best_epoch in self.rows:
            best_text = f"  best {self.rows[self.best_epoch].val_accuracy * 100:.1f}% @{self.best_epoch}"
        panel.set_title(Text.assemble(
            ("val acc %", "bold"), (best_text, BEST_STYLE), (self._key_hint(panel), "dim")))
