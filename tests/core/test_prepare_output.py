"""Issue 12, Prepare: a bad annotation id is skipped and reported (not the whole split), and
prepare never writes into the synthetic demo data or a folder holding files it did not write
(`output_folder_problem`, the one check every data-set writer uses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from dftui.core import prepare as P
from dftui.core.demo import DEMO_MARKER, make_demo_data, make_openforensics_sample


def dftui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dftui", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=120)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "arch"
    make_openforensics_sample(root, "distributed", splits=("Train",))
    return root


def test_an_annotation_id_with_a_slash_is_skipped_and_reported(tmp_path: Path, archive: Path) -> None:
    ann_path = P.find_annotations(archive, "Train")
    data = json.loads(ann_path.read_text())
    good = [a for a in data["annotations"] if isinstance(a, dict)]
    good[0]["id"] = "a/b"
    good[1]["id"] = ".."
    ann_path.write_text(json.dumps(data))
    final = P.prepare_openforensics(P.PrepareConfig(archive, tmp_path / "out", workers=1), lambda e: None)
    assert isinstance(final, P.PrepareFinished) and final.status == "finished", final
    summary = final.summaries[0]
    assert summary.status == "finished" and summary.skipped.get(P.BAD_ID) == 2
    report = json.loads((tmp_path / "out" / P.REPORT_JSON).read_text())
    rows = report["splits"]["Train"]["skipped"]
    assert {r["annotation_id"] for r in rows if r["reason"] == P.BAD_ID} == {"a/b", ".."}
    assert not list((tmp_path / "out").rglob("*_a"))  # nothing written under a cut name


def test_output_folder_rules(tmp_path: Path) -> None:
    tool = P.OPENFORENSICS_TOOL
    assert P.output_folder_problem(tmp_path / "new", tool) is None
    (tmp_path / "empty").mkdir()
    assert P.output_folder_problem(tmp_path / "empty", tool) is None
    mine = tmp_path / "mine"
    mine.mkdir()
    P.mark_output_folder(mine, tool)
    (mine / "train_cropped").mkdir()
    assert P.output_folder_problem(mine, tool) is None
    older = tmp_path / "older"  # prepared before the marker existed: its report says the tool
    older.mkdir()
    (older / P.REPORT_JSON).write_text(json.dumps({"tool": tool, "splits": {}}))
    (older / "val_cropped").mkdir()
    assert P.output_folder_problem(older, tool) is None
    foreign = tmp_path / "foreign"
    (foreign / "holiday").mkdir(parents=True)
    why = P.output_folder_problem(foreign, tool)
    assert why and "did not write (holiday/)" in why
    assert P.output_folder_problem(foreign, tool, allow_existing=True) is None
    assert P.output_folder_problem(foreign, "dftui prepare folder") is not None
    (older / P.REPORT_JSON).write_text('{"a":' * 100_000)  # damaged: not ours
    assert P.output_folder_problem(older, tool) is not None


def test_demo_data_is_never_written_into(tmp_path: Path, archive: Path) -> None:
    demo = tmp_path / "processed_data"
    make_demo_data(demo, n=2, size=32)
    for allow in (False, True):
        why = P.output_folder_problem(demo, P.OPENFORENSICS_TOOL, allow_existing=allow)
        assert why and "synthetic demo data" in why and DEMO_MARKER in why
    before = sorted(str(p) for p in demo.rglob("*"))
    r = dftui("prepare", "openforensics", "--root", str(archive), "--out", str(demo))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "synthetic demo data" in r.stderr and f"{demo}-openforensics" in r.stderr
    r = dftui("prepare", "openforensics", "--root", str(archive), "--out", str(demo), "--into-existing")
    assert r.returncode == 2 and "synthetic demo data" in r.stderr
    assert sorted(str(p) for p in demo.rglob("*")) == before  # nothing written


def test_foreign_folder_needs_the_explicit_flag(tmp_path: Path, archive: Path) -> None:
    out = tmp_path / "mine"
    (out / "photos").mkdir(parents=True)
    r = dftui("prepare", "openforensics", "--root", str(archive), "--out", str(out))
    assert r.returncode == 2 and "did not write (photos/)" in r.stderr and "--into-existing" in r.stderr
    assert not (out / "train_cropped").exists()
    r = dftui("prepare", "openforensics", "--root", str(archive), "--out", str(out), "--into-existing")
    assert r.returncode == 0, r.stderr
    assert (out / "train_cropped").is_dir()
    # Its own folder now: a rerun needs no flag.
    r = dftui("prepare", "openforensics", "--root", str(archive), "--out", str(out))
    assert r.returncode == 0, r.stderr


async def test_prepare_screen_refuses_demo_data_naming_the_field(tmp_path: Path, archive: Path) -> None:
    from dftui.ui.app import DftuiApp
    from dftui.ui.screens.prepare import PrepareScreen
    from tests.ui.helpers import wait_for

    demo = tmp_path / "processed_data"
    make_demo_data(demo, n=2, size=32)
    app = DftuiApp(initial="prepare", load_torch=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, PrepareScreen)
        screen.query_one("#root", Input).value = str(archive)
        screen.query_one("#out", Input).value = str(demo)
        await wait_for(pilot, lambda: bool(screen.selected_splits()), what="the splits")
        await pilot.press("ctrl+s")
        await pilot.pause()
        error = str(screen.query_one("#form-error", Static).render())
        assert "synthetic demo data" in error and "Output folder" in error and "--" not in error
        assert not screen.running
    assert not list(demo.rglob("*.jpg"))  # the demo set is PNG: no crop was added


def test_prepare_folder_reads_its_own_records_as_untrusted(tmp_path: Path) -> None:
    from dftui.core import prepare_folder as F

    out = tmp_path / "out"
    out.mkdir()
    deep = '{"a":' * 100_000
    (out / F.REPORT).write_text(deep)
    with pytest.raises(P.PrepareError, match="did not write"):
        F.check_out(F.FolderConfig(root=tmp_path / "src", out=out))
    assert F._previous_settings(out) is None
    (out / F.DONE).write_bytes(deep.encode() + b"\n\xff\xfe\n" + json.dumps(
        {"source": "a.jpg", "label": "real", "split": "train"}).encode() + b"\n")
    assert list(F._read_done(out)) == ["real/a.jpg"]
