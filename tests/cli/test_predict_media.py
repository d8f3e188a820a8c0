"""`dftui predict` on whole photos and videos, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import dftui
from tests.core.test_predict import reference_weights
from tests.media import background, group_photo, write_video


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    group, _ = group_photo()
    group.save(d / "group.jpg", quality=92)
    background(800, 600, seed=2).save(d / "landscape.jpg")
    (d / "empty.mp4").write_bytes(b"")
    return {
        "dir": d,
        "weights": reference_weights(d / "w.pth", fake_bias=2.0),
        "group": d / "group.jpg",
        "landscape": d / "landscape.jpg",
        "clip": write_video(d / "clip.mp4", frames=8, size=64),
        "empty": d / "empty.mp4",
    }


def test_text_lists_faces_boxes_and_the_video_timeline(media: dict[str, Path]) -> None:
    # One run for several inputs: each CLI start costs seconds on a shared 2-core machine.
    out = dftui("predict", "--weights", str(media["weights"]), "--whole-if-no-face", "--every", "2",
                str(media["group"]), str(media["landscape"]), str(media["clip"]), str(media["empty"]))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split("\t")[1:] == ["fake", "0.8808", "3 face(s)"]
    faces = [line.split("\t") for line in lines[1:4]]
    assert [f[0].strip() for f in faces] == ["face 1", "face 2", "face 3"]
    assert all(f[3].startswith("box ") for f in faces)
    assert lines[4].endswith("whole picture (no face found)")
    assert "4 frames judged, 4 with a face, rule confident" in lines[6]
    assert lines[7].strip().startswith("timeline ████") and lines[8].strip().startswith("most suspicious:")
    assert "skipped empty.mp4: empty file" in out.stderr.replace(str(media["dir"]) + "/", "")


def test_json_has_one_entry_per_face_and_video_frames(media: dict[str, Path]) -> None:
    out = dftui("predict", "--weights", str(media["weights"]), "--json", "--frames", "4",
                "--aggregate", "mean-max", str(media["group"]), str(media["landscape"]), str(media["clip"]))
    assert out.returncode == 0, out.stderr
    group, landscape, clip = json.loads(out.stdout)
    assert len(group["faces"]) == 3 and all(len(f["box"]) == 4 and f["label"] == "fake" for f in group["faces"])
    assert landscape["faces"] == [] and landscape["note"].startswith("no face found") and landscape["label"] is None
    assert clip["kind"] == "video" and clip["frames_sampled"] == 4 and clip["aggregate"] == "mean-max"
    assert clip["frames_with_face"] == 4 and len(clip["suspicious_frames"]) == 3


def test_faces_off_and_bad_options(media: dict[str, Path]) -> None:
    off = dftui("predict", "--weights", str(media["weights"]), "--faces", "off", str(media["group"]))
    assert off.returncode == 0 and off.stdout.strip().split("\t")[1:] == ["fake", "0.8808"]
    bad = dftui("predict", "--weights", str(media["weights"]), "--frames", "0", str(media["clip"]))
    assert bad.returncode == 2 and "--frames" in bad.stderr and "Traceback" not in bad.stderr


def test_prepare_folder_then_evaluate_per_video(media: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "labelled"
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            write_video(root / label / f"clip{i}.mp4", frames=4, size=64)
    out = tmp_path / "crops"
    prep = dftui("prepare", "folder", "--root", str(root), "--out", str(out), "--frames", "2")
    assert prep.returncode == 0, prep.stderr
    assert "crops written: train/fake 4, train/real 4" in prep.stdout
    ev = dftui("evaluate", "--weights", str(media["weights"]), "--no-record", "--plain", str(out / "train_cropped"))
    assert ev.returncode == 0, ev.stderr
    assert "per video (4 videos: 2 real, 2 fake; rule confident)" in ev.stdout
    again = dftui("prepare", "folder", "--root", str(root), "--out", str(media["dir"]))
    assert again.returncode == 2 and "did not write" in again.stderr
