"""Redraw cost of a training-loss chart: textual-plotext (the old widget) against
textual-plot (dftui.ui.widgets.charts.Chart, the new one).

For each number of points N, a headless app holds one chart; each round replaces its data by
a noisy loss curve of N points (braille line, as the Training screen draws the batch loss)
and waits until the screen has been painted. The time per update is data + render +
composition; a round with no chart change is measured too and subtracted (the app's own
cost of a refresh cycle). Medians over the rounds, milliseconds per update.

    python benchmarks/chart_bench.py [--points 100 1000 4000] [--rounds 15] [--size 120x40]

textual-plotext is no longer a dependency of dftui: the old side is skipped when it is not
installed (pip install textual-plotext to compare)."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.widget import Widget


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    bf16 = "native bf16" if {"amx_tile", "avx512_bf16"} & flags else "no native bf16"
    import textual

    return (f"{cpu}, {cores} cores ({bf16}); Python {platform.python_version()}, "
            f"Textual {textual.__version__}")


def curve(n: int, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    xs = [8 * i / max(1, n - 1) for i in range(n)]
    ys = [0.7 * math.exp(-x / 3) + 0.05 + rng.uniform(-0.04, 0.04) for x in xs]
    return xs, ys


class Bench(App[None]):
    def __init__(self, make: Any) -> None:
        super().__init__()
        self.make = make

    def compose(self) -> ComposeResult:
        yield self.make()


def new_widget() -> tuple[Any, Any]:
    from dftui.ui.widgets.charts import ChartData, ChartPanel, Series

    panel = ChartPanel()

    def update(xs: list[float], ys: list[float]) -> None:
        panel.chart.show(ChartData(series=[Series(xs, ys, "blue")], x_range=(0, 8),
                                   whole_x_ticks=True))

    return panel, update


def old_widget() -> tuple[Any, Any]:
    from textual_plotext import PlotextPlot

    chart = PlotextPlot()

    def update(xs: list[float], ys: list[float]) -> None:
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        plt.plot(xs, ys, marker="braille", color="blue")
        plt.xlim(0, 8)
        plt.xticks(list(range(9)))
        chart.refresh()

    return chart, update


async def measure(make: Any, points: int, rounds: int, size: tuple[int, int]) -> tuple[float, float]:
    holder: dict[str, Any] = {}

    def build() -> Widget:
        widget, update = make()
        holder["update"] = update
        holder["widget"] = widget
        return widget

    app = Bench(build)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        update = holder["update"]
        data = [curve(points, seed) for seed in range(rounds + 2)]
        update(*data[0])  # warm-up: first layout, imports, caches
        await pilot.pause()
        await pilot.pause()
        changed, idle = [], []
        for r in range(rounds):
            t0 = time.perf_counter()
            update(*data[r + 1])
            holder["widget"].refresh()
            await pilot.pause()
            changed.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await pilot.pause()
            idle.append(time.perf_counter() - t0)
    return statistics.median(changed) * 1000, statistics.median(idle) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, nargs="+", default=[100, 1000, 4000])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--size", default="120x40", help="terminal size, WxH (default 120x40)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(f"machine: {machine()}")
    print(f"terminal {w}x{h}, one chart filling it; median of {args.rounds} updates each")
    sides: list[tuple[str, Any]] = [("textual-plot (new)", new_widget)]
    try:
        import textual_plotext  # noqa: F401

        sides.insert(0, ("textual-plotext (old)", old_widget))
    except ImportError:
        print("textual-plotext is not installed: the old side is skipped")
    print(f"{'widget':24} {'points':>7} {'ms/update':>10} {'ms idle':>8} {'net ms':>7}")
    for name, make in sides:
        for n in args.points:
            ms, idle = asyncio.run(measure(make, n, args.rounds, (w, h)))
            print(f"{name:24} {n:7d} {ms:10.1f} {idle:8.1f} {ms - idle:7.1f}")


if __name__ == "__main__":
    main()
