"""The Runs screen driven through the real app: runs recorded by fit() are listed, one
opens to its charts and epoch table (replayed events), its weights open the classifier,
and a stopped run is resumed on the Training screen."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from dftui.core.config import TrainConfig
from dftui.core.events import (
    BatchEnd,
    EpochEnd,
    RunFinished,
    RunStarted,
)
from dftui.core.runs import list_runs, read_run
from dftui.ui.app import DftuiApp
from dftui.ui.screens.runs import RunDetailScreen, RunsScreen
from dftui.ui.widgets.run_view import RunView
from tests.ui.helpers import wait_for


@pytest.fixture(scope="module")
def run_home(tmp_path_factory: pytest.TempPathFactory, dataset, standin_weights) -> Path:
    """DFTUI_HOME holding two runs made by fit(): one finished, one stopped after its first
    of two epochs (so it can be resumed)."""
    from dftui.core.train import fit

    home = tmp_path_factory.mktemp("runs-home")
    base = TrainConfig(
        train_dir=dataset["train"], val_dir=dataset["val"], epochs=1, batch_size=8, img_size=32,
        pretrained=str(standin_weights), workers=0, out_dir=home / "weights", device="cpu",
        runs_dir=home / "runs",
    )
    finished = fit(base.with_(weights_name="finished.pth"))
    assert isinstance(finished, RunFinished) and finished.status == "finished", finished
    time.sleep(1.1)  # run records sort by their start second

    stop = threading.Event()

    def stop_after_first_epoch(event) -> None:
        if isinstance(event, EpochEnd):
            stop.set()

    stopped = fit(base.with_(weights_name="stopped.pth", epochs=2), stop_after_first_epoch, stop)
    assert isinstance(stopped, RunFinished) and stopped.status == "stopped", stopped
    return home


@pytest.fixture
def with_runs(run_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DFTUI_HOME", str(run_home))
    return run_home


def make_app(tmp: Path, initial: str = "runs") -> DftuiApp:
    return DftuiApp(initial=initial, load_torch=False, settings_path=tmp / "settings.json")


def select(screen: RunsScreen, status: str) -> None:
    table = screen.query_one("#runs-table")
    for run in screen.runs.values():
        if run.status == status:
            table.move_cursor(row=table.get_row_index(str(run.run_dir)))
            return
    raise AssertionError(f"no {status} run listed")


async def test_runs_are_listed_and_one_opens(with_runs: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one("#runs-table")
        assert table.row_count == 2
        by_status = {r.status: r for r in screen.runs.values()}
        assert set(by_status) == {"finished", "stopped"}
        # Newest first: the stopped run was started last.
        # Columns: mark, started, name, backbone, status, best acc, epochs, data.
        first = table.get_row_at(0)
        assert first[4].plain == "stopped" and first[6].plain == "1/2"
        assert first[3] == "mobilenet_v2"
        second = table.get_row_at(1)
        assert second[4].plain == "finished" and second[6].plain == "1/1"
        acc = by_status["finished"].best_val_accuracy
        assert second[5].plain == f"{acc:.1%} @1"
        assert second[7].endswith("train")  # the data set column

        select(screen, "finished")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                       and app.screen.events_fed > 0, what="the run detail")
        detail = app.screen
        view = detail.query_one(RunView)
        assert sorted(view.rows) == [1]
        assert view.rows[1].val_accuracy == pytest.approx(acc)
        assert view.batch_loss, "the recorded batch losses reach the chart"
        assert detail.query_one("#epoch-table").row_count == 1
        assert "finished" in detail.query_one("#run-head").content.plain
        await pilot.press("escape")
        assert app.screen is screen


async def test_classify_with_a_runs_weights(with_runs: Path, tmp_path: Path) -> None:
    from dftui.ui.screens.classify import ClassifyScreen

    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        select(app.screen, "finished")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ClassifyScreen), what="Classify")
        classify = app.screen
        await wait_for(pilot, lambda: classify.predictor is not None, what="the model")
        assert classify.weights_path == with_runs / "weights" / "finished.pth"


async def test_e_on_the_list_evaluates_a_runs_weights(with_runs: Path, tmp_path: Path) -> None:
    from dftui.ui.screens.evaluate import EvaluateScreen

    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        select(app.screen, "finished")
        await pilot.press("e")  # on the list, not only in the detail view (issue 16)
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen), what="Evaluate")
        assert app.screen.weights_path == with_runs / "weights" / "finished.pth"


async def test_resume_continues_a_stopped_run(with_runs: Path, tmp_path: Path) -> None:
    from dftui.ui.screens.training import TrainingScreen

    stopped = next(r for r in list_runs() if r.status == "stopped")
    assert stopped.resumable
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        select(app.screen, "finished")
        await pilot.press("r")  # a finished run cannot be resumed: nothing happens
        assert isinstance(app.screen, RunsScreen)
        select(app.screen, "stopped")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="Training")
        training = app.screen
        await wait_for(pilot, lambda: training.final is not None, timeout=120, what="the run")
        assert isinstance(training.final, RunFinished), training.final
        assert training.final.status == "finished"
        assert Path(training.final.run_dir) == stopped.run_dir
        # The whole run, not only the resumed part: epoch 1 (before the stop) is in the
        # table, and the time shown covers both attempts.
        from dftui.ui.widgets.run_view import RunView

        assert sorted(training.query_one(RunView).rows) == [1, 2]
        outcome = str(training.query_one("#outcome").render())
        assert "Finished 2 epoch(s)" in outcome and "(resumed)" in outcome
    after = read_run(stopped.run_dir)
    assert after.status == "finished" and after.epochs_completed == 2


# -- hand-written records with fixed dates and relative paths (snapshots, run management) --
def write_record(runs: Path, name: str, info: dict, epochs: list[tuple[float, float, float]],
                 resumable: bool = False) -> None:
    run_dir = runs / name
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": name, **info}))
    total = info.get("epochs") or len(epochs)
    events = [RunStarted(
        run_id=name, run_dir=name, config={"epochs": total, "backbone": info["backbone"]},
        device="cpu", device_name="CPU", precision="fp32", channels_last=False, train_size=40,
        val_size=20, train_counts={"real": 20, "fake": 20}, val_counts={"real": 10, "fake": 10},
        steps_per_epoch=5, start_epoch=1, params=2_226_434, workers=0)]
    best = 0
    for i, (train_loss, val_loss, acc) in enumerate(epochs, start=1):
        for b in range(1, 6):
            events.append(
                BatchEnd(
                    phase="train",
                    epoch=i,
                    epochs=total,
                    batch=b,
                    batches=5,
                    loss=train_loss + 0.1 * (5 - b),
                    images_per_s=100.0,
                    data_wait=0.1,
                    elapsed_s=float(i * 5 + b),
                    eta_s=None,
                    rss_mb=500.0,
                )
            )
        if not best or acc > epochs[best - 1][2]:
            best = i
        events.append(
            EpochEnd(
                epoch=i,
                epochs=total,
                train_loss=train_loss,
                val_loss=val_loss,
                val_accuracy=acc,
                val_precision=acc,
                val_recall=acc,
                val_f1=acc,
                seconds=2.0,
                images_per_s=100.0,
                data_wait=0.1,
                is_best=best == i,
                best_epoch=best,
            )
        )
    with open(run_dir / "events.jsonl", "w") as fh:
        for event in events:
            fh.write(json.dumps(event.to_dict()) + "\n")
    if resumable:
        (run_dir / "resume.pt").write_bytes(b"")
