"""Compare runs: the runs marked on the Runs screen side by side.

A table with one row per run (its colour, name, status, best accuracy, epochs, and the
settings that differ between them: backbone, image size, batch, lr, augmentation ...),
sortable by any column (s cycles the column, S reverses; or click a header), over two
charts that overlay the runs' validation loss and accuracy per epoch in the runs' colours.
The charts keep the run charts' keys (f maximise, l log loss, [ ] smoothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from dftui.core.events import EpochEnd
from dftui.core.run_manage import (
    SETTING_LABELS,
    UserInfo,
    differing_settings,
    epoch_rows,
    format_setting,
    read_user,
    run_settings,
)
from dftui.core.runs import RunSummary
from dftui.ui.screens.runs import STATUS_STYLES, local_time
from dftui.ui.widgets.charts import ChartData, ChartPanel, ChartsBox, Series, smooth
from dftui.ui.widgets.navbar import RunStatusLine

# Status last: at 80 columns the settings that tell the runs apart matter more.
BASE_COLUMNS = ("color", "run", "acc", "epochs")
BASE_LABELS = {"color": " ", "run": "Run", "status": "Status", "acc": "Best acc",
               "epochs": "Epochs"}


class CompareLoaded(Message):
    def __init__(self, rows: dict[str, dict[int, EpochEnd]], settings: dict[str, dict[str, Any]],
                 users: dict[str, UserInfo]) -> None:
        super().__init__()
        self.rows = rows
        self.settings = settings
        self.users = users


class CompareView(ChartsBox):
    """The overlaid curves of several runs: validation loss and validation accuracy. Its
    children come from CompareScreen.compose (the table too, so the chart keys work while
    the table has focus)."""

    DEFAULT_CSS = """
    CompareView { height: 1fr; }
    CompareView #compare-charts { height: 1fr; min-height: 8; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.smoothing = 0.0  # per-epoch values: few points, drawn as they are by default
        self.curves: list[tuple[str, str, dict[int, EpochEnd]]] = []  # (label, colour, rows)

    def on_mount(self) -> None:
        self.watch_maximized()
        self._redraw()

    def show_runs(self, curves: list[tuple[str, str, dict[int, EpochEnd]]]) -> None:
        self.curves = curves
        self._redraw()

    def _redraw(self) -> None:
        self._dirty = self._acc_dirty = False
        last = max((max(rows) for _, _, rows in self.curves if rows), default=1)
        loss: list[Series] = []
        acc: list[Series] = []
        for _label, color, rows in self.curves:
            if not rows:
                continue
            epochs = sorted(rows)
            xs = [float(e) for e in epochs]
            losses = smooth([rows[e].val_loss for e in epochs], self.smoothing)
            accs = [rows[e].val_accuracy * 100 for e in epochs]
            loss += [Series(xs, losses, color), Series(xs, losses, color, marker="•")]
            acc += [Series(xs, accs, color), Series(xs, accs, color, marker="•")]
        low = min((min(s.y) for s in acc if s.y), default=90.0)
        loss_panel = self.query_one("#loss-chart", ChartPanel)
        acc_panel = self.query_one("#acc-chart", ChartPanel)
        loss_panel.chart.show(ChartData(series=loss, x_range=(0, last), whole_x_ticks=True,
                                        log_y=self.log_loss, pad_right=1))
        acc_panel.chart.show(ChartData(series=acc, x_range=(0, last), whole_x_ticks=True,
                                       y_range=(max(0.0, min(low - 5, 90.0)), 100.0),
                                       pad_right=1))
        legend = Text()
        for label, color, _rows in self.curves:
            legend.append(f" ━ {label}", style=color)
        # The table's coloured names are the legend; a maximised chart hides the table, so
        # it carries its own.
        maximized = self.screen.maximized
        loss_panel.set_title(Text.assemble(
            ("val loss", "bold"),
            (f"  smooth {self.smoothing:g}" + (" · log" if self.log_loss else ""), "dim"),
            legend if maximized is loss_panel else "",
            (self._key_hint(loss_panel), "dim")))
        acc_panel.set_title(Text.assemble(
            ("val acc %", "bold"), legend if maximized is acc_panel else "",
            (self._key_hint(acc_panel), "dim")))


def _sort_value(value: Any) -> tuple[int, Any]:
    """Numbers before texts, missing values last, whatever the direction."""
    if value is None:
        return (2, 0)
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


