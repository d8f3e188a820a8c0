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
        RunStarted(
            run_id="run-1",
            run_dir="runs/run-1",
            config=config,
            device="cpu",
            device_name="CPU",
            precision="fp32",
            channels_last=True,
            train_size=24,
            val_size=12,
            train_counts={"real": 12, "fake": 12},
            val_counts={"real": 6, "fake": 6},
            steps_per_epoch=3,
            start_epoch=0,
            params=2_226_434,
            workers=2,
        ),
        LogMessage(
            level="warning", text="skipping unreadable image train/real/broken.png: empty file"
        ),
    ]
    losses = [0.71, 0.66, 0.60, 0.52, 0.47, 0.41, 0.35, 0.31, 0.28]
    metrics = [(0.61, 0.58, 0.75), (0.45, 0.49, 0.833), (0.33, 0.41, 0.917)]
    step = 0
    for epoch in range(1, 4):
        if not finished and epoch == 3:
            events.append(
                BatchEnd(
                    phase="train",
                    epoch=3,
                    epochs=3,
                    batch=2,
                    batches=3,
                    loss=losses[step],
                    images_per_s=123.0,
                    data_wait=0.12,
                    elapsed_s=20.0,
                    eta_s=9.0,
                    rss_mb=812.0,
                )
            )
            break
        for batch in range(1, 4):
            events.append(
                BatchEnd(
                    phase="train",
                    epoch=epoch,
                    epochs=3,
                    batch=batch,
                    batches=3,
                    loss=losses[step],
                    images_per_s=123.0,
                    data_wait=0.12,
                    elapsed_s=step * 2.0,
                    eta_s=30.0 - step * 2,
                    rss_mb=812.0,
                )
            )
            step += 1
        train_loss, val_loss, acc = metrics[epoch - 1]
        best = epoch if acc >= 0.75 else 1
        events.append(
            CheckpointSaved(role="best", path="weights/mobilenet_v2_deepfake.pth", epoch=epoch)
        )
        events.append(
            EpochEnd(
                epoch=epoch,
                epochs=3,
                train_loss=train_loss,
                val_loss=val_loss,
                val_accuracy=acc,
                val_precision=acc,
                val_recall=acc,
                val_f1=acc,
                seconds=6.0,
                images_per_s=123.0,
                data_wait=0.12,
                is_best=True,
                best_epoch=best,
            )
        )
    if finished:
        events.append(
            RunFinished(
                status="finished",
                epochs_completed=3,
                best_epoch=3,
                best_val_accuracy=0.917,
                weights_path="weights/mobilenet_v2_deepfake.pth",
                metadata_path="weights/mobilenet_v2_deepfake.json",
                run_dir="runs/run-1",
                seconds=18.0,
            )
        )
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
