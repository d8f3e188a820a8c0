"""The training recipe beyond the reference (core/optim.py): optimiser, weight decay,
learning-rate schedule with warm-up, gradient accumulation and label smoothing. Each option
changes what training does, shows in the record (config.json, metrics.csv, EpochEnd), and a
run stopped and resumed ends exactly as one that was never stopped."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from dftui.core.config import ConfigError, TrainConfig
from dftui.core.events import EpochEnd, RunFinished, RunStarted, event_from_dict
from dftui.core.optim import build_optimisation
from dftui.core.train import StopFlag, fit


def _config(dataset: dict[str, Path], tmp_path: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        train_dir=dataset["train"], val_dir=dataset["val"], epochs=3, batch_size=8,
        img_size=32, workers=0, precision="fp32", pretrained="none",
        out_dir=tmp_path / "weights", overwrite=True, runs_dir=tmp_path / "runs",
    )
    return base.with_(**changes)


def _run(config: TrainConfig, stop_after: int | None = None, resume: Path | None = None):
    epochs: list[EpochEnd] = []
    events: list = []
    stop = StopFlag()

    def emit(event) -> None:
        events.append(event)
        if isinstance(event, EpochEnd):
            epochs.append(event)
            if stop_after is not None and event.epoch == stop_after:
                stop.request("interrupted")

    final = fit(config, emit, stop, resume=resume)
    return epochs, final, events


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def test_the_default_recipe_is_the_reference_adam() -> None:
    """Defaults: Adam at the given rate, no weight decay, one parameter group (as
    torch.optim.Adam(model.parameters())), no schedule, plain cross-entropy, no accumulation."""
    cfg = TrainConfig()
    model = _model()
    opt = build_optimisation(model, cfg, torch.device("cpu"), _fp32())
    assert type(opt.optimizer) is torch.optim.Adam
    reference = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    assert opt.optimizer.state_dict()["param_groups"] == reference.state_dict()["param_groups"]
    assert opt.scheduler is None and opt.accum_steps == 1
    assert opt.criterion.label_smoothing == 0.0


def _fp32():
    from dftui.core.devices import resolve_precision

    return resolve_precision("fp32", torch.device("cpu"))


@pytest.mark.parametrize("name, cls, momentum", [
    ("adamw", torch.optim.AdamW, None), ("sgd", torch.optim.SGD, 0.8),
])
def test_each_optimiser_is_built_by_name_with_its_settings(name, cls, momentum) -> None:
    cfg = TrainConfig(optimizer=name, weight_decay=0.05, lr=1e-3,
                      **({"momentum": momentum} if momentum is not None else {}))
    opt = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    assert type(opt.optimizer) is cls
    groups = opt.optimizer.param_groups
    # Weight decay on the weights; biases and batch norm undecayed (timm's rule).
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 0.05]
    assert all(g["lr"] == 1e-3 for g in groups)
    if momentum is not None:
        assert all(g["momentum"] == momentum and not g["nesterov"] for g in groups)


@pytest.mark.parametrize("schedule", [
    # warm-up 1 epoch from a tenth; then each schedule's own shape (lr 1e-2, 12 epochs).
    "cosine", "step",
])
def test_schedules_set_the_rate_per_epoch(schedule) -> None:
    cfg = TrainConfig(lr=1e-2, lr_schedule=schedule, warmup_epochs=1, epochs=12)
    opt = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    rates = [opt.lr]
    for epoch in range(1, 12):
        opt.end_epoch(epoch, 1.0)
        rates.append(opt.lr)
    assert rates[0] == pytest.approx(1e-3)
    if schedule == "cosine":
        assert rates[1] == pytest.approx(1e-2)  # warm-up over: the full rate
        assert all(a > b for a, b in zip(rates[1:], rates[2:], strict=False))  # then always lower
        assert rates[-1] < 1e-3
    else:
        # ×0.1 every 5 epochs after the warm-up.
        assert rates[1:6] == pytest.approx([1e-2] * 5)
        assert rates[6:11] == pytest.approx([1e-3] * 5)
        assert rates[11:] == pytest.approx([1e-4])


def test_the_step_interval_is_an_option() -> None:
    """Declared once (TrainConfig.lr_step_epochs): the schedule, the flag and the form
    follow; the reference-compatible default is 5."""
    cfg = TrainConfig(lr=1e-2, lr_schedule="step", lr_step_epochs=2, epochs=6)
    opt = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    rates = [opt.lr]
    for epoch in range(1, 6):
        opt.end_epoch(epoch, 1.0)
        rates.append(opt.lr)
    assert rates == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4])
    with pytest.raises(ConfigError, match="step interval must be at least 1"):
        TrainConfig(lr_step_epochs=0).validate()


def test_plateau_cuts_the_rate_after_two_epochs_without_a_lower_loss() -> None:
    cfg = TrainConfig(lr=1e-2, lr_schedule="plateau", epochs=10)
    opt = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    for epoch, loss in enumerate([1.0, 0.9, 0.95, 0.95], start=1):
        opt.end_epoch(epoch, loss)
    assert opt.lr == pytest.approx(1e-2)  # 0.9 then two worse: patience 2 not yet exceeded
    opt.end_epoch(5, 0.95)
    assert opt.lr == pytest.approx(1e-3)


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": "lion"}, "unknown optimiser 'lion'"),
    ({"lr_schedule": "cyclic"}, "unknown learning-rate schedule 'cyclic'"),
    ({"weight_decay": -0.1}, "weight decay must be between 0 and 1"),
    ({"accum_steps": 0}, "accumulation steps must be between 1 and 1024"),
    ({"label_smoothing": 0.5}, "label smoothing"),
    ({"warmup_epochs": 2}, "warm-up"),  # without a schedule
    ({"lr_schedule": "cosine", "warmup_epochs": 15}, "fewer than the 15 epochs"),
    ({"momentum": 0.5}, "momentum"),  # with adam
])
def test_recipe_settings_that_cannot_work_are_refused(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


def test_accumulation_steps_once_per_group_and_at_the_epoch_end() -> None:
    """5 batches with accum_steps 2: steps after batches 2, 4 and 5 (the short last group
    averages over its one batch)."""
    cfg = TrainConfig(accum_steps=2)
    opt = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    assert [b for b in range(1, 6) if opt.ends_group(b, 5)] == [2, 4, 5]
    assert [opt.group_size(b, 5) for b in range(1, 6)] == [2, 2, 2, 2, 1]


def test_accumulated_gradients_equal_one_big_batch() -> None:
    """Two batches of 4 accumulated give the step one batch of 8 gives (the loss is a mean)."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    twin = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    twin.load_state_dict(model.state_dict())
    big = build_optimisation(model, TrainConfig(optimizer="sgd"), torch.device("cpu"), _fp32())
    acc = build_optimisation(twin, TrainConfig(optimizer="sgd", accum_steps=2),
                             torch.device("cpu"), _fp32())
    big.backward(big.criterion(model(x), y), 1)
    big.step()
    for part in (slice(0, 4), slice(4, 8)):
        acc.backward(acc.criterion(twin(x[part]), y[part]), 2)
    acc.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_recipe_run_records_every_choice_and_the_rate_of_each_epoch(dataset, tmp_path) -> None:
    recipe = dict(optimizer="adamw", weight_decay=0.05, lr=1e-3, lr_schedule="cosine",
                  warmup_epochs=1, accum_steps=2, label_smoothing=0.1)
    cfg = _config(dataset, tmp_path, epochs=2, **recipe)
    epochs, final, events = _run(cfg)
    assert isinstance(final, RunFinished) and final.status == "finished", final
    run_dir = Path(final.run_dir)
    recorded = json.loads((run_dir / "config.json").read_text())
    assert {k: recorded[k] for k in recipe} == recipe
    started = next(e for e in events if isinstance(e, RunStarted))
    assert {k: started.config[k] for k in recipe} == recipe
    # Epoch 1 is the warm-up (a tenth of the rate), epoch 2 the full rate.
    assert [e.lr for e in epochs] == pytest.approx([1e-4, 1e-3])
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-4, 1e-3])
    # The effective batch is said at the start.
    assert any("effective batch of 16" in getattr(e, "text", "") for e in events)


