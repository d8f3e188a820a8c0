"""Line charts for training curves, on textual-plot (a native Textual plot widget).

``ChartPanel`` is a one-line title over a ``Chart``; it can be maximised to the whole screen.
A chart is given whole series (``Series``) and redraws only when ``draw`` is called, so its
owner decides how often that happens. Log scale is drawn as log10 of the values with ticks
labelled in the original units (textual-plot has no log axis of its own)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static
from textual_plot import HiResMode, NumericAxisFormatter, PlotWidget

# Smoothing steps offered by the smoothing keys: 0 draws the raw values.
SMOOTHING_STEPS = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)
DEFAULT_SMOOTHING = 0.9


def smooth(values: Sequence[float], factor: float = DEFAULT_SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average (as TensorBoard draws it)."""
    if factor <= 0:
        return list(values)
    out = []
    avg = 0.0
    for i, v in enumerate(values, start=1):
        avg = factor * avg + (1 - factor) * v
        out.append(avg / (1 - factor**i))
    return out


def thin(xs: Sequence[float], ys: Sequence[float], limit: int) -> tuple[list[float], list[float]]:
    """At most ``limit`` + 1 evenly spaced points (the last one kept): more than the chart
    has pixels across only costs time."""
    if len(xs) <= limit:
        return list(xs), list(ys)
    step = len(xs) / limit
    idx = [int(i * step) for i in range(limit)] + [len(xs) - 1]
    return [xs[i] for i in idx], [ys[i] for i in idx]


