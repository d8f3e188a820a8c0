"""A reliability diagram (textual-plot, braille dots): per confidence bin, the accuracy the
model reached against the confidence it claimed; a calibrated model's points lie on the
diagonal. Points above it: under-confident; below: over-confident."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from dftui.core.calibration import ReliabilityBin
from dftui.ui.widgets.charts import ChartData, ChartPanel, Series

# Two classes: the chosen class's confidence is never below 0.5, so the left half of the
# [0, 1] axis would always be empty.
X_RANGE = (0.5, 1.0)


class ReliabilityChart(ChartPanel):
    DEFAULT_CSS = """
    ReliabilityChart {
        width: 1fr;
        height: 1fr;
        min-height: 10;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.bins: list[ReliabilityBin] = []
        self.chart_title = "Reliability"

    def on_mount(self) -> None:
        self._draw()

    def show(self, bins: Sequence[ReliabilityBin], title: str) -> None:
        """The non-empty bins as points (mean confidence, accuracy), joined by a line."""
        self.bins = [b for b in bins if b.count]
        self.chart_title = title
        self._draw()

    def clear_bins(self, title: str = "Reliability") -> None:
        self.bins, self.chart_title = [], title
        self._draw()

    def _draw(self) -> None:
        series = [Series(list(X_RANGE), list(X_RANGE), "grey42")]  # perfectly calibrated
        if self.bins:
            xs = [b.confidence for b in self.bins]
            ys = [b.accuracy for b in self.bins]
            if len(xs) > 1:
                series.append(Series(xs, ys, "cyan"))
            series.append(Series(xs, ys, "bold yellow", marker="●"))
        self.chart.show(ChartData(series=series, x_range=X_RANGE, y_range=(0.0, 1.0)))
        self.set_title(Text.assemble(
            (self.chart_title, "bold"), ("  x: confidence · y: accuracy", "dim"),
        ))
