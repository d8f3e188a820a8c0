"""Fixed scenes shared by the snapshot tests (tests/ui/test_snapshots.py) and the screen
tests: training events with fixed values, fed to the Training screen instead of a live run,
so nothing in a picture depends on the machine or the clock."""

from __future__ import annotations

from dftui.core.events import (
    BatchEnd,
    CheckpointSaved,
    EpochEnd,
    LogMessage,
    RunFinished,
    RunStarted,
)
from dftui.ui.screens.training import TrainingScreen
from dftui.ui.widgets.run_view import RunView


def training_events(finished: bool) -> list:
    """A 3-epoch run: all of it (``finished``) or stopped in the middle of epoch 3."""
    config = {"backbone": "mobilenet_v2", "epochs": 3, "batch_size": 8, "lr": 1e-4}
    events: list = [
        RunStarted("run-1", "runs/run-1", config, "cpu", "CPU", "fp32", True, 24, 12,
                   {"real": 12, "fake": 12}, {"real": 6, "fake": 6}, 3, 0, 2_226_434, 2),
        LogMessage("warning", "skipping unreadable image train/real/broken.png: empty file"),
    ]
    losses = [0.71, 0.66, 0.60, 0.52, 0.47, 0.41, 0.35, 0.31, 0.28]
    metrics = [(0.61, 0.58, 0.75), (0.45, 0.49, 0.833), (0.33, 0.41, 0.917)]
    step = 0
    for epoch in range(1, 4):
        if not finished and epoch == 3:
            events.append(BatchEnd("train", 3, 3, 2, 3, losses[step], 123.0, 0.12, 20.0, 9.0, 812.0))
            break
        for batch in range(1, 4):
            events.append(BatchEnd("train", epoch, 3, batch, 3, losses[step], 123.0, 0.12,
                                   step * 2.0, 30.0 - step * 2, 812.0))
            step += 1
        train_loss, val_loss, acc = metrics[epoch - 1]
        best = epoch if acc >= 0.75 else 1
        events.append(CheckpointSaved("best", "weights/mobilenet_v2_deepfake.pth", epoch))
        events.append(EpochEnd(epoch, 3, train_loss, val_loss, acc, acc, acc, acc, 6.0, 123.0,
                               0.12, True, best))
    if finished:
        events.append(RunFinished("finished", 3, 3, 0.917, "weights/mobilenet_v2_deepfake.pth",
                                  "weights/mobilenet_v2_deepfake.json", "runs/run-1", 18.0))
    return events


async def show_training(pilot, events, running: bool) -> None:
    app = pilot.app
    screen = await app.open_screen("training")
    assert isinstance(screen, TrainingScreen)
    if running:
        screen.running = True
        screen._show_progress(True)
    for event in events:
        screen.show_event(event)
    screen.refresh_bindings()
    await pilot.pause()
    screen.query_one(RunView)._redraw()
    await pilot.pause()
