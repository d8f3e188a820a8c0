from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from dftui.core.checkpoint import load_weights
from dftui.core.config import TrainConfig
from dftui.core.events import (
    BatchEnd,
    EpochEnd,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
)
from dftui.core.runs import list_runs, read_events
from dftui.core.train import StopFlag, fit


def _config(dataset: dict[str, Path], tmp_path: Path, standin: Path, **kw: object) -> TrainConfig:
    base = dict(
        train_dir=dataset["train"],
        val_dir=dataset["val"],
        epochs=3,
        batch_size=8,
        img_size=32,
        workers=0,
        pretrained=str(standin),
        out_dir=tmp_path / "weights",
        lr=3e-4,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_short_run_learns_and_emits_events_in_order(
    dataset: dict[str, Path], tmp_path: Path, standin_weights: Path
) -> None:
    events: list[Event] = []
    final = fit(_config(dataset, tmp_path, standin_weights), events.append)
    assert isinstance(final, RunFinished), getattr(final, "message", final)
    assert final.status == "finished" and final.epochs_completed == 3

    kinds = [e.kind for e in events if not isinstance(e, BatchEnd)]
    assert kinds.index("run_started") < kinds.index("epoch_end")
    assert kinds[-1] == "run_finished"
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.train_size == 40 and started.val_size == 20
    assert started.train_counts == {"real": 20, "fake": 20}
    assert started.steps_per_epoch == 5

    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    # It learns. From the stand-in, runs reach a validation loss of 0.05-0.2 and 95-100 %
    # accuracy whatever the precision or seed; the margins below hold across CPUs. (The
    # training loss of 5 batches of 8 is too noisy to compare epoch with epoch.)
    assert epochs[-1].val_loss < 0.5  # chance (an untrained head) is ln 2 = 0.69
    assert max(e.val_accuracy for e in epochs) >= 0.8  # well above chance (0.5)
    batches = [e for e in events if isinstance(e, BatchEnd) and e.phase == "train"]
    assert batches and all(b.loss > 0 and b.images_per_s > 0 for b in batches)
    # Each epoch's events come before the next epoch's.
    order = [(e.epoch, 0 if isinstance(e, BatchEnd) else 1) for e in events if isinstance(e, (BatchEnd, EpochEnd))]
    assert order == sorted(order)

    # Best weights: a plain state_dict loadable the reference way, metadata beside it.
    path = Path(final.weights_path)
    assert path == tmp_path / "weights" / "mobilenet_v2_deepfake.pth"
    from dftui.core.backbones import BACKBONES

    model = BACKBONES["mobilenet_v2"].build()
    model.load_state_dict(torch.load(path, weights_only=True))
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["backbone"] == "mobilenet_v2"
    assert meta["classes"] == {"real": 0, "fake": 1}
    assert meta["preprocessing"]["input_size"] == 32
    assert meta["best_epoch"] == final.best_epoch
    best = max(epochs, key=lambda e: (e.val_accuracy, -e.val_loss))
    assert meta["best_epoch"] == best.epoch
    assert len(meta["epochs"]) == 3 and meta["config"]["batch_size"] == 8
    assert {"torch_version", "dftui_version", "created"} <= set(meta)

    # The run record is readable and complete.
    runs = list_runs()
    assert len(runs) == 1 and runs[0].status == "finished" and runs[0].best_epoch == best.epoch
    run_dir = runs[0].run_dir
    assert (run_dir / "config.json").is_file()
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,val_loss,val_accuracy") and len(rows) == 4
    recorded = read_events(run_dir)
    assert [e.kind for e in recorded if isinstance(e, EpochEnd)] == ["epoch_end"] * 3


def test_existing_weights_are_never_overwritten_silently(
    dataset: dict[str, Path], tmp_path: Path, standin_weights: Path
) -> None:
    out = tmp_path / "weights"
    out.mkdir()
    (out / "mobilenet_v2_deepfake.pth").write_bytes(b"precious")
    events: list[Event] = []
    final = fit(_config(dataset, tmp_path, standin_weights, epochs=1), events.append)
    assert isinstance(final, RunFinished)
    assert (out / "mobilenet_v2_deepfake.pth").read_bytes() == b"precious"
    # Named after the run (its date and time), not a bare counter (issue 16).
    run_id = Path(final.run_dir).name
    stamp = run_id.replace("-mobilenet_v2", "", 1)
    assert Path(final.weights_path).name == f"mobilenet_v2_deepfake-{stamp}.pth"
    # The way out is a setting each surface phrases (--overwrite, the Overwrite box), not a flag.
    assert any(e.kind == "log" and "overwrite" in e.fixes and "--" not in e.text  # type: ignore[attr-defined]
               for e in events)
    final = fit(_config(dataset, tmp_path, standin_weights, epochs=1, overwrite=True))
    assert isinstance(final, RunFinished)
    assert Path(final.weights_path).name == "mobilenet_v2_deepfake.pth"
    load_weights(final.weights_path)


def test_stop_mid_run_keeps_best_weights(
    dataset: dict[str, Path], tmp_path: Path, standin_weights: Path
) -> None:
    stop = StopFlag()
    events: list[Event] = []

    def emit(event: Event) -> None:
        events.append(event)
        # Ask to stop in the middle of epoch 2, as the dashboard's stop key would.
        if isinstance(event, BatchEnd) and event.epoch == 2 and event.phase == "train":
            stop.request("stopped")

    final = fit(_config(dataset, tmp_path, standin_weights, epochs=5), emit, stop)
    assert isinstance(final, RunFinished)
    assert final.status == "stopped"
    assert final.epochs_completed == 1 and final.best_epoch == 1
    assert not any(isinstance(e, EpochEnd) and e.epoch == 2 for e in events)
    state, meta = load_weights(final.weights_path)
    assert meta["best_epoch"] == 1
    assert list_runs()[0].status == "stopped"


def test_stop_before_any_epoch_saves_nothing(
    dataset: dict[str, Path], tmp_path: Path, standin_weights: Path
) -> None:
    stop = threading.Event()
    stop.set()
    final = fit(_config(dataset, tmp_path, standin_weights), stop=stop)
    assert isinstance(final, RunFinished) and final.status == "stopped"
    assert final.weights_path is None and final.best_epoch is None
    assert not (tmp_path / "weights" / "mobilenet_v2_deepfake.pth").exists()


def test_bad_data_fails_with_a_readable_message(dataset: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "nofake"
    (bad / "real").mkdir(parents=True)
    events: list[Event] = []
    final = fit(_config(dataset, tmp_path, Path("unused"), train_dir=bad, pretrained="none"), events.append)
    assert isinstance(final, RunFailed)
    assert "training data" in final.message and "has no fake/ folder" in final.message
    assert events[-1] is final


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"batch_size": -1}, "batch size must be at least 1"),
        ({"lr": 0.0}, "learning rate must be greater than 0"),
        ({"img_size": 8}, "too small for mobilenet_v2"),
        ({"backbone": "resnet"}, "unknown backbone"),
    ],
)
def test_bad_settings_fail_before_work(
    dataset: dict[str, Path], tmp_path: Path, change: dict, message: str
) -> None:
    final = fit(_config(dataset, tmp_path, Path("unused"), pretrained="none", **change))
    assert isinstance(final, RunFailed) and message in final.message


def test_offline_imagenet_run_fails_naming_the_file(dataset: dict[str, Path], tmp_path: Path) -> None:
    final = fit(_config(dataset, tmp_path, Path("unused"), pretrained="imagenet"))
    assert isinstance(final, RunFailed)
    assert "mobilenet_v2-b0353104.pth" in final.message and "--pretrained" not in final.message
    assert "pretrained=none" in final.fixes and "pretrained" in final.fixes