def test_an_epoch_end_recorded_before_the_rate_existed_still_replays() -> None:
    old = {"event": "epoch_end", "epoch": 1, "epochs": 2, "train_loss": 0.5, "val_loss": 0.4,
           "val_accuracy": 0.9, "val_precision": 0.9, "val_recall": 0.9, "val_f1": 0.9,
           "seconds": 1.0, "images_per_s": 10.0, "data_wait": 0.0, "is_best": True,
           "best_epoch": 1}
    event = event_from_dict(old)
    assert isinstance(event, EpochEnd) and event.lr is None


def test_a_recipe_run_stopped_and_resumed_matches_an_uninterrupted_one_exactly(
    dataset, tmp_path
) -> None:
    """AdamW + cosine with warm-up + accumulation (5 batches an epoch in groups of 2: a
    short last group) + label smoothing: the resumed run's rates, losses and weights are
    the uninterrupted run's, bit for bit."""
    cfg = _config(dataset, tmp_path, optimizer="adamw", weight_decay=0.05, lr=1e-3,
                  lr_schedule="cosine", warmup_epochs=1, accum_steps=2, label_smoothing=0.1)
    whole, final, _ = _run(cfg.with_(weights_name="whole.pth"))
    assert isinstance(final, RunFinished) and final.status == "finished", final

    part_cfg = cfg.with_(weights_name="parts.pth")
    first, stopped, _ = _run(part_cfg, stop_after=1)
    assert stopped.status == "interrupted" and stopped.epochs_completed == 1
    rest, resumed, _ = _run(part_cfg, resume=Path(stopped.run_dir))
    assert isinstance(resumed, RunFinished) and resumed.status == "finished", resumed

    def key(e: EpochEnd) -> tuple:
        return (e.epoch, e.lr, e.train_loss, e.val_loss, e.val_accuracy)

    assert [key(e) for e in first + rest] == [key(e) for e in whole]
    a = torch.load(tmp_path / "weights" / "whole.pth", weights_only=True)
    b = torch.load(tmp_path / "weights" / "parts.pth", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_the_plateau_state_is_saved_and_restored_whole() -> None:
    """The plateau schedule's memory (best loss, epochs without a better one) goes into
    resume.pt: resumed after epoch 3 it cuts the rate at the same epoch as without a stop."""
    cfg = TrainConfig(lr=1e-2, lr_schedule="plateau", epochs=10)
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.97]
    whole = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    rates = []
    for epoch, loss in enumerate(losses, start=1):
        whole.end_epoch(epoch, loss)
        rates.append(whole.lr)
    first = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    for epoch, loss in enumerate(losses[:3], start=1):
        first.end_epoch(epoch, loss)
    saved = first.state_dict()
    assert "scheduler" in saved
    resumed = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    resumed.load_state_dict(saved, 3)
    later = []
    for epoch, loss in enumerate(losses[3:], start=4):
        resumed.end_epoch(epoch, loss)
        later.append(resumed.lr)
    assert rates[3:] == later and rates[-1] < 1e-2


