"""`dftui prepare openforensics` as a user runs it: a subprocess, exit codes, output, kills."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from dftui.core import prepare as P
from dftui.core.demo import SampleAnnotation, make_openforensics_sample


def dftui(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dftui", *args], capture_output=True, text=True,
                          env=os.environ.copy(), cwd=cwd, timeout=timeout)


def valid_crops(expected: list[SampleAnnotation]) -> set[str]:
    return {f"{P.SPLITS[e.split]}/{e.expected}/{Path(e.file_name).stem}_{e.ann_id}.jpg"
            for e in expected if e.expected in ("real", "fake")}


def files(out: Path) -> set[str]:
    """The crops under their final names (a hidden name is a save in progress, which the data
    scanner never lists and a rerun sweeps up)."""
    return {str(p.relative_to(out)) for p in out.glob("*_cropped/*/*") if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SampleAnnotation]]:
    root = tmp_path_factory.mktemp("arch")
    return root, make_openforensics_sample(root, "distributed", splits=("Train", "Val"))


def test_prepare_writes_crops_report_and_summary(tmp_path: Path, archive) -> None:
    root, expected = archive
    out = tmp_path / "out"
    r = dftui("prepare", "openforensics", "--root", str(root), "--out", str(out), "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert files(out) == valid_crops(expected)
    lines = r.stdout.splitlines()
    train = next(line for line in lines if line.startswith("Train: 6/6 images"))
    assert "16 faces -> 5 real + 4 fake" in train and "9 new" in train
    assert "missing_image 2" in train and "unreadable_image 1" in train and "faces/s" in train
    assert any(line.startswith("report: ") for line in lines)
    assert f"next: dftui train --train {out / 'train_cropped'} --val {out / 'val_cropped'}" in r.stdout
    assert (out / "prepare_report.json").is_file() and (out / "prepare_skipped.csv").is_file()

    again = dftui("prepare", "openforensics", "--root", str(root), "--out", str(out), "--splits", "Train")
    assert again.returncode == 0, again.stderr
    assert "(0 new, 9 already there)" in again.stdout
    assert files(out) == valid_crops(expected)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--root", "{tmp}/nowhere"], "does not exist"),
        (["--root", "{root}", "--splits", "Train,Nope"], "unknown split 'Nope'"),
        (["--root", "{root}", "--splits", "Test-Challenge"], "no Test-Challenge_poly.json"),
        (["--root", "{root}", "--margin", "-0.5"], "margin -0.5 is out of range"),
        (["--root", "{root}", "--workers", "0"], "workers must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, archive, args: list[str], message: str) -> None:
    root, _ = archive
    args = [a.format(tmp=tmp_path, root=root) for a in args]
    r = dftui("prepare", "openforensics", *args, "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert r.stderr.startswith("dftui: error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_missing_root_option_is_a_usage_error(tmp_path: Path) -> None:
    r = dftui("prepare", "openforensics", "--out", str(tmp_path))
    assert r.returncode == 2 and "--root" in r.stderr


# A run slowed down (each crop takes 30 ms to save) so that a signal lands in the middle of it.
SLOW_RUN = """
import sys, time
from PIL import Image
save = Image.Image.save
def slow_save(self, *a, **k):
    time.sleep(0.03)
    return save(self, *a, **k)
Image.Image.save = slow_save
from dftui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_slow(root: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, "prepare", "openforensics", "--root", str(root),
         "--out", str(out), "--workers", "1", "--plain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def wait_for_crops(out: Path, n: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(files(out)) < n:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SampleAnnotation]]:
    root = tmp_path_factory.mktemp("big")
    return root, make_openforensics_sample(root, "relative", splits=("Train", "Val"), images_per_split=20)


def test_killed_run_leaves_whole_crops_and_resumes(tmp_path: Path, big_archive) -> None:
    root, expected = big_archive
    out = tmp_path / "out"
    proc = start_slow(root, out)
    try:
        wait_for_crops(out, 5, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    first = files(out)
    assert 5 <= len(first) < len(valid_crops(expected))
    for name in first:  # every crop under a final name decodes completely
        with Image.open(out / name) as img:
            img.load()
    r = dftui("prepare", "openforensics", "--root", str(root), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert files(out) == valid_crops(expected)
    assert not list(out.rglob("*" + P.PART_SUFFIX))


def test_ctrl_c_stops_cleanly_with_exit_130(tmp_path: Path, big_archive) -> None:
    root, expected = big_archive
    out = tmp_path / "out"
    proc = start_slow(root, out)
    try:
        wait_for_crops(out, 3, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "[stopped]" in stdout and "run the same command again to resume" in stdout
    assert len(files(out)) < len(valid_crops(expected))
    assert (out / "prepare_report.json").is_file()
    r = dftui("prepare", "openforensics", "--root", str(root), "--out", str(out))
    assert r.returncode == 0 and files(out) == valid_crops(expected)


def test_rich_printer_renders_a_run(tmp_path: Path, archive) -> None:
    from rich.console import Console

    from dftui.cli.prepare_cmd import RichPrinter
    from dftui.core.prepare import PrepareConfig, prepare_openforensics

    root, _ = archive
    buf = io.StringIO()
    printer = RichPrinter(Console(file=buf, force_terminal=True, width=200))
    prepare_openforensics(PrepareConfig(root, tmp_path / "out"), printer)
    printer.close()
    text = buf.getvalue()
    assert "Train: 6/6 images" in text and "Val: 6/6 images" in text and "report:" in text
