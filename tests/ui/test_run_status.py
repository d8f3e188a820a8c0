"""The run status header: a line under the navigation bar of every screen (but Training)
while a run goes, fed from the Training screen's events; "finished ..." once it ends, gone
after the Training screen was seen."""

from __future__ import annotations

from dftui.core.events import BatchEnd, EpochEnd, RunFinished
from dftui.ui.app import DftuiApp
from dftui.ui.run_status import progress_fraction
from dftui.ui.widgets.navbar import NavBar
from tests.ui.helpers import wait_for
from tests.ui.scenes import training_events


def _nav(app: DftuiApp) -> NavBar:
    return app.screen.query_one(NavBar)


async def test_header_shows_epoch_eta_best_then_finished_then_goes() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        training = await app.open_screen("training")
        assert training is not None
        training.running = True  # as start_run sets it
        for event in training_events(finished=False):
            training.show_event(event)
        assert _nav(app).status is None  # not on the Training screen itself
        await pilot.press("f2")
        await wait_for(pilot, lambda: _nav(app).status is not None, 5, "the header line")
        line = _nav(app).status.plain
        assert "epoch 3/3" in line and "ETA 00:09" in line and "best 83.3%" in line
        assert "89%" in line  # 2 epochs + 2/3 of the third
        assert "epoch 3/3" in str(_nav(app).render())
        # Later batches move it on.
        training.show_event(
            BatchEnd(
                phase="train",
                epoch=3,
                epochs=3,
                batch=3,
                batches=3,
                loss=0.3,
                images_per_s=100.0,
                data_wait=0.1,
                elapsed_s=20.0,
                eta_s=2.0,
                rss_mb=800.0,
            )
        )
        await wait_for(pilot, lambda: "ETA 00:02" in _nav(app).status.plain, 5, "an update")
        training.show_event(
            EpochEnd(
                epoch=3,
                epochs=3,
                train_loss=0.33,
                val_loss=0.41,
                val_accuracy=0.917,
                val_precision=0.9,
                val_recall=0.9,
                val_f1=0.9,
                seconds=6.0,
                images_per_s=100.0,
                data_wait=0.1,
                is_best=True,
                best_epoch=3,
            )
        )
        training.show_event(
            RunFinished(
                status="finished",
                epochs_completed=3,
                best_epoch=3,
                best_val_accuracy=0.917,
                weights_path="w.pth",
                metadata_path="w.json",
                run_dir="r",
                seconds=18.0,
            )
        )
        await wait_for(pilot, lambda: "finished" in _nav(app).status.plain, 5, "the end")
        assert "best 91.7%" in _nav(app).status.plain
        await pilot.press("f5")  # another screen says it too
        await wait_for(pilot, lambda: _nav(app).status is not None, 5, "the Runs header")
        await pilot.press("f3")  # seen on the Training screen ...
        await pilot.pause(1.2)
        await pilot.press("f2")  # ... so the header is gone
        await pilot.pause(1.2)
        assert _nav(app).status is None


async def test_header_absent_without_a_run_and_no_repaint_when_unchanged() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        nav = _nav(app)
        assert nav.status is None
        training = await app.open_screen("training")
        training.running = True
        for event in training_events(finished=False):
            training.show_event(event)
        await pilot.press("f2")
        await wait_for(pilot, lambda: _nav(app).status is not None, 5, "the header line")
        nav = _nav(app)
        updates = []
        original = nav.update
        nav.update = lambda *a, **k: (updates.append(a), original(*a, **k))  # type: ignore[method-assign]
        nav.poll_status()
        nav.poll_status()
        assert updates == []  # same text: nothing repainted


def test_progress_fraction() -> None:
    assert (
        progress_fraction(
            BatchEnd(
                phase="train",
                epoch=1,
                epochs=4,
                batch=5,
                batches=10,
                loss=0.5,
                images_per_s=1,
                data_wait=0,
                elapsed_s=0,
                eta_s=None,
                rss_mb=0,
            )
        )
        == 0.125
    )
    assert (
        progress_fraction(
            BatchEnd(
                phase="val",
                epoch=2,
                epochs=4,
                batch=1,
                batches=3,
                loss=0.5,
                images_per_s=1,
                data_wait=0,
                elapsed_s=0,
                eta_s=None,
                rss_mb=0,
            )
        )
        == 0.5
    )


async def test_full_screen_dialogs_carry_the_status_line(tmp_path) -> None:
    from dftui.core.runs import RunSummary
    from dftui.ui.screens.runs import RunDetailScreen
    from dftui.ui.widgets.navbar import RunStatusLine

    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        training = await app.open_screen("training")
        training.running = True
        for event in training_events(finished=False):
            training.show_event(event)
        run = RunSummary(tmp_path, "r1", "finished", "mobilenet_v2", "", "", "", None, None, 0,
                         None, None)
        await app.open_screen("runs")
        app.push_screen(RunDetailScreen(run))
        await pilot.pause()
        line = app.screen.query_one(RunStatusLine)
        await wait_for(pilot, lambda: line.display, 5, "the status line")
        assert "epoch 3/3" in str(line.render())
        training.running = False  # the run ended without a final event: nothing to say
        await wait_for(pilot, lambda: not line.display, 5, "the line to go")


async def test_early_stopped_run_says_so_on_the_header_and_the_training_screen() -> None:
    from textual.widgets import Static

    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        training = await app.open_screen("training")
        assert training is not None
        training.running = True
        for event in training_events(finished=False):
            training.show_event(event)
        await pilot.press("f2")
        await wait_for(pilot, lambda: _nav(app).status is not None, 5, "the header line")
        training.show_event(RunFinished(status="finished", epochs_completed=2, best_epoch=1,
                                        best_val_accuracy=0.9, weights_path="w.pth",
                                        metadata_path="w.json", run_dir="r", seconds=12.0,
                                        early_stop_epoch=2))
        await wait_for(pilot, lambda: "early stop" in _nav(app).status.plain, 5, "the end")
        assert "finished (early stop at epoch 2)" in _nav(app).status.plain
        outcome = str(training.query_one("#outcome", Static).render())
        assert "Finished 2 epoch(s)" in outcome and "(early stop at epoch 2)" in outcome


async def test_training_title_names_the_class_balancing() -> None:
    from dataclasses import replace

    from textual.widgets import Static

    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(100, 24)) as pilot:
        training = await app.open_screen("training")
        assert training is not None
        started, *rest = training_events(finished=False)
        training.running = True
        training.show_event(replace(started, config={**started.config, "balance": "loss"},
                                    train_counts={"real": 4, "fake": 20}))
        await pilot.pause()
        title = str(training.query_one("#run-title", Static).render())
        assert "(4 real / 20 fake) · balance loss · val" in title


async def test_run_detail_says_where_early_stopping_ended_the_run(tmp_path) -> None:
    from dataclasses import replace

    from textual.widgets import Static

    from dftui.core.runs import RunSummary
    from dftui.ui.screens.runs import RunDetailScreen

    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        run = RunSummary(tmp_path, "r1", "finished", "mobilenet_v2", "", "", "", 0.9, 2, 4,
                         10, None)
        await app.open_screen("runs")
        app.push_screen(RunDetailScreen(replace(run, early_stop_epoch=4)))
        await pilot.pause()
        head = str(app.screen.query_one("#run-head", Static).render())
        assert "finished (early stop at epoch 4) · " in head and "epochs 4/10" in head
