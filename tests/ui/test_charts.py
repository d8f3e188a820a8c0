"""The run charts (textual-plot): maximise with f, log loss axis with l, smoothing with [ and ],
best-epoch and extra marks, redraws only when something changed. Driven through the real app
with fixed events, no training."""

from __future__ import annotations

import math

import pytest

from dftui.ui.app import DftuiApp
from dftui.ui.widgets.charts import (
    Chart,
    ChartData,
    ChartPanel,
    LogFormatter,
    Series,
    epoch_ticks,
    smooth,
)
from dftui.ui.widgets.run_view import RunView
from tests.ui.scenes import show_training, training_events


async def _training_view(pilot) -> RunView:
    await show_training(pilot, training_events(True), running=False)
    view = pilot.app.screen.query_one(RunView)
    view.query_one("#epoch-table").focus()
    await pilot.pause()
    return view


async def test_maximise_cycles_loss_then_accuracy_then_back() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await _training_view(pilot)
        loss = view.query_one("#loss-chart", ChartPanel)
        acc = view.query_one("#acc-chart", ChartPanel)
        small = loss.chart.size
        await pilot.press("f")
        await pilot.pause()
        assert app.screen.maximized is loss
        assert app.screen.focused is loss.chart  # arrows and +/- now zoom and pan it
        assert loss.size.width == 80 and loss.chart.size.height > small.height
        assert "esc back" in loss.title_text.plain
        await pilot.press("f")
        await pilot.pause()
        assert app.screen.maximized is acc
        assert acc.size.width == 80
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.maximized is None
        assert app.screen.focused is view.query_one("#epoch-table")
        assert not loss.chart.can_focus and not acc.chart.can_focus
        await pilot.press("f", "f", "f")  # the third press restores too
        await pilot.pause()
        assert app.screen.maximized is None


async def test_log_scale_and_smoothing_keys() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await _training_view(pilot)
        chart = view.query_one("#loss-chart", ChartPanel).chart
        raw = list(view.batch_loss)
        await pilot.press("l")
        await pilot.pause()
        assert view.log_loss and chart.data.log_y
        assert "log" in view.query_one("#loss-chart", ChartPanel).title_text.plain
        await pilot.press("l")
        assert not view.log_loss
        assert view.smoothing == pytest.approx(0.9)
        await pilot.press("left_square_bracket", "left_square_bracket", "left_square_bracket",
                          "left_square_bracket")
        await pilot.pause()
        assert view.smoothing == 0.0
        # Unsmoothed: the batch line is the raw losses, and no faint raw copy is drawn under it.
        lines = [s for s in chart.data.series if s.marker is None and len(s.x) == len(raw)]
        assert len(lines) == 1 and lines[0].y == pytest.approx(raw)
        await pilot.press("right_square_bracket")
        assert view.smoothing == pytest.approx(0.6)
        assert "smooth 0.6" in view.query_one("#loss-chart", ChartPanel).title_text.plain
        for _ in range(10):
            await pilot.press("right_square_bracket")
        assert view.smoothing == pytest.approx(0.99)


async def test_best_epoch_and_extra_marks_are_drawn() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await _training_view(pilot)
        acc_chart = view.query_one("#acc-chart", ChartPanel).chart
        assert view.best_epoch == 3
        assert (3.0, "yellow") in acc_chart.data.marks
        star = [s for s in acc_chart.data.series if s.marker == "★"]
        assert star and star[0].x == [3.0] and star[0].y == pytest.approx([91.7])
        # The accuracy axis ends at 100, not above it.
        assert acc_chart.data.y_range[1] == 100.0
        view.add_mark(1.5, "magenta")  # e.g. a learning-rate step
        view.flush()
        await pilot.pause()
        loss_chart = view.query_one("#loss-chart", ChartPanel).chart
        assert (1.5, "magenta") in loss_chart.data.marks
        assert (1.5, "magenta") in acc_chart.data.marks


