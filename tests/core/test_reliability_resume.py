"""Resume: a run stopped after epoch k and resumed ends with the same metrics as one that
was never stopped (same seed), with and without data-loader workers; the run record and the
Runs-screen API (RunSummary.resumable) agree."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from dftui.core.config import TrainConfig
from dftui.core.events import EpochEnd, RunFailed, RunFinished
from dftui.core.runs import list_runs, read_run, resume_config
from dftui.core.train import RESUME_FILE, StopFlag, fit


def _config(dataset: dict[str, Path], tmp_path: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        train_dir=dataset["train"],
        val_dir=dataset["val"],
        epochs=3,
        batch_size=8,
        img_size=32,
        workers=0,
        precision="fp32",
        pretrained="none",  # learning does not matter here, only that runs agree
        out_dir=tmp_path / "weights",
        overwrite=True,
    )
    return base.with_(**changes)


def _run(config: TrainConfig, stop_after: int | None = None, resume: Path | None = None):
    rows: list[tuple[int, float, float, float]] = []
    stop = StopFlag()

    def emit(event) -> None:
        if isinstance(event, EpochEnd):
            rows.append((event.epoch, event.train_loss, event.val_loss, event.val_accuracy))
            if stop_after is not None and event.epoch == stop_after:
                stop.request("interrupted")

    final = fit(config, emit, stop, resume=resume)
    return rows, final


@pytest.mark.parametrize(
    "workers, augment",
    [(0, "none"), (2, "light")],  # workers > 0 with random flips: the hardest case
)
def test_stopped_and_resumed_matches_uninterrupted(dataset, tmp_path, workers, augment):
    cfg = _config(dataset, tmp_path, workers=workers, augment=augment)
    whole, final = _run(cfg.with_(weights_name="whole.pth"))
    assert isinstance(final, RunFinished) and final.status == "finished"

    part_cfg = cfg.with_(weights_name="parts.pth")
    first, stopped = _run(part_cfg, stop_after=1)
    assert isinstance(stopped, RunFinished) and stopped.status == "interrupted"
    assert stopped.epochs_completed == 1
    run_dir = Path(stopped.run_dir)
    summary = read_run(run_dir)
    assert summary is not None and summary.status == "interrupted" and summary.resumable

    rest, resumed = _run(part_cfg, resume=run_dir)
    assert isinstance(resumed, RunFinished) and resumed.status == "finished", resumed
    assert [r[0] for r in first + rest] == [1, 2, 3]
    for a, b in zip(whole, first + rest, strict=True):
        assert a[0] == b[0]
        assert a[1:] == pytest.approx(b[1:], rel=1e-5, abs=1e-6), (a, b)
    summary = read_run(run_dir)
    assert summary.status == "finished" and not summary.resumable
    assert summary.epochs_completed == 3
    # metrics.csv holds each epoch once, in order.
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    # The best weights of both runs are the same tensors (within float noise).
    a = torch.load(tmp_path / "weights" / "whole.pth", weights_only=True)
    b = torch.load(tmp_path / "weights" / "parts.pth", weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_resume_after_process_died(dataset, tmp_path):
    """A kill -9 leaves run.json at "running" with a dead pid: the run shows as interrupted,
    resumable, and resumes from the last completed epoch (the re-done epoch's metric row,
    written before the kill, is replaced, not duplicated)."""
    cfg = _config(dataset, tmp_path, epochs=2)
    _, stopped = _run(cfg, stop_after=1)
    run_dir = Path(stopped.run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    # What a kill -9 during epoch 2, after its metrics row was written, leaves behind.
    info.update(status="running", pid=2**22 + 12345)
    (run_dir / "run.json").write_text(json.dumps(info))
    with open(run_dir / "metrics.csv", "a") as fh:
        fh.write("2,0.5,0.5,0.5,0.5,0.5,0.5,1.0,1.0,0.0,0\n3,0.4,0.4")  # a cut last line
    with open(run_dir / "events.jsonl", "a") as fh:
        fh.write('{"kind": "batch_end", "phase": "tr')  # cut mid-line
    summary = read_run(run_dir)
    assert summary.status == "interrupted" and summary.resumable
    assert any(r.run_dir == run_dir and r.resumable for r in list_runs())

    rest, final = _run(cfg, resume=run_dir)
    assert isinstance(final, RunFinished) and final.status == "finished"
    assert [r[0] for r in rest] == [2]
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
    # The cut event line stays alone; every line after it parses.
    raw = (run_dir / "events.jsonl").read_text().splitlines()
    bad = [line for line in raw if not line.startswith("{") or not line.endswith("}")]
    assert bad == ['{"kind": "batch_end", "phase": "tr']


def test_resume_refused_while_the_run_is_alive(dataset, tmp_path):
    cfg = _config(dataset, tmp_path, epochs=2)
    _, stopped = _run(cfg, stop_after=1)
    run_dir = Path(stopped.run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    info.update(status="running", pid=os.getppid())  # a live process that is not us
    (run_dir / "run.json").write_text(json.dumps(info))
    _, final = _run(cfg, resume=run_dir)
    assert isinstance(final, RunFailed)
    assert "still running" in final.message and str(os.getppid()) in final.message

    # Settings for a resume come from the run's own config.json (what the Runs screen uses).
    info["status"] = "interrupted"
    (run_dir / "run.json").write_text(json.dumps(info))
    own = resume_config(run_dir)
    assert own.to_dict() == cfg.to_dict()
    assert resume_config(run_dir, epochs=5).epochs == 5
    # Settings for another backbone are refused with the reason, not a state_dict error.
    _, final = _run(cfg.with_(backbone="xception"), resume=run_dir)
    assert isinstance(final, RunFailed) and "holds a mobilenet_v2 run" in final.message


def test_resume_without_checkpoint_or_with_a_damaged_one(dataset, tmp_path):
    cfg = _config(dataset, tmp_path, epochs=2)
    _, stopped = _run(cfg, stop_after=1)
    run_dir = Path(stopped.run_dir)
    ckpt = run_dir / RESUME_FILE
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 3])
    _, final = _run(cfg, resume=run_dir)
    assert isinstance(final, RunFailed) and "cannot be read" in final.message
    ckpt.unlink()
    assert not read_run(run_dir).resumable
    _, final = _run(cfg, resume=run_dir)
    assert isinstance(final, RunFailed) and "nothing to resume" in final.message


def test_resume_does_not_need_the_pretrained_file(dataset, tmp_path):
    """The weights come from resume.pt: a moved or deleted --pretrained file is no obstacle."""
    import torchvision

    copy = tmp_path / "imagenet-format.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), copy)
    cfg = _config(dataset, tmp_path, epochs=2, pretrained=str(copy))
    _, stopped = _run(cfg, stop_after=1)
    copy.unlink()
    _, final = _run(cfg, resume=Path(stopped.run_dir))
    assert isinstance(final, RunFinished) and final.status == "finished", final


def test_a_damaged_optimiser_state_in_resume_pt_is_one_message(dataset, tmp_path):
    """resume.pt is untrusted: an optimiser state that does not fit the model ended the
    resumed run as a bare exception with a traceback; now it is one RunFailed message
    naming the checkpoint."""
    cfg = _config(dataset, tmp_path).with_(weights_name="parts.pth")
    _, stopped = _run(cfg, stop_after=1)
    run_dir = Path(stopped.run_dir)
    path = run_dir / "resume.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["optimizer"]["param_groups"] = []  # no longer the model's parameters
    torch.save(ckpt, path)
    _, final = _run(cfg, resume=run_dir)
    assert isinstance(final, RunFailed), final
    assert "unusable optimiser or schedule state" in final.message and "resume.pt" in final.message
    assert not final.details  # an expected failure: no traceback