class FittedFormatter(NumericAxisFormatter):
    """Nice ticks (1, 2, 5 × 10^n), no more than fit the axis: textual-plot asks for up to 8
    whatever the chart's size, and at 80×24 their labels would overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = 8

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        limit = max(2, min(max_ticks, self.limit))
        if not (math.isfinite(min_) and math.isfinite(max_)):
            return []
        min_, max_ = _widened(min_, max_)
        ticks = super().get_ticks(min_, max_, limit)
        while len(ticks) > limit + 1 and len(ticks) > 2:
            ticks = ticks[::2]
        return ticks


def _widened(min_: float, max_: float) -> tuple[float, float]:
    """A range textual-plot can tick: one point, or a flat series (min == max, as a chart
    with a single epoch or a constant accuracy has), makes its tick spacing 0 and log10(0)
    a ValueError that ended the app."""
    if max_ - min_ > 1e-9 * max(abs(min_), abs(max_), 1e-300):
        return min_, max_
    pad = abs(min_) * 0.05 or 0.5
    return min_ - pad, max_ + pad


class LogFormatter(FittedFormatter):
    """Ticks of a log10 axis: positions are exponents, labels are the values they stand for."""

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        limit = max(2, min(max_ticks, self.limit))
        lo, hi = math.floor(min_), math.ceil(max_)
        candidates: list[float] = []
        # Decades first; 2 and 5 within each decade when the range is short enough.
        for mantissas in ((1,), (1, 5), (1, 2, 5)):
            found = [
                math.log10(m * 10.0**p)
                for p in range(lo, hi + 1)
                for m in mantissas
                if min_ <= math.log10(m * 10.0**p) <= max_
            ]
            if len(found) > limit:
                break
            candidates = found
        if len(candidates) < 2:  # less than a decade shown: linear ticks of the values
            values = NumericAxisFormatter().get_ticks(*_widened(10**min_, 10**max_), limit)
            candidates = [math.log10(v) for v in values if v > 0]
        return candidates

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [f"{10**t:.3g}" for t in ticks]


@dataclass
class Series:
    """One line of a chart; ``marker`` draws points (e.g. "●") instead of a line."""

    x: list[float]
    y: list[float]
    style: str
    marker: str | None = None
    hires: bool = True


@dataclass
class ChartData:
    series: list[Series] = field(default_factory=list)
    x_range: tuple[float, float] | None = None
    y_range: tuple[float | None, float | None] = (None, None)
    whole_x_ticks: bool = False  # whole numbers from x_range's start to its end; else nice ticks
    marks: list[tuple[float, str]] = field(default_factory=list)  # vertical lines (x, style)
    log_y: bool = False
    pad_right: int = 0  # empty cells right of x_range's end, so a mark there stays visible


class Chart(PlotWidget, inherit_bindings=False):
    """A PlotWidget that takes a whole ``ChartData`` at once. Focusable only while maximised,
    so that arrows and letters go to the tables around it otherwise."""

    DEFAULT_CSS = """
    Chart { height: 1fr; min-height: 4; }
    """
    BINDINGS = [
        Binding("plus,equals_sign", "zoom_in", "Zoom in", show=False),
        Binding("minus", "zoom_out", "Zoom out", show=False),
        Binding("left", "pan_left", "Pan left", show=False),
        Binding("right", "pan_right", "Pan right", show=False),
        Binding("up", "pan_up", "Pan up", show=False),
        Binding("down", "pan_down", "Pan down", show=False),
        Binding("0", "reset_scales", "Reset zoom", show=False),
    ]

    can_focus = False

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, allow_pan_and_zoom=True)
        self._x_fmt = FittedFormatter()
        self._y_fmt = FittedFormatter()
        self._log_fmt = LogFormatter()
        self.data = ChartData()
        self.draws = 0  # how many times the data was replaced (tests, benchmarks)

    def on_mount(self) -> None:
        # Room for the y tick labels ("0.693", "100") and one row of x tick labels; the
        # axis names are in the panel's title line instead.
        self.margin_top = 0
        self.margin_bottom = 1
        self.margin_left = 7
        self.set_x_formatter(self._x_fmt)

    def on_resize(self) -> None:
        # PlotWidget resizes its canvases only on a layout refresh; a maximised or restored
        # chart would otherwise keep drawing to its old size. The ticks and the right-hand
        # padding depend on the size too, so the data is laid out again.
        self.refresh(layout=True)
        self._apply()

    def _fit_ticks(self) -> None:
        height = max(1, self.size.height - self.margin_bottom)
        width = max(1, self.size.width - self.margin_left)
        for fmt in (self._y_fmt, self._log_fmt):
            fmt.limit = max(2, height // 2)
        self._x_fmt.limit = max(2, width // 6)

    def show(self, data: ChartData) -> None:
        """Replace everything drawn by ``data``."""
        self.data = data
        self.draws += 1
        self._apply()

    def _apply(self) -> None:
        data = self.data
        self._fit_ticks()
        self.clear()
        self.set_y_formatter(self._log_fmt if data.log_y else self._y_fmt)
        lines: list[tuple[list[float], list[float], Series]] = []
        for s in data.series:
            xs, ys = s.x, s.y
            if data.log_y:
                pairs = [(x, math.log10(y)) for x, y in zip(xs, ys, strict=False) if y > 0]
                xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            if xs:
                lines.append((xs, ys, s))
        lo, hi = data.y_range  # type: ignore[assignment]
        if data.log_y:
            lo = math.log10(lo) if lo is not None and lo > 0 else None
            hi = math.log10(hi) if hi is not None and hi > 0 else None
        all_y = [y for _, ys, _ in lines for y in ys]
        y_lo = lo if lo is not None else min(all_y, default=0.0)
        y_hi = hi if hi is not None else max(all_y, default=1.0)
        # Marks first, as plain lines: the data and its point markers are drawn over them
        # (textual-plot's own vertical lines would be drawn over the data).
        for x, style in data.marks:
            self.plot([x, x], [y_lo, y_hi], line_style=style, hires_mode=HiResMode.BRAILLE)
        for xs, ys, s in lines:
            mode = HiResMode.BRAILLE if s.hires else None
            if s.marker:
                self.scatter(xs, ys, marker=s.marker, marker_style=s.style)
            else:
                self.plot(xs, ys, line_style=s.style, hires_mode=mode)
        if data.x_range is not None:
            x0, x1 = data.x_range
            cells = max(1, self.size.width - self.margin_left - 2)
            self.set_xlimits(x0, x1 + (x1 - x0) / cells * data.pad_right)
        else:
            self.set_xlimits(None, None)
        if data.whole_x_ticks and data.x_range is not None:
            self.set_xticks(epoch_ticks(int(data.x_range[1]), self._x_fmt.limit + 1))
        else:
            self.set_xticks(None)
        self.set_ylimits(lo, hi)


class ChartPanel(Vertical):
    """A title line over a chart. ``ALLOW_MAXIMIZE``: the panel, title and all, fills the
    screen when maximised (see RunView.action_maximize)."""

    ALLOW_MAXIMIZE = True
    DEFAULT_CSS = """
    ChartPanel { height: 1fr; min-height: 5; }
    ChartPanel.-maximized { width: 1fr !important; height: 1fr !important; }
    ChartPanel > .chart-title { height: 1; width: 1fr; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title_text = Text()

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, classes="chart-title", markup=False)
        yield Chart()

    @property
    def chart(self) -> Chart:
        return self.query_one(Chart)

    def set_title(self, text: Text) -> None:
        if text.plain != self.title_text.plain or text.spans != self.title_text.spans:
            self.title_text = text
            if self.is_mounted:
                self.query_one(".chart-title", Static).update(text)


