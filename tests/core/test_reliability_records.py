"""Issue 12, records: every file another process wrote (run.json, config.json, events.jsonl,
weights metadata) is untrusted. A damaged one is reported as damaged, with the reason, and
never raises anything but a ValueError with a readable message."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dftui.core.checkpoint import read_metadata, read_metadata_checked
from dftui.core.config import TrainConfig
from dftui.core.events import EpochEnd, LogMessage, event_from_dict
from dftui.core.runs import list_runs, read_events, read_events_checked, read_run, resume_config
from dftui.core.untrusted import UntrustedError, read_json

DAMAGED_RUN_JSON = [
    "[]",
    '{"pid": "abc", "status": "running"}',
    '{"started": 5}',
    '{"best_val_accuracy": "x", "best_epoch": 1}',
    '{"epochs_completed": [1]}',
    '{"weights_path": {"a": 1}}',
    "[" * 100_000 + "]" * 100_000,
    "not json",
]


def epoch_dict(**changes) -> dict:
    base = {
        "event": "epoch_end", "epoch": 1, "epochs": 2, "train_loss": 0.5, "val_loss": 0.4,
        "val_accuracy": 0.75, "val_precision": 0.7, "val_recall": 0.8, "val_f1": 0.74,
        "seconds": 1.0, "images_per_s": 10.0, "data_wait": 0.1, "is_best": True, "best_epoch": 1,
    }
    base.update(changes)
    return base


def deep_json(depth: int = 100_000) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("text", DAMAGED_RUN_JSON)
def test_a_damaged_run_json_reads_as_damaged_with_its_reason(tmp_path: Path, text: str) -> None:
    run = tmp_path / "runs" / "20260101-000000-mobilenet_v2"
    run.mkdir(parents=True)
    (run / "run.json").write_text(text)
    good = tmp_path / "runs" / "20260102-000000-mobilenet_v2"
    good.mkdir()
    (good / "run.json").write_text(json.dumps(
        {"status": "finished", "started": "2026-01-02T00:00:00+00:00", "best_val_accuracy": 0.5,
         "best_epoch": 1, "epochs_completed": 1, "epochs": 1}))
    summary = read_run(run)
    assert summary is not None and summary.status == "damaged"
    assert summary.message.startswith("run.json")
    assert not summary.resumable
    runs = list_runs(tmp_path / "runs")
    assert [r.status for r in runs] == ["finished", "damaged"]


def test_a_run_json_with_a_dead_pid_still_reads_interrupted(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text('{"pid": 999999999, "status": "running"}')
    assert read_run(tmp_path).status == "interrupted"


@pytest.mark.parametrize("value", ["abc", None, [1], {"x": 1}, True, "NaN"])
def test_an_event_field_of_the_wrong_type_is_refused_with_its_name(value) -> None:
    with pytest.raises(ValueError, match="val_accuracy"):
        event_from_dict(epoch_dict(val_accuracy=value))


def test_event_from_dict_tolerates_unknown_fields_and_missing_defaults() -> None:
    event = event_from_dict({**epoch_dict(), "added_by_a_newer_version": 1})
    assert isinstance(event, EpochEnd) and event.skipped_images == 0
    with pytest.raises(ValueError, match="epoch_end event without"):
        event_from_dict({"event": "epoch_end", "epoch": 1})
    for bad in ([], "x", None, {"event": 5}, {"event": "nope"}):
        with pytest.raises(ValueError):
            event_from_dict(bad)
    assert event_from_dict({"event": "log", "level": "info", "text": "t"}) == LogMessage(
        level="info", text="t"
    )


def test_non_finite_numbers_in_events_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        event_from_dict(epoch_dict(val_loss=math.inf))


def test_damaged_event_lines_are_skipped_and_reported(tmp_path: Path) -> None:
    lines = [
        json.dumps(epoch_dict()),
        json.dumps(epoch_dict(epoch=2, val_accuracy="abc")),
        json.dumps(epoch_dict(epoch=2, val_accuracy=None)),
        "[" * 100_000,
        "\xff\xfe not utf-8",
        "[]",
        json.dumps(epoch_dict(epoch=2)),
    ]
    (tmp_path / "events.jsonl").write_bytes("\n".join(lines).encode("utf-8", "surrogateescape")
                                             .replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe"))
    events, problems = read_events_checked(tmp_path)
    assert [e.epoch for e in events] == [1, 2]
    assert len(problems) == 5
    assert "line 2" in problems[0] and "val_accuracy" in problems[0]
    assert read_events(tmp_path) == events


def test_deeply_nested_metadata_is_damaged_not_a_crash(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    (tmp_path / "w.json").write_text(deep_json())
    assert read_metadata(weights) is None
    meta, problem = read_metadata_checked(weights)
    assert meta is None and "nested too deeply" in problem
    (tmp_path / "w.json").write_text("[1, 2]")
    assert "not an object" in read_metadata_checked(weights)[1]
    (tmp_path / "w.json").unlink()
    assert read_metadata_checked(weights) == (None, None)


def test_read_json_refuses_huge_files_and_fifos(tmp_path: Path) -> None:
    import os

    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 100 + "0]")
    with pytest.raises(UntrustedError, match="too large"):
        read_json(big, expect=list, max_bytes=50)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(UntrustedError, match="not a regular file"):
        read_json(fifo)  # returns at once: a FIFO with no writer would block a plain open()
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")


@pytest.mark.parametrize("text,field", [
    ("[]", "not an object"),
    ('{"epochs": "3"}', "epochs"),
    ('{"train_dir": 5}', "train_dir"),
    ('{"seed": 1e300}', "seed"),
    ('{"compile": "yes"}', "compile"),
    (deep_json(), "nested"),
])
def test_resume_config_of_the_wrong_type_is_a_readable_error(tmp_path: Path, text: str, field: str) -> None:
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=field):
        resume_config(tmp_path)


def test_train_config_from_dict_keeps_good_values() -> None:
    config = TrainConfig.from_dict({"epochs": 3, "train_dir": "a", "img_size": None, "new": 1})
    assert config.epochs == 3 and config.train_dir == Path("a") and config.img_size is None


def test_a_run_folder_deleted_during_training_is_made_whole_again_with_a_warning(
    dataset, tmp_path: Path
) -> None:
    import csv
    import shutil

    from dftui.core.events import EpochEnd, RunFinished
    from dftui.core.train import fit

    config = TrainConfig(train_dir=dataset["train"], val_dir=dataset["val"], pretrained="none",
                         img_size=32, batch_size=8, epochs=2, workers=0, device="cpu",
                         precision="fp32", out_dir=tmp_path / "w", runs_dir=tmp_path / "runs")
    seen: list = []

    def delete_after_epoch_1(event) -> None:
        seen.append(event)
        if isinstance(event, EpochEnd) and event.epoch == 1:
            shutil.rmtree(tmp_path / "runs")

    final = fit(config, delete_after_epoch_1)
    assert isinstance(final, RunFinished) and final.status == "finished", final
    run_dir = Path(final.run_dir)
    warnings = [e.text for e in seen if isinstance(e, LogMessage) and "was deleted" in e.text]
    assert len(warnings) == 1, warnings
    assert {p.name for p in run_dir.iterdir()} >= {
        "run.json", "config.json", "metrics.csv", "events.jsonl", "resume.pt"}
    assert TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text())).epochs == 2
    with open(run_dir / "metrics.csv", newline="") as fh:
        assert [r[0] for r in csv.reader(fh)] == ["epoch", "1", "2"]
    kinds = [e.kind for e in read_events(run_dir)]
    assert kinds[0] in ("log", "run_started") and "run_started" in kinds
    assert kinds.count("epoch_end") == 2 and kinds[-1] == "run_finished"
    assert read_run(run_dir).status == "finished"


@pytest.mark.parametrize("text", [
    "[]", '["metrics"]', '{"metrics": []}', '{"metrics": {"accuracy": "x"}}',
    '{"metrics": {"accuracy": 0.5, "roc_auc": "x"}}', '{"metrics": {"accuracy": 0.5}, "created": 5}',
    '{"a":' * 100_000,
])
def test_damaged_evaluation_records_are_left_out_not_a_crash(tmp_path: Path, text: str) -> None:
    from dftui.core.evaluate import EvaluationError, list_evaluations, load_evaluation

    good = tmp_path / "evaluations" / "20260101-000000-good"
    good.mkdir(parents=True)
    (good / "evaluation.json").write_text(json.dumps(
        {"metrics": {"accuracy": 0.5, "roc_auc": 0.6}, "created": "2026-01-01T00:00:00"}))
    bad = tmp_path / "evaluations" / "20260101-000001-bad"
    bad.mkdir()
    (bad / "evaluation.json").write_text(text)
    (bad / "scores.csv").write_text("path,label,p_fake\n")
    assert [e.record_dir for e in list_evaluations(tmp_path)] == [good]
    with pytest.raises(EvaluationError):
        load_evaluation(bad)


def test_a_damaged_prepare_report_does_not_stop_a_rerun(tmp_path: Path) -> None:
    from dftui.core import prepare as P
    from dftui.core.demo import make_openforensics_sample

    make_openforensics_sample(tmp_path / "arch", "distributed", splits=("Val",))
    out = tmp_path / "out"
    first = P.prepare_openforensics(P.PrepareConfig(tmp_path / "arch", out, workers=1), lambda e: None)
    assert isinstance(first, P.PrepareFinished)
    for text in ('{"splits": {"Val": [1]}, "tool": "dftui prepare openforensics"}',
                 '{"splits": {"Val": {"skipped": [1, "x"]}}, "tool": "dftui prepare openforensics"}',
                 '{"a":' * 100_000):
        (out / P.REPORT_JSON).write_text(text)
        again = P.prepare_openforensics(P.PrepareConfig(tmp_path / "arch", out, workers=1), lambda e: None)
        assert isinstance(again, P.PrepareFinished) and again.status == "finished", again


def test_background_and_launcher_readers_of_run_json_survive_deep_nesting(tmp_path: Path) -> None:
    """The other readers of run.json (background runs, the distributed launcher) go through
    the same helper: a record nested 100,000 deep is unusable, not a RecursionError."""
    from dftui.core import background
    from dftui.core.events import RunFailed
    from dftui.core.runs import note_outcome

    (tmp_path / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / background.LAUNCH_FILE).write_text('{"a":' * 100_000)
    assert note_outcome(tmp_path, None) is None
    background.set_pid(tmp_path, 123)
    background._record_end(tmp_path, RunFailed(message="x", run_dir=str(tmp_path)))
    with pytest.raises(background.LaunchError):
        background.read_launch(tmp_path)