async def test_charts_redraw_only_when_something_changed() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await _training_view(pilot)
        loss = view.query_one("#loss-chart", ChartPanel).chart
        acc = view.query_one("#acc-chart", ChartPanel).chart
        view.flush()
        before = (loss.draws, acc.draws)
        view._redraw_if_dirty()  # nothing new: no redraw
        assert (loss.draws, acc.draws) == before
        from dftui.core.events import BatchEnd

        view.feed(
            BatchEnd(
                phase="train",
                epoch=3,
                epochs=3,
                batch=3,
                batches=3,
                loss=0.25,
                images_per_s=100.0,
                data_wait=0.1,
                elapsed_s=20.0,
                eta_s=1.0,
                rss_mb=800.0,
            )
        )
        view.flush()
        # A batch changes the loss chart only.
        assert loss.draws == before[0] + 1 and acc.draws == before[1]


def test_log_formatter_ticks_are_values() -> None:
    fmt = LogFormatter()
    ticks = fmt.get_ticks(math.log10(0.02), math.log10(2.0))
    labels = fmt.get_labels_for_ticks(ticks)
    assert "0.1" in labels and "1" in labels
    assert all(math.log10(0.02) <= t <= math.log10(2.0) for t in ticks)
    # Less than a decade: still at least two labelled ticks.
    assert len(fmt.get_ticks(math.log10(0.3), math.log10(0.7))) >= 2


def test_epoch_ticks_and_smooth() -> None:
    assert epoch_ticks(3) == [0, 1, 2, 3]
    ticks = epoch_ticks(50, limit=6)
    assert ticks[0] == 0 and ticks[-1] == 50 and len(ticks) <= 7
    assert smooth([1.0, 3.0], 0.0) == [1.0, 3.0]


async def test_log_scale_drops_non_positive_values() -> None:
    from textual.app import App

    class One(App[None]):
        def compose(self):
            yield ChartPanel()

    app = One()
    async with app.run_test(size=(60, 16)) as pilot:
        chart = app.query_one(Chart)
        chart.show(ChartData(series=[Series([0, 1, 2], [0.0, 0.5, 0.25], "red")], log_y=True))
        await pilot.pause()
        assert chart.draws == 1  # no error on log10(0); the point is left out


async def test_help_lists_the_chart_keys() -> None:
    from dftui.ui.screens.help import HelpScreen

    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await _training_view(pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-keys").render())
        assert "charts and panels" in text
        assert "Full chart" in text and "Log loss" in text and "More smoothing" in text


async def test_learning_rate_marks_where_warm_up_ends_and_the_rate_is_cut() -> None:
    """A 3-epoch run with one warm-up epoch whose rate is cut by ten after epoch 2: a mark at
    1 (warm-up over) and at 2 (the cut), on both charts, and "lr" in the loss legend; a run
    without a schedule (the other tests' events, no lr) has none."""
    import dataclasses

    from dftui.core.events import EpochEnd, RunStarted

    rates = {1: 1e-4, 2: 1e-3, 3: 1e-4}
    events = []
    for event in training_events(True):
        if isinstance(event, RunStarted):
            event = dataclasses.replace(event, config={**event.config, "warmup_epochs": 1})
        elif isinstance(event, EpochEnd):
            event = dataclasses.replace(event, lr=rates[event.epoch])
        events.append(event)
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await show_training(pilot, events, running=False)
        view = pilot.app.screen.query_one(RunView)
        for panel in ("#loss-chart", "#acc-chart"):
            marks = view.query_one(panel, ChartPanel).chart.data.marks
            assert (1.0, "magenta") in marks and (2.0, "magenta") in marks, marks
        assert "│ lr" in view.query_one("#loss-chart", ChartPanel).title_text.plain
    async with DftuiApp(load_torch=False).run_test(size=(120, 40)) as pilot:
        await show_training(pilot, training_events(True), running=False)
        view = pilot.app.screen.query_one(RunView)
        assert view._lr_marks() == []
        assert "lr" not in view.query_one("#loss-chart", ChartPanel).title_text.plain