class CompareScreen(ModalScreen[None]):
    TITLE = "Compare runs"
    BINDINGS = [
        Binding("escape", "dismiss", "Back", id="compare.back"),
        Binding("s", "sort_next", "Sort by next column", id="compare.sort"),
        Binding("S", "sort_reverse", "Reverse sort", show=False, id="compare.sort_reverse"),
    ]

    def __init__(self, runs: list[RunSummary], colors: dict[str, str]) -> None:
        super().__init__()
        self.compared = runs
        self.run_colors = colors
        self.rows: dict[str, dict[int, EpochEnd]] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        self.users: dict[str, UserInfo] = {}
        self.columns: list[str] = list(BASE_COLUMNS)
        self.sort_key = "acc"
        self.sort_descending = True
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield RunStatusLine()
        with CompareView(id="compare"):
            yield Static(Text(f"Comparing {len(self.compared)} runs · s: sort by the next "
                              "column · S: reverse", style="dim"), id="compare-title")
            yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="compare-charts"):
                yield ChartPanel(id="loss-chart")
                yield ChartPanel(id="acc-chart")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#compare-table", DataTable).focus()
        self._load([r.run_dir for r in self.compared])

    @work(thread=True, exclusive=True, group="compare-load", exit_on_error=False)
    def _load(self, folders: list[Path]) -> None:
        rows, settings, users = {}, {}, {}
        for folder in folders:
            key = str(folder)
            try:
                rows[key] = epoch_rows(folder)
            except OSError:
                rows[key] = {}
            settings[key] = run_settings(folder)
            users[key] = read_user(folder)[0]
        self.post_message(CompareLoaded(rows, settings, users))

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        self.rows, self.settings, self.users = message.rows, message.settings, message.users
        differing = differing_settings([self.settings.get(str(r.run_dir), {})
                                        for r in self.compared])
        # Epochs has its own column (done/planned).
        self.columns = (list(BASE_COLUMNS) + [k for k in differing if k not in BASE_COLUMNS]
                        + ["status"])
        self.loaded = True
        self._fill_table()
        self.query_one(CompareView).show_runs([
            (self.label(r), self.run_colors.get(str(r.run_dir), "white"),
             self.rows.get(str(r.run_dir), {}))
            for r in self.compared
        ])

    def label(self, run: RunSummary) -> str:
        """The user's name for the run, else its start time (the backbone has a column)."""
        user = self.users.get(str(run.run_dir))
        if user is not None and user.name:
            return user.name
        return local_time(run.started) if run.started else run.run_id

    def value(self, run: RunSummary, column: str) -> Any:
        key = str(run.run_dir)
        if column == "color":
            return list(self.run_colors).index(key) if key in self.run_colors else None
        if column == "run":
            return self.label(run)
        if column == "status":
            return run.status
        if column == "acc":
            return run.best_val_accuracy
        if column == "epochs":
            return run.epochs_completed
        return self.settings.get(key, {}).get(column)

    def sorted_runs(self) -> list[RunSummary]:
        present = [r for r in self.compared if self.value(r, self.sort_key) is not None]
        missing = [r for r in self.compared if self.value(r, self.sort_key) is None]
        present.sort(key=lambda r: _sort_value(self.value(r, self.sort_key)),
                     reverse=self.sort_descending)
        return present + missing

    def _fill_table(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        for column in self.columns:
            label = BASE_LABELS.get(column) or SETTING_LABELS.get(column, column)
            if column == self.sort_key:
                label += " ▼" if self.sort_descending else " ▲"
            table.add_column(label, key=column)
        for run in self.sorted_runs():
            key = str(run.run_dir)
            color = self.run_colors.get(key, "white")
            cells: list[Any] = [
                Text("◆", style=f"bold {color}"),
                Text(self.label(run), style=color),
                Text(f"{run.best_val_accuracy:.1%}" if run.best_val_accuracy is not None
                     else "—", justify="right"),
                Text(f"{run.epochs_completed}/{run.epochs or '?'}", justify="right"),
            ]
            for column in self.columns[len(BASE_COLUMNS):-1]:
                cells.append(format_setting(column, self.settings.get(key, {}).get(column)))
            cells.append(Text(run.status_text, style=STATUS_STYLES.get(run.status, "")))
            table.add_row(*cells, key=key)

    def action_sort_next(self) -> None:
        sortable = [c for c in self.columns if c != "color"]
        index = sortable.index(self.sort_key) if self.sort_key in sortable else -1
        self.sort_key = sortable[(index + 1) % len(sortable)]
        self.sort_descending = self.sort_key == "acc"  # best first; the rest ascending
        self._fill_table()

    def action_sort_reverse(self) -> None:
        self.sort_descending = not self.sort_descending
        self._fill_table()

    @on(DataTable.HeaderSelected, "#compare-table")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if column == "color":
            return
        if column == self.sort_key:
            self.sort_descending = not self.sort_descending
        else:
            self.sort_key = column
            self.sort_descending = column == "acc"
        self._fill_table()