@pytest.mark.parametrize("damage", [
    {"optimizer": "x"},  # torch's load would replace the scheduler's optimiser with a string
    {"best": "low"}, {"num_bad_epochs": None}, {"mode": 3},
])
def test_a_damaged_plateau_state_is_refused_at_load(damage) -> None:
    """resume.pt is untrusted: torch's ReduceLROnPlateau.load_state_dict copies any keys
    into the scheduler, so a damaged entry crashed the run epochs later (or drove it
    silently). It is refused when the run resumes, naming the setting."""
    cfg = TrainConfig(lr=1e-2, lr_schedule="plateau", epochs=10)
    first = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    first.end_epoch(1, 1.0)
    saved = first.state_dict()
    saved["scheduler"]["plateau"].update(damage)
    resumed = build_optimisation(_model(), cfg, torch.device("cpu"), _fp32())
    with pytest.raises(ValueError, match="plateau"):
        resumed.load_state_dict(saved, 1)
    resumed.end_epoch(2, 0.9)  # still usable: nothing of the damaged state was taken


def test_a_metrics_file_from_before_the_rate_column_keeps_its_rows_on_resume(tmp_path) -> None:
    from dftui.core.runs import METRIC_COLUMNS, RunRecorder

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = ",".join(METRIC_COLUMNS[:-1])
    (run_dir / "metrics.csv").write_text(
        old + "\n1,0.5,0.5,0.5,0.5,0.5,0.5,1.0,1.0,0.0,1\n2,0.4,0.4,0.6,0.6,0.6,0.6,1.0,1.0,0.0,1\n")
    recorder = RunRecorder(run_dir, resumed=True)
    try:
        recorder.trim_after(1)
    finally:
        recorder.close()
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["epoch"], r["train_loss"], r["lr"]) for r in rows] == [("1", "0.5", "")]


@pytest.mark.parametrize("flags, message", [
    (["--warmup-epochs", "2"], "warm-up epochs need a learning-rate schedule"),
    (["--optimizer", "adam", "--momentum", "0.5"], "momentum applies to the sgd optimiser"),
    (["--label-smoothing", "0.5"], "label smoothing: must be below 0.5"),
])
def test_the_cli_refuses_a_recipe_that_cannot_work_in_one_line(tmp_path, capsys, flags, message):
    from dftui.cli import main

    data = tmp_path / "none"
    code = main(["train", "--train", str(data), "--val", str(data), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_the_run_header_states_the_recipe_and_the_effective_batch() -> None:
    from dftui.cli.printer import _started_line

    def header(**config) -> str:
        base = {"backbone": "mobilenet_v2", "batch_size": 8, "weights_path": "w.pth"}
        event = RunStarted(
            run_id="r",
            run_dir="runs/r",
            config={**base, **config},
            device="cpu",
            device_name="CPU",
            precision="fp32",
            channels_last=False,
            train_size=32,
            val_size=16,
            train_counts={"real": 16, "fake": 16},
            val_counts={"real": 8, "fake": 8},
            steps_per_epoch=4,
            start_epoch=0,
            params=1,
            workers=0,
        )
        return _started_line(event)

    line = header(**{**TrainConfig().to_dict(), "batch_size": 8, "optimizer": "adamw",
                     "weight_decay": 0.05, "lr_schedule": "cosine", "warmup_epochs": 1,
                     "accum_steps": 2, "label_smoothing": 0.1})
    assert "adamw (weight decay 0.05)" in line
    assert "cosine learning-rate schedule after 1 warm-up epoch(s)" in line
    assert "batch 8 × 2 accumulated steps = effective batch 16" in line
    assert "label smoothing 0.1" in line
    plain = header(**{**TrainConfig().to_dict(), "batch_size": 8})  # the reference: no notes
    assert "effective" not in plain and "schedule" not in plain and "adam" not in plain
