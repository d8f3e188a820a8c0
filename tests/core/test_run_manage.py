"""Run management in the core: user.json (untrusted on read), settings that differ, export
of metrics, deletion (record only unless asked; never a live run; never a file run.json
should not be able to name)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from dftui.core.run_manage import (
    ManageError,
    UserInfo,
    delete_run,
    differing_settings,
    epoch_rows,
    export_metrics_csv,
    parse_tags,
    read_user,
    run_settings,
    safe_stem,
    update_user,
    weights_files,
    write_user,
)
from dftui.core.runs import read_run
from tests.ui.test_runs import write_record


def _run(tmp: Path, name: str = "20260101-000000-mobilenet_v2", status: str = "finished",
         weights: bool = True, **info) -> Path:
    runs = tmp / "runs"
    wpath = tmp / "weights" / f"{name}.pth"
    record = {"status": status, "backbone": "mobilenet_v2", "started": "2026-01-01T00:00:00",
              "epochs": 2, "epochs_completed": 2, "train_dir": "t", "val_dir": "v",
              "weights_path": str(wpath), **info}
    if status == "running":
        record["pid"] = os.getpid()  # alive
    write_record(runs, name, record, [(0.6, 0.5, 0.8), (0.4, 0.3, 0.9)])
    if weights:
        wpath.parent.mkdir(parents=True, exist_ok=True)
        wpath.write_bytes(b"weights")
        wpath.with_suffix(".json").write_text("{}")
    return runs / name


def test_user_info_round_trip_and_defaults(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    assert read_user(run_dir) == (UserInfo(), "")
    saved = write_user(run_dir, UserInfo("lr sweep", ("Baseline", "#aug", "baseline"), "note\nline 2"))
    assert saved.tags == ("baseline", "aug")
    info, problem = read_user(run_dir)
    assert problem == "" and info == saved and info.note == "note\nline 2"
    assert update_user(run_dir, archived=True).archived
    assert read_user(run_dir)[0].name == "lr sweep"  # the other fields are kept


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", ""),  # wrong top-level type: reported by read_json
    ('{"name": 5, "tags": "a,b", "archived": "yes", "note": "ok"}', "name"),
])
def test_damaged_user_json_is_reported_not_fatal(tmp_path: Path, content: str, problem: str) -> None:
    run_dir = _run(tmp_path)
    (run_dir / "user.json").write_text(content)
    info, why = read_user(run_dir)
    assert why.startswith("user.json: ")
    assert problem in why
    if "note" in content:
        assert info.note == "ok" and info.name == "" and info.tags == () and not info.archived


def test_user_text_is_cleaned(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    (run_dir / "user.json").write_text(json.dumps(
        {"name": "a\x1b[2Jb" + "x" * 500, "tags": ["ok", "\x07bell", "x" * 100] + ["t"] * 50}))
    info, why = read_user(run_dir)
    assert why == ""
    assert "\x1b" not in info.name and info.name.startswith("a[2Jb") and len(info.name) <= 60
    assert info.tags[:2] == ("ok", "bell") and all(len(t) <= 24 for t in info.tags)
    assert len(info.tags) <= 12
    assert parse_tags("a, b  c,,#d") == ("a", "b", "c", "d")
    assert safe_stem("lr sweep / 1e-3") == "lr-sweep-1e-3"


def test_settings_that_differ(tmp_path: Path) -> None:
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b")
    (a / "config.json").write_text(json.dumps(
        {"backbone": "mobilenet_v2", "img_size": 64, "batch_size": 8, "lr": 1e-4,
         "augment": "none", "pretrained": "/some/path.pth", "seed": 42}))
    (b / "config.json").write_text(json.dumps(
        {"backbone": "mobilenet_v2", "img_size": 96, "batch_size": 8, "lr": 3e-4,
         "augment": "light", "pretrained": "imagenet", "seed": [1]}))
    sa, sb = run_settings(a), run_settings(b)
    assert sa["pretrained"] == "file" and "seed" not in sb  # a list is not a setting value
    assert differing_settings([sa, sb]) == ["img_size", "lr", "augment", "pretrained", "seed"]


def test_export_metrics_csv_never_overwrites(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    out = tmp_path / "exports"
    first = export_metrics_csv(run_dir, out, "my-run")
    second = export_metrics_csv(run_dir, out, "my-run")
    assert first.name == "my-run-metrics.csv" and second.name == "my-run-metrics-2.csv"
    rows = list(csv.DictReader(first.open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["val_accuracy"]) == pytest.approx(0.9)
    assert sorted(epoch_rows(run_dir)) == [1, 2]


def test_delete_keeps_weights_unless_asked(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    run = read_run(run_dir)
    files = weights_files(run)
    assert [p.suffix for p in files] == [".pth", ".json"]
    removed = delete_run(run, with_weights=False, root=tmp_path / "runs")
    assert removed == [run_dir] and not run_dir.exists()
    assert all(p.exists() for p in files)

    run_dir = _run(tmp_path, "other")
    run = read_run(run_dir)
    files = weights_files(run)
    delete_run(run, with_weights=True, root=tmp_path / "runs")
    assert not run_dir.exists() and not any(p.exists() for p in files)


def test_delete_refuses_a_live_run_and_shared_or_foreign_weights(tmp_path: Path) -> None:
    live = _run(tmp_path, "live", status="running")
    with pytest.raises(ManageError, match="still running"):
        delete_run(read_run(live), root=tmp_path / "runs")
    from dataclasses import replace

    with pytest.raises(ManageError, match="still stalled"):  # no heartbeat lately, yet alive
        delete_run(replace(read_run(live), status="stalled"), root=tmp_path / "runs")
    assert live.exists()

    a = _run(tmp_path, "a")
    shared = str(tmp_path / "weights" / "a.pth")
    b = _run(tmp_path, "b", weights=False, weights_path=shared)
    with pytest.raises(ManageError, match="also the weights of run"):
        delete_run(read_run(b), with_weights=True, root=tmp_path / "runs")
    assert b.exists() and Path(shared).exists()

    # run.json naming a file that is not weights: it is never deleted.
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    c = _run(tmp_path, "c", weights=False, weights_path=str(precious))
    assert weights_files(read_run(c)) == []
    delete_run(read_run(c), with_weights=True, root=tmp_path / "runs")
    assert precious.read_text() == "keep me" and a.exists()
