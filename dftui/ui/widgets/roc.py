"""A ROC curve chart (textual-plot, drawn with braille dots) with the current decision
threshold marked as a point on the curve."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from dftui.ui.widgets.charts import ChartData, ChartPanel, Series


class RocChart(ChartPanel):
    DEFAULT_CSS = """
    RocChart {
        width: 1fr;
        height: 1fr;
        min-height: 10;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.fpr: list[float] = []
        self.tpr: list[float] = []
        self.point: tuple[float, float] | None = None
        self.chart_title = "ROC"

    def on_mount(self) -> None:
        self._draw()

    def show(
        self,
        fpr: Sequence[float],
        tpr: Sequence[float],
        point: tuple[float, float] | None,
        title: str,
    ) -> None:
        """The curve (false-positive rate -> true-positive rate) and the operating point."""
        self.fpr = [float(x) for x in fpr]
        self.tpr = [float(y) for y in tpr]
        self.point = point
        self.chart_title = title
        self._draw()

    def clear_curve(self, title: str = "ROC") -> None:
        self.fpr, self.tpr, self.point, self.chart_title = [], [], None, title
        self._draw()

    def _draw(self) -> None:
        series = [Series([0.0, 1.0], [0.0, 1.0], "grey42")]  # chance
        if self.fpr:
            series.append(Series(self.fpr, self.tpr, "cyan"))
        if self.point is not None:
            series.append(Series([self.point[0]], [self.point[1]], "bold red", marker="●"))
        self.chart.show(ChartData(series=series, x_range=(0.0, 1.0), y_range=(0.0, 1.0)))
        self.set_title(Text.assemble(
            (self.chart_title, "bold"),
            ("  x: false-positive rate (real called fake) · y: true-positive rate", "dim"),
        ))
