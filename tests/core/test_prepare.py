"""dftui.core.prepare: OpenForensics COCO annotations -> face crops."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from dftui.core import prepare as P
from dftui.core.data import scan_folder
from dftui.core.demo import SampleAnnotation, make_openforensics_sample
from dftui.core.events import Event, LogMessage
from dftui.core.prepare import (
    PrepareConfig,
    PrepareFailed,
    PrepareFinished,
    SplitProgress,
    crop_box,
    prepare_openforensics,
)


def run(root: Path, out: Path, **kw) -> tuple[PrepareFinished | PrepareFailed, list[Event]]:
    events: list[Event] = []
    kw.setdefault("workers", 2)
    final = prepare_openforensics(PrepareConfig(root, out, **kw), events.append)
    return final, events


def crops(out: Path) -> dict[tuple[str, str], set[str]]:
    """(folder, label) -> file names under out/*_cropped/{real,fake}/ (hidden files included)."""
    found: dict[tuple[str, str], set[str]] = {}
    for folder in sorted(out.glob("*_cropped")):
        for label in ("real", "fake"):
            found[(folder.name, label)] = {p.name for p in (folder / label).iterdir()}
    return found


def check_against(out: Path, expected: list[SampleAnnotation], fmt: str = "jpg") -> None:
    """Every valid annotation has exactly its crop, under its label; nothing else is there."""
    want: dict[tuple[str, str], set[str]] = {}
    for e in expected:
        folder = P.SPLITS[e.split]
        for label in ("real", "fake"):
            want.setdefault((folder, label), set())
        if e.expected in ("real", "fake"):
            stem = Path(e.file_name).stem
            want[(folder, e.expected)].add(f"{stem}_{e.ann_id}.{fmt}")
    assert crops(out) == want


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SampleAnnotation]]:
    root = tmp_path_factory.mktemp("arch")
    return root, make_openforensics_sample(root, "distributed", splits=("Train", "Val"))


@pytest.mark.parametrize("layout", ["distributed", "relative"])
def test_crops_match_annotations_in_both_layouts(tmp_path: Path, layout: str) -> None:
    expected = make_openforensics_sample(tmp_path / "arch", layout, splits=("Train", "Val"))
    final, events = run(tmp_path / "arch", tmp_path / "out")
    assert isinstance(final, PrepareFinished) and final.status == "finished"
    check_against(tmp_path / "out", expected)

    train, val = final.summaries
    assert (train.split, val.split) == ("Train", "Val")
    want = Counter(e.expected for e in expected if e.split == "Train")
    assert train.real == want["real"] and train.fake == want["fake"]
    assert train.written == want["real"] + want["fake"]
    # The defects the sample plants in the first split, each counted under its reason.
    assert train.skipped == {
        P.DEGENERATE_BOX: 1, P.MISSING_IMAGE: 2, P.OUTSIDE_IMAGE: 1, P.UNKNOWN_CATEGORY: 1,
        P.UNKNOWN_IMAGE: 1, P.UNREADABLE_IMAGE: 1,
    }
    assert train.images_missing == 1 and train.images_unreadable == 1
    assert train.clamped == 1  # the partly-outside box was cut to the border, not skipped
    assert train.faces == len([e for e in expected if e.split == "Train"])
    assert val.skipped == {} and val.written == val.faces == 18
    kinds = [type(e).__name__ for e in events if not isinstance(e, SplitProgress)]
    assert kinds[0] == "PrepareStarted" and kinds[-1] == "PrepareFinished"
    assert kinds.count("SplitStarted") == kinds.count("SplitFinished") == 2


def test_report_lists_every_skipped_face(tmp_path: Path, sample) -> None:
    root, expected = sample
    final, _ = run(root, tmp_path / "out")
    assert isinstance(final, PrepareFinished)
    report = json.loads(Path(final.report_path).read_text())
    rows = report["splits"]["Train"]["skipped"]
    got = sorted((int(r["annotation_id"]), r["reason"]) for r in rows)
    want = sorted((e.ann_id, e.expected) for e in expected if e.expected not in ("real", "fake"))
    assert got == want
    assert report["splits"]["Train"]["settings"] == {"margin": 0.0, "min_size": 0, "format": "jpg"}
    with open(final.skipped_csv, newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert sorted((int(r["annotation_id"]), r["reason"]) for r in csv_rows) == want
    corrupt = [r for r in csv_rows if r["reason"] == P.UNREADABLE_IMAGE]
    assert "train_0003.jpg" in corrupt[0]["detail"]


def test_crops_pass_scan_folder(tmp_path: Path, sample) -> None:
    root, expected = sample
    final, _ = run(root, tmp_path / "out")
    for split, folder in (("Train", "train_cropped"), ("Val", "val_cropped")):
        scan = scan_folder(tmp_path / "out" / folder)
        want = Counter(e.expected for e in expected if e.split == split)
        assert scan.counts == {"real": want["real"], "fake": want["fake"]}
        assert scan.unreadable == []
        # labels come from the folder: real = 0, fake = 1
        for path, label in scan.samples:
            assert ("/real/" in path) == (label == 0)


def test_second_run_writes_nothing(tmp_path: Path, sample) -> None:
    root, expected = sample
    first, _ = run(root, tmp_path / "out")
    assert isinstance(first, PrepareFinished)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.jpg")}
    second, _ = run(root, tmp_path / "out")
    assert isinstance(second, PrepareFinished) and second.status == "finished"
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.jpg")}
    assert after == before
    for a, b in zip(first.summaries, second.summaries, strict=True):
        assert b.written == 0 and b.existing == a.written
        assert (b.real, b.fake) == (a.real, a.fake)
        assert b.skipped == a.skipped  # the problems are reported again, not forgotten


def test_rerun_in_other_format_does_not_duplicate(tmp_path: Path, sample) -> None:
    root, expected = sample
    run(root, tmp_path / "out", splits=("Val",))
    final, events = run(root, tmp_path / "out", splits=("Val",), fmt="png")
    assert isinstance(final, PrepareFinished)
    assert final.summaries[0].written == 0
    assert not list((tmp_path / "out").rglob("*.png"))
    warnings = [e.text for e in events if isinstance(e, LogMessage) and e.level == "warning"]
    assert any("were made with" in w for w in warnings)
    # Issue 16: the way out is a setting, a flag on the command line and a field in the dashboard.
    from dftui.cli.advice import with_advice as cli_words
    from dftui.core.advice import decode_all
    from dftui.ui.advice import with_advice as ui_words

    made_with = next(e for e in events if isinstance(e, LogMessage) and "were made with" in e.text)
    assert "--" not in made_with.text
    assert "--out DIR" in cli_words(made_with.text, decode_all(made_with.fixes))
    ui = ui_words(made_with.text, decode_all(made_with.fixes))
    assert "Output folder (Prepare)" in ui and "--" not in ui


class StopAfter:
    """A stop flag that trips once ``n`` images are done (set from the progress events)."""

    def __init__(self, n: int) -> None:
        self.n, self.stopped = n, False

    def emit(self, event: Event) -> None:
        if isinstance(event, SplitProgress) and event.images_done >= self.n:
            self.stopped = True

    def is_set(self) -> bool:
        return self.stopped


def test_interrupted_run_completes_on_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = make_openforensics_sample(tmp_path / "arch", splits=("Train", "Val"), images_per_split=12)
    stop = StopAfter(3)
    config = PrepareConfig(tmp_path / "arch", tmp_path / "out", workers=1)
    monkeypatch.setattr(P, "PROGRESS_INTERVAL_S", 0.0)  # a progress event per image: trips early
    first = prepare_openforensics(config, stop.emit, stop)
    assert isinstance(first, PrepareFinished) and first.status == "stopped"
    assert [s.split for s in first.summaries] == ["Train"]  # Val never started
    done_first = first.summaries[0].written
    assert 0 < done_first < sum(1 for e in expected if e.split == "Train" and e.expected in ("real", "fake"))
    assert first.summaries[0].images_done < 12
    second, _ = run(tmp_path / "arch", tmp_path / "out")
    assert isinstance(second, PrepareFinished) and second.status == "finished"
    assert second.summaries[0].existing == done_first
    check_against(tmp_path / "out", expected)


def test_killed_write_leaves_no_half_crop(tmp_path: Path, sample, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure in the middle of writing a crop (disk full, killed) never leaves a file under
    the final name; the write error stops the run with a message; a rerun completes."""
    root, expected = sample
    calls = {"n": 0}
    real_save = Image.Image.save

    def failing_save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 4:  # the disk stays full
            fp.write(b"\xff\xd8 half a jpeg")  # some bytes reach the disk, then:
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    final, _ = run(root, tmp_path / "out", workers=1, splits=("Val",))
    assert isinstance(final, PrepareFailed)
    assert "the disk is full" in final.message and "rerun" in final.message
    files = list((tmp_path / "out" / "val_cropped").rglob("*"))
    assert not [f for f in files if f.name.endswith(P.PART_SUFFIX)]  # the temp file was removed
    written = [f for f in files if f.is_file()]
    assert len(written) == 3
    for f in written:
        with Image.open(f) as img:
            img.load()
    monkeypatch.setattr(Image.Image, "save", real_save)
    again, _ = run(root, tmp_path / "out", splits=("Val",))
    assert isinstance(again, PrepareFinished) and again.summaries[0].existing == 3
    assert again.summaries[0].written == 15


def test_stale_part_files_are_removed(tmp_path: Path, sample) -> None:
    root, _ = sample
    folder = tmp_path / "out" / "val_cropped" / "fake"
    folder.mkdir(parents=True)
    P.mark_output_folder(tmp_path / "out", P.OPENFORENSICS_TOOL)  # a killed run of prepare's own
    stale = folder / ".val_0000_20.jpg.123.456.part"
    stale.write_bytes(b"half")
    run(root, tmp_path / "out", splits=("Val",))
    assert not stale.exists()


def test_box_geometry_margin_and_min_size(tmp_path: Path) -> None:
    root = tmp_path / "arch"
    (root / "Train" / "Train").mkdir(parents=True)
    img = Image.new("RGB", (100, 80), (0, 0, 255))
    img.save(root / "Train" / "Train" / "a.png")
    anns = [
        {"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [90.5, 70.2, 30, 30]},  # partly outside
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [40, 40, 4, 30]},  # 4 px wide
        {"id": 4, "image_id": 1, "category_id": 0, "bbox": [-50, -50, 20, 20]},  # wholly outside
    ]
    (root / "Train" / "Train_poly.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}], "annotations": anns}))
    final, _ = run(root, tmp_path / "m0", fmt="png", min_size=5)
    assert isinstance(final, PrepareFinished)
    s = final.summaries[0]
    assert s.skipped == {P.TOO_SMALL: 1, P.OUTSIDE_IMAGE: 1}
    assert Image.open(tmp_path / "m0/train_cropped/real/a_1.png").size == (20, 20)
    assert Image.open(tmp_path / "m0/train_cropped/fake/a_2.png").size == (10, 10)  # 90..100, 70..80
    final, _ = run(root, tmp_path / "m5", fmt="png", margin=0.5)
    assert Image.open(tmp_path / "m5/train_cropped/real/a_1.png").size == (30, 30)  # 5..35
    assert Image.open(tmp_path / "m5/train_cropped/fake/a_3.png").size == (6, 46)  # 39..45, 32.5..77.5 -> 32..78
    assert final.summaries[0].skipped == {P.OUTSIDE_IMAGE: 1}


def test_crop_box_edges() -> None:
    assert crop_box((10, 10, 20, 20), 0.0, 100, 100) == ((10, 10, 30, 30), (10, 10, 30, 30), False)
    assert crop_box((10.4, 10.6, 5, 5), 0.0, 100, 100)[0] == (10, 10, 16, 16)  # never loses a fraction
    crop, face, clamped = crop_box((95, -5, 10, 10), 0.0, 100, 100)
    assert crop == (95, 0, 100, 5) and clamped
    assert crop_box((0, 0, 10, 10), 1.0, 100, 100)[0] == (0, 0, 15, 15)  # margin clamped at the border
    assert crop_box((200, 200, 10, 10), 0.0, 100, 100)[0] is None


def test_exif_orientation_is_not_applied(tmp_path: Path) -> None:
    """Boxes are in stored pixel coordinates: the crop comes from the stored pixels even when
    the file says it should be displayed rotated."""
    root = tmp_path / "arch"
    root.mkdir()
    img = Image.new("RGB", (80, 40), (0, 0, 255))
    img.paste((255, 0, 0), (10, 5, 30, 25))  # red square, stored coordinates
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees
    img.save(root / "r.jpg", exif=exif, quality=100, subsampling=0)
    (root / "Train_poly.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "r.jpg", "width": 80, "height": 40}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [12, 7, 16, 16]}]}))
    final, _ = run(root, tmp_path / "out", fmt="png")
    s = final.summaries[0]
    assert s.exif_rotated == 1 and s.size_mismatch == 0
    crop = Image.open(tmp_path / "out/train_cropped/fake/r_7.png").convert("RGB")
    assert crop.size == (16, 16)
    r, g, b = ImageStat.Stat(crop).mean
    assert r > 230 and g < 25 and b < 25


def test_process_pool_gives_the_same_crops(tmp_path: Path, sample) -> None:
    root, expected = sample
    final, _ = run(root, tmp_path / "out", executor="process", workers=2)
    assert isinstance(final, PrepareFinished) and final.status == "finished"
    check_against(tmp_path / "out", expected)


def test_report_merges_splits_across_runs(tmp_path: Path, sample) -> None:
    root, _ = sample
    run(root, tmp_path / "out", splits=("Train",))
    final, _ = run(root, tmp_path / "out", splits=("Val",))
    report = json.loads(Path(final.report_path).read_text())
    assert set(report["splits"]) == {"Train", "Val"}
    with open(final.skipped_csv, newline="") as fh:
        assert {r["split"] for r in csv.DictReader(fh)} == {"Train"}


def test_bad_inputs_fail_with_a_clear_message(tmp_path: Path, sample) -> None:
    root, _ = sample
    final, _ = run(tmp_path / "nowhere", tmp_path / "out")
    assert isinstance(final, PrepareFailed) and "does not exist" in final.message
    (tmp_path / "empty").mkdir()
    final, _ = run(tmp_path / "empty", tmp_path / "out")
    assert isinstance(final, PrepareFailed) and "no OpenForensics annotation file" in final.message
    final, _ = run(root, tmp_path / "out", splits=("Test-Dev",))
    assert isinstance(final, PrepareFailed) and "Test-Dev_poly.json" in final.message
    final, _ = run(root, tmp_path / "out", splits=("Training",))
    assert isinstance(final, PrepareFailed) and "unknown split" in final.message
    final, _ = run(root, tmp_path / "out", margin=-1)
    assert isinstance(final, PrepareFailed) and "margin" in final.message
    blocker = tmp_path / "file"
    blocker.write_text("x")
    final, _ = run(root, blocker / "out")
    assert isinstance(final, PrepareFailed) and "cannot write to the output folder" in final.message


def test_broken_json_fails_that_split_only(tmp_path: Path) -> None:
    make_openforensics_sample(tmp_path / "arch", splits=("Train", "Val"), defects=False)
    (tmp_path / "arch" / "Train" / "Train_poly.json").write_text('{"images": [')
    final, _ = run(tmp_path / "arch", tmp_path / "out")
    assert isinstance(final, PrepareFinished) and final.status == "partial"
    train, val = final.summaries
    assert train.status == "failed" and "not valid JSON" in (train.error or "")
    assert val.status == "finished" and val.written == 18
    (tmp_path / "arch" / "Train" / "Train_poly.json").write_text('{"images": []}')
    final, _ = run(tmp_path / "arch", tmp_path / "out", splits=("Train",))
    assert "not a COCO annotation file" in (final.summaries[0].error or "")


def test_categories_by_name_and_split_aliases(tmp_path: Path) -> None:
    root = tmp_path / "arch"
    root.mkdir()
    Image.new("RGB", (40, 40), (9, 9, 9)).save(root / "x.jpg")
    (root / "Val_poly.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10]}],
        "categories": [{"id": 1, "name": "real"}, {"id": 2, "name": "fake"}]}))
    final, _ = run(root, tmp_path / "out", splits=("val_cropped",))
    assert isinstance(final, PrepareFinished)
    assert (final.summaries[0].real, final.summaries[0].fake) == (1, 1)


def test_core_imports_without_ui_or_torch() -> None:
    code = (
        "import sys, dftui.core.prepare, dftui.core.demo\n"
        "bad = [m for m in ('textual', 'rich', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())


def test_size_mismatch_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "arch"
    root.mkdir()
    Image.new("RGB", (50, 40), (9, 9, 9)).save(root / "s.jpg")
    (root / "Train_poly.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "s.jpg", "width": 100, "height": 80}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [40, 30, 20, 20]}]}))
    final, events = run(root, tmp_path / "out")
    s = final.summaries[0]
    assert s.size_mismatch == 1 and s.real == 1 and s.clamped == 1
    assert Image.open(tmp_path / "out/train_cropped/real/s_1.jpg").size == (10, 10)
    assert any(isinstance(e, LogMessage) and "differ in size" in e.text for e in events)
