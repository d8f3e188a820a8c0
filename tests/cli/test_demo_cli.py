"""`dftui demo-data` and dftui.core.demo: the synthetic starter set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dftui.core.data import scan_folder
from dftui.core.demo import (
    DEMO_MARKER,
    DemoDataError,
    default_folders_empty,
    demo_counts,
    is_demo_data,
    make_demo_data,
)


def dftui(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dftui", *args], capture_output=True, text=True,
                          env=os.environ.copy(), cwd=cwd, timeout=timeout)


def test_demo_data_is_written_described_and_trainable(tmp_path: Path) -> None:
    out = tmp_path / "data"
    r = dftui("demo-data", "--out", str(out), "--n", "12", "--size", "32")
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stdout and "not photographs" in r.stdout
    assert f"{out / 'train_cropped'}: 12 real + 12 fake" in r.stdout
    for name, n in (("train_cropped", 12), ("val_cropped", 8), ("test_dev_cropped", 8)):
        scan = scan_folder(out / name)
        assert scan.counts == {"real": n, "fake": n} and not scan.unreadable
        assert is_demo_data(out / name)
        assert "SYNTHETIC" in (out / name / DEMO_MARKER).read_text()

    # ...and `dftui train` accepts it (1 epoch, random init, tiny images: a smoke check)
    t = dftui("train", "--train", str(out / "train_cropped"), "--val", str(out / "val_cropped"),
              "--epochs", "1", "--pretrained", "none", "--img-size", "32", "--batch-size", "8",
              "--workers", "0", "--plain", "--out", str(tmp_path / "weights"), cwd=tmp_path)
    assert t.returncode == 0, t.stderr
    assert "train 24 (12 real / 12 fake" in t.stdout and "val 16" in t.stdout
    assert (tmp_path / "weights" / "mobilenet_v2_deepfake.pth").is_file()


def test_refuses_non_empty_folders_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "data"
    (out / "train_cropped" / "real").mkdir(parents=True)
    mine = out / "train_cropped" / "real" / "my_face.jpg"
    mine.write_bytes(b"the user's own file")
    r = dftui("demo-data", "--out", str(out), "--n", "4", "--size", "32")
    assert r.returncode == 2
    assert r.stderr.startswith("dftui: error: ") and "already hold files" in r.stderr and "--force" in r.stderr
    assert not (out / "val_cropped").exists()  # nothing written

    r = dftui("demo-data", "--out", str(out), "--n", "4", "--size", "32", "--force")
    assert r.returncode == 0, r.stderr
    moved = list(out.glob("train_cropped.old-*"))
    assert len(moved) == 1 and (moved[0] / "real" / "my_face.jpg").read_bytes() == b"the user's own file"
    assert "moved the existing" in r.stdout
    assert scan_folder(out / "train_cropped").counts == {"real": 4, "fake": 4}


def test_help_says_synthetic() -> None:
    r = dftui("demo-data", "--help")
    assert r.returncode == 0 and "SYNTHETIC" in r.stdout
    top = dftui("--help")
    assert "demo-data" in top.stdout and "prepare" in top.stdout


def test_bad_values_are_clear(tmp_path: Path) -> None:
    r = dftui("demo-data", "--out", str(tmp_path / "d"), "--n", "0")
    assert r.returncode == 2 and "--n must be at least 1" in r.stderr
    r = dftui("demo-data", "--out", str(tmp_path / "d"), "--size", "4")
    assert r.returncode == 2 and "--size 4 is out of range" in r.stderr
    (tmp_path / "f").write_text("x")
    with pytest.raises(DemoDataError, match="is a file"):
        make_demo_data(tmp_path / "f")


def test_default_folders_empty(tmp_path: Path) -> None:
    assert default_folders_empty(tmp_path / "missing")
    (tmp_path / "train_cropped" / "real").mkdir(parents=True)
    (tmp_path / "val_cropped" / "fake").mkdir(parents=True)
    assert default_folders_empty(tmp_path)  # folders, but no images
    (tmp_path / "train_cropped" / "real" / ".hidden.jpg").write_bytes(b"x")
    assert default_folders_empty(tmp_path)
    make_demo_data(tmp_path / "x", n=2, size=16)
    assert not default_folders_empty(tmp_path / "x")


def test_demo_counts() -> None:
    assert demo_counts(96) == {"train_cropped": 96, "val_cropped": 48, "test_dev_cropped": 48}
    assert demo_counts(32) == {"train_cropped": 32, "val_cropped": 16, "test_dev_cropped": 16}
    assert demo_counts(4) == {"train_cropped": 4, "val_cropped": 8, "test_dev_cropped": 8}