class ChartsBox(Vertical):
    """Holds ChartPanels and gives them their keys: f maximises each panel in turn and then
    restores them (escape restores too); l switches the loss axis between linear and log;
    [ and ] lower and raise the smoothing. Subclasses draw in ``_redraw``."""

    BINDINGS = [
        Binding("f", "maximize_chart", "Full chart", id="charts.maximize"),
        Binding("l", "toggle_log", "Log loss", show=False, id="charts.log"),
        Binding("left_square_bracket", "smoothing(-1)", "Less smoothing", show=False,
                id="charts.smooth_less"),
        Binding("right_square_bracket", "smoothing(1)", "More smoothing", show=False,
                id="charts.smooth_more"),
    ]
    KEY_HINT = "   f next · l log · [ ] smoothing · +/- arrows 0 zoom · esc back"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.smoothing = DEFAULT_SMOOTHING
        self.log_loss = False
        self._restore_focus: Widget | None = None
        self._dirty = True
        self._acc_dirty = True

    def watch_maximized(self) -> None:
        """Call from on_mount: follow the screen's maximised widget (escape restores)."""
        self.watch(self.screen, "maximized", self._maximized_changed, init=False)

    def _redraw(self) -> None:  # pragma: no cover - every subclass draws its own
        raise NotImplementedError

    def _redraw_if_dirty(self) -> None:
        if self._dirty or self._acc_dirty:
            self._redraw()

    def _key_hint(self, panel: ChartPanel) -> str:
        return self.KEY_HINT if self.screen.maximized is panel else ""

    def action_maximize_chart(self) -> None:
        screen = self.screen
        panels = list(self.query(ChartPanel))
        current = screen.maximized
        if current is None:
            target: ChartPanel | None = panels[0] if panels else None
        elif current in panels:
            index = panels.index(current)  # type: ignore[arg-type]
            target = panels[index + 1] if index + 1 < len(panels) else None
        else:
            target = None
        if target is None:
            screen.minimize()
            return
        if current is None:
            self._restore_focus = screen.focused
        screen.maximize(target, container=False)
        target.chart.can_focus = True  # arrows, +/- and 0 zoom and pan the chart now
        target.chart.focus()

    def _maximized_changed(self, maximized: Widget | None) -> None:
        for panel in self.query(ChartPanel):
            if panel is not maximized:
                panel.chart.can_focus = False
        if maximized is None:
            focus = self._restore_focus
            self._restore_focus = None
            if focus is not None and focus.is_attached and focus.focusable:
                focus.focus()
            else:
                self.screen.focus_next()
        self._dirty = self._acc_dirty = True
        self.call_after_refresh(self._redraw_if_dirty)  # titles and ticks follow the new size

    def action_toggle_log(self) -> None:
        self.log_loss = not self.log_loss
        self._redraw()

    def action_smoothing(self, step: int) -> None:
        steps = list(SMOOTHING_STEPS)
        index = min(range(len(steps)), key=lambda i: abs(steps[i] - self.smoothing))
        self.smoothing = steps[max(0, min(len(steps) - 1, index + step))]
        self._redraw()


def epoch_ticks(last: int, limit: int = 9) -> list[float]:
    """Whole epochs from 0 to ``last``, at most about ``limit`` of them, ``last`` included."""
    if last <= 0:
        return [0.0]
    step = max(1, math.ceil(last / max(1, limit - 1)))
    ticks = list(range(0, last + 1, step))
    if ticks[-1] != last:
        ticks.append(last)
    return [float(t) for t in ticks]
