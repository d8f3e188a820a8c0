"""`prepare folder`: labelled photos and videos -> face crops named by source; resume,
refusals, and video-level evaluation of the result."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from dftui.core.evaluate import ScoredImage
from dftui.core.prepare import PrepareError, mark_output_folder, output_folder_problem
from dftui.core.prepare_folder import (
    DONE,
    REPORT,
    FolderConfig,
    FolderFinished,
    FolderProgress,
    check_out,
    plan_sources,
    prepare_folder,
)
from dftui.core.prepare_folder import TOOL as FOLDER_TOOL
from dftui.core.video_eval import crop_source, video_level
from tests.media import background, group_photo, write_video


@pytest.fixture()
def source_root(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for label in ("real", "Fake"):  # any capitalisation of the class folders
        (root / label / "clips").mkdir(parents=True)
        for i in range(2):
            write_video(root / label / "clips" / f"v{i}.mp4", frames=6, size=64)
        group_photo(960, 540, widths=(100, 150))[0].save(root / label / "two people.jpg")
        background(300, 300).save(root / label / "empty.png")
    (root / "Fake" / "broken.mkv").write_bytes(b"")
    return root


def test_crops_named_by_source_resumable_and_reported(source_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    events: list[object] = []
    summary = prepare_folder(FolderConfig(source_root, out, frames=3), events.append)
    assert summary.status == "finished", summary.error
    assert (summary.photos, summary.videos) == (4, 5)
    real = sorted(p.name for p in (out / "train_cropped" / "real").iterdir())
    assert real == [
        "clips-v0.mp4__000001-1.jpg", "clips-v0.mp4__000003-1.jpg", "clips-v0.mp4__000005-1.jpg",
        "clips-v1.mp4__000001-1.jpg", "clips-v1.mp4__000003-1.jpg", "clips-v1.mp4__000005-1.jpg",
        "two_people.jpg__000000-1.jpg", "two_people.jpg__000000-2.jpg",
    ]
    assert crop_source(real[0]) == ("clips-v0.mp4", 1)
    assert summary.crops == {"train/real": 8, "train/fake": 8}
    assert summary.no_face == 2 and summary.errors == 1
    report = json.loads((out / REPORT).read_text())
    reasons = {r["source"]: r["detail"] for r in report["skipped"]}
    assert reasons["broken.mkv"].startswith("empty file") and reasons["empty.png"] == "no face found"
    assert isinstance(events[-1], FolderFinished)

    again: list[object] = []
    second = prepare_folder(FolderConfig(source_root, out, frames=3), again.append)
    assert second.skipped_done_before == 9 and not any(isinstance(e, FolderProgress) for e in again)
    assert second.crops == summary.crops and second.no_face == 2


def test_stop_then_resume(source_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stop = threading.Event()

    def stop_after_two(event: object) -> None:
        if isinstance(event, FolderProgress) and event.done == 2:
            stop.set()

    first = prepare_folder(FolderConfig(source_root, out, frames=2), stop_after_two, stop)
    assert first.status == "stopped" and first.sources_done == 2
    assert len((out / DONE).read_text().splitlines()) == 2
    second = prepare_folder(FolderConfig(source_root, out, frames=2), lambda e: None)
    assert second.status == "finished" and second.skipped_done_before == 2 and second.sources_done == 9


def test_validation_split_keeps_each_source_on_one_side(source_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = prepare_folder(FolderConfig(source_root, out, frames=2, val_fraction=0.5), lambda e: None)
    assert summary.status == "finished"
    sides: dict[str, set[str]] = {}
    for path in out.glob("*_cropped/*/*.jpg"):
        sides.setdefault(f"{path.parent.name}/{crop_source(path.name)[0]}", set()).add(path.parent.parent.name)
    assert all(len(s) == 1 for s in sides.values())
    # Per class, half of the sources (4 real, 5 fake) in val: both classes on both sides.
    planned = plan_sources(FolderConfig(source_root, out, val_fraction=0.5))
    assert sorted((s.label, s.split) for s in planned).count(("real", "val")) == 2
    assert sorted((s.label, s.split) for s in planned).count(("fake", "val")) == 2
    one = plan_sources(FolderConfig(source_root, out, val_fraction=0.01))
    assert {(s.label, s.split) for s in one} == {(lab, side) for lab in ("real", "fake") for side in ("train", "val")}


def test_refuses_foreign_or_nested_output(source_root: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"mine")
    refused = prepare_folder(FolderConfig(source_root, foreign), lambda e: None)
    assert refused.status == "failed" and "did not write" in refused.error
    assert (foreign / "holiday.jpg").read_bytes() == b"mine" and len(list(foreign.iterdir())) == 1
    nested = prepare_folder(FolderConfig(source_root, source_root / "crops"), lambda e: None)
    assert nested.status == "failed" and "inside the input" in nested.error
    hidden_only = tmp_path / "hidden"
    hidden_only.mkdir()
    (hidden_only / ".DS_Store").write_bytes(b"")
    check_out(FolderConfig(source_root, hidden_only))  # no error: nothing of the user's
    (hidden_only / "train_cropped").mkdir()  # crop folders without the report: not ours
    with pytest.raises(PrepareError, match="did not write"):
        check_out(FolderConfig(source_root, hidden_only))
    no_labels = prepare_folder(FolderConfig(tmp_path / "foreign", tmp_path / "o2"), lambda e: None)
    assert no_labels.status == "failed" and "no real/ or fake/" in no_labels.error


def test_output_rule_is_the_one_prepare_openforensics_follows(source_root: Path, tmp_path: Path) -> None:
    """check_out refuses what output_folder_problem refuses, with its words; the folder tool's
    marker (written before the first crop) makes a folder its own, so a rerun after a crash resumes."""
    from dftui.core.demo import make_demo_data
    from dftui.core.prepare import OPENFORENSICS_TOOL

    demo = tmp_path / "demo"
    make_demo_data(demo, n=2, size=32)
    why = output_folder_problem(demo, FOLDER_TOOL)
    assert why and "synthetic demo data" in why
    with pytest.raises(PrepareError) as refused:
        check_out(FolderConfig(source_root, demo))
    assert str(refused.value).startswith(why) and "--" not in str(refused.value)

    theirs = tmp_path / "theirs"  # written by prepare openforensics: not the folder tool's
    theirs.mkdir()
    mark_output_folder(theirs, OPENFORENSICS_TOOL)
    (theirs / "train_cropped").mkdir()
    with pytest.raises(PrepareError, match="did not write"):
        check_out(FolderConfig(source_root, theirs))

    crashed = tmp_path / "crashed"  # only the marker and crops: a run killed before its report
    crashed.mkdir()
    mark_output_folder(crashed, FOLDER_TOOL)
    (crashed / "train_cropped" / "real").mkdir(parents=True)
    check_out(FolderConfig(source_root, crashed))  # ours: resumed, not refused


def test_video_level_metrics_group_crops_by_source() -> None:
    def crops(label: int, source: str, scores: list[float]) -> list[ScoredImage]:
        return [ScoredImage(f"/x/{source}__{i:06d}-1.jpg", label, s) for i, s in enumerate(scores)]

    images = (
        crops(0, "a.mp4", [0.1, 0.2, 0.9]) + crops(0, "b.mp4", [0.3, 0.1])
        + crops(1, "a.mp4", [0.9, 0.95, 0.2]) + crops(1, "c.mp4", [0.6, 0.7])
        + [ScoredImage("/x/openforensics_12.jpg", 1, 0.5)]
    )
    # Two faces of one frame: the frame counts once, with its most suspicious face.
    images.append(ScoredImage("/x/b.mp4__000001-2.jpg", 0, 0.15))
    level = video_level(images, 0.5, "mean-max")
    assert level is not None and len(level.videos) == 4 and level.ungrouped == 1
    by = {(v.label, v.source): v for v in level.videos}
    assert by[(0, "a.mp4")].p_fake == pytest.approx(0.4) and by[(0, "b.mp4")].frames == 2
    assert by[(0, "b.mp4")].p_fake == pytest.approx((0.3 + 0.15) / 2)
    assert level.roc_auc == pytest.approx(1.0) and level.eer == pytest.approx(0.0)
    assert "per video (4 videos: 2 real, 2 fake" in level.line()
    # Crops not named by the rule: no video-level line at all.
    assert video_level([ScoredImage("/x/a_1.jpg", 0, 0.2), ScoredImage("/x/b_2.jpg", 1, 0.7)]) is None
