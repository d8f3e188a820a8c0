"""The engine-event -> Textual-message bridge (ui/messages.py) and its one merging rule:
progress of one stream merges, carrying the superseded events along; nothing else merges."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Log, Static

from dftui.core.events import (
    BatchEnd,
    DownloadProgress,
    EpochEnd,
    EvalProgress,
    Event,
    FolderProgress,
    LogMessage,
    SplitProgress,
)
from dftui.ui.messages import EngineEvent, coalesce, engine_poster


def batch(i: int, phase: str = "train") -> BatchEnd:
    return BatchEnd(phase=phase, epoch=1, epochs=1, batch=i, batches=10, loss=1.0 / i,
                    images_per_s=10.0, data_wait=0.0, elapsed_s=float(i), eta_s=None, rss_mb=100.0)


def epoch_end() -> EpochEnd:
    return EpochEnd(epoch=1, epochs=1, train_loss=0.5, val_loss=0.5, val_accuracy=0.9,
                    val_precision=0.9, val_recall=0.9, val_f1=0.9, seconds=1.0, images_per_s=10.0,
                    data_wait=0.0, is_best=True, best_epoch=1)


def split_progress(split: str, done: int) -> SplitProgress:
    return SplitProgress(split=split, images_done=done, images=10, written=done, existing=0,
                         skipped=0, elapsed_s=1.0, faces_per_s=1.0, eta_s=None)


def folder_progress(done: int, status: str = "ok") -> FolderProgress:
    return FolderProgress(
        done=done,
        total=5,
        source=f"s{done}.jpg",
        crops=0 if status != "ok" else 1,
        status=status,
        detail="no face found" if status != "ok" else "",
    )


def test_progress_of_one_stream_merges_and_keeps_every_point() -> None:
    first, second, third = (EngineEvent(batch(i)) for i in (1, 2, 3))
    # Textual asks the queued (older) message whether the next one may supersede it.
    assert first.can_replace(second) and second.can_replace(third)
    assert [e.batch for e in third.events] == [1, 2, 3]  # type: ignore[attr-defined]
    assert third.event.batch == 3  # type: ignore[attr-defined]


def test_progress_of_another_stream_and_other_events_never_merge() -> None:
    pairs = [
        (batch(1, "train"), batch(1, "val")),  # another phase
        (split_progress("Train", 1), split_progress("Val", 1)),  # another split
        (
            EvalProgress(
                folder="a", label="clean", done=1, total=9, images_per_s=1.0, elapsed_s=1.0
            ),
            EvalProgress(
                folder="a", label="jpeg q50", done=1, total=9, images_per_s=1.0, elapsed_s=1.0
            ),
        ),
        (
            DownloadProgress(file="a.pth", done_bytes=1, total_bytes=9),
            DownloadProgress(file="b.pth", done_bytes=1, total_bytes=9),
        ),
        (batch(1), epoch_end()),  # progress is not superseded by a result...
        (epoch_end(), epoch_end()),  # ...and no result is dropped, not even for another
        (LogMessage(level="info", text="a"), LogMessage(level="info", text="a")),
        (epoch_end(), batch(2)),
    ]
    for older, newer in pairs:
        assert not EngineEvent(older).can_replace(EngineEvent(newer)), (older, newer)
    for same in (
        split_progress("Train", 2),
        folder_progress(2),
        DownloadProgress(file="a.pth", done_bytes=5, total_bytes=9),
    ):
        earlier = {
            SplitProgress: split_progress("Train", 1),
            FolderProgress: folder_progress(1),
            DownloadProgress: DownloadProgress(file="a.pth", done_bytes=1, total_bytes=9),
        }[type(same)]
        assert EngineEvent(earlier).can_replace(EngineEvent(same))


def test_events_read_at_once_group_by_the_same_rule() -> None:
    """What the Training screen applies to a log read in one go (history, or a poll)."""
    events: list[Event] = [
        batch(1),
        batch(2),
        batch(1, "val"),
        epoch_end(),
        epoch_end(),
        DownloadProgress(file="a.pth", done_bytes=1, total_bytes=9),
        DownloadProgress(file="a.pth", done_bytes=9, total_bytes=9),
        batch(1),
        LogMessage(level="info", text="t"),
        batch(2),
        batch(3),
    ]
    groups = coalesce(events)
    assert [len(g) for g in groups] == [2, 1, 1, 1, 2, 1, 1, 2]
    assert [e for g in groups for e in g] == events
    # The same as the queue does to their messages.
    for group in groups:
        for older, newer in itertools.pairwise(group):
            assert EngineEvent(older).can_replace(EngineEvent(newer))


class _Recorder(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[EngineEvent] = []

    def compose(self) -> ComposeResult:
        yield Static("recorder")

    def on_engine_event(self, message: EngineEvent) -> None:
        self.received.append(message)


async def test_through_textuals_queue_nothing_is_lost_or_reordered() -> None:
    sent: list[Event] = [batch(i) for i in range(1, 40)]
    sent += [epoch_end(), LogMessage(level="warning", text="x")]
    sent += [batch(i, "val") for i in range(1, 20)] + [epoch_end()]
    app = _Recorder()
    async with app.run_test() as pilot:
        emit = engine_poster(app)
        for event in sent:  # all queued before the app handles any: the queue "lags"
            emit(event)
        await pilot.pause()
        # Progress merged (fewer messages than events), yet every event arrived, in order,
        # and each non-progress event in a message of its own.
        assert len(app.received) < len(sent)
        assert [e for m in app.received for e in m.events] == sent
        results = [m for m in app.received if not isinstance(m.event, BatchEnd)]
        assert [m.events for m in results] == [[e] for e in sent if not isinstance(e, BatchEnd)]

        # From a worker thread (as the screens do): the same, whatever the timing.
        app.received.clear()
        worker = threading.Thread(target=lambda: [emit(e) for e in sent])
        worker.start()
        worker.join()
        await pilot.pause()
        assert [e for m in app.received for e in m.events] == sent


async def test_prepare_screen_logs_a_skipped_source_even_when_its_progress_merged(tmp_path: Path) -> None:
    from dftui.ui.app import DftuiApp
    from dftui.ui.screens.prepare import PrepareScreen

    app = DftuiApp(initial="prepare", load_torch=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, PrepareScreen)
        emit = engine_poster(screen)
        for event in (folder_progress(1), folder_progress(2, "no_face"), folder_progress(3)):
            emit(event)
        await pilot.pause()
        log = "\n".join(screen.query_one("#prepare-log", Log).lines)
        assert "s2.jpg: no face found" in log


async def test_evaluate_screen_warns_through_the_bridge_when_its_record_cannot_be_saved(
    dataset, standin_weights, tmp_path: Path, monkeypatch
) -> None:
    """A worker's warning is a core LogMessage through the bridge (the screen had a private
    note class for it)."""
    from dftui.core.config import TrainConfig
    from dftui.core.events import RunFinished
    from dftui.core.train import fit
    from dftui.ui.app import DftuiApp
    from dftui.ui.screens.evaluate import EvaluateScreen
    from tests.ui.helpers import wait_for

    final = fit(TrainConfig(
        train_dir=dataset["train"], val_dir=dataset["val"], epochs=1, batch_size=8, img_size=32,
        pretrained=str(standin_weights), workers=0, out_dir=tmp_path / "weights",
        runs_dir=tmp_path / "runs", device="cpu"))
    assert isinstance(final, RunFinished), final

    def cannot_save(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr("dftui.core.evaluate.save_evaluation", cannot_save)
    monkeypatch.chdir(tmp_path)
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(140, 48)) as pilot:
        screen = await app.open_screen("evaluate")
        assert isinstance(screen, EvaluateScreen)
        warnings: list[tuple[str, str]] = []
        monkeypatch.setattr(screen, "notify", lambda text, severity="information", **kw:
                            warnings.append((text, severity)))
        screen.folders = [dataset["val"]]
        screen.choose_weights(Path(final.weights_path))
        await pilot.press("r")
        await wait_for(pilot, lambda: len(screen.results) == 1, what="the evaluation")
        await wait_for(pilot, lambda: warnings, what="the warning")
        assert warnings[0] == ("record not saved: No space left on device", "warning")
        screen._stop.set()
