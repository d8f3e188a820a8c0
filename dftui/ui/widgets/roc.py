"""A ROC curve chart (plotext, drawn with braille dots) with the current decision threshold
marked as a point on the curve."""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot


class RocChart(PlotextPlot):
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
        # PlotextPlot's own on_mount (theme hookup) runs too: Textual calls both.
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
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.chart_title)
        plt.xlabel("false-positive rate (real called fake)")
        plt.ylabel("TPR")
        plt.xlim(0, 1)
        plt.ylim(0, 1)
        plt.plot([0.0, 1.0], [0.0, 1.0], marker="dot", color="gray")  # chance
        if self.fpr:
            plt.plot(self.fpr, self.tpr, marker="braille", color="cyan")
        if self.point is not None:
            plt.scatter([self.point[0]], [self.point[1]], marker="●", color="red")
        self.refresh()
