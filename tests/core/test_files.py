"""Atomic writes and the writable-folder probe (core/files.py), which every writer uses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dftui.core.files import (
    atomic_write,
    check_writable,
    remove_stale_temp,
    write_text_atomic,
)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as fh:
        fh.write("half")
        raise RuntimeError("cut")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("durable", [True, False])
def test_text_goes_out_as_written(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "deep" / "skipped.csv"  # the folder is made
    write_text_atomic(path, "a,é\r\nb\n", durable=durable, suffix=".part")
    assert path.read_bytes() == "a,é\r\nb\n".encode()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


def test_the_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{}")
    path.chmod(0o640)
    write_text_atomic(path, "{}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_stale_temps_of_one_file_are_swept(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    (tmp_path / ".run.json.abc123.tmp").write_text("killed mid-write")
    (tmp_path / ".other.json.abc123.tmp").write_text("not ours")
    assert remove_stale_temp(path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [".other.json.abc123.tmp"]


def test_the_writable_probe_leaves_nothing(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "out")
    assert (tmp_path / "new" / "out").is_dir()
    assert list((tmp_path / "new" / "out").iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_the_writable_probe_refuses_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            check_writable(folder)
    finally:
        folder.chmod(0o700)
