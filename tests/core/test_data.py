from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from dftui.core.data import DataError, Preprocessing, build_transform, scan_folder


def _img(path: Path, color: tuple[int, int, int] = (10, 20, 30), size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)


def test_scan_counts_and_labels(dataset: dict[str, Path]) -> None:
    scan = scan_folder(dataset["train"])
    assert scan.counts == {"real": 20, "fake": 20}
    assert scan.total == 40
    for path, label in scan.samples:
        assert label == (1 if "/fake/" in path else 0)  # real = 0, fake = 1
    assert scan.unreadable == [] and scan.warnings == []


def test_class_folders_are_case_insensitive_and_all_extensions(tmp_path: Path) -> None:
    for i, ext in enumerate(["jpg", "jpeg", "png", "bmp", "webp"]):
        _img(tmp_path / "REAL" / f"a{i}.{ext.upper() if i % 2 else ext}")
        _img(tmp_path / "Fake" / f"b{i}.{ext}")
    (tmp_path / "REAL" / "notes.txt").write_text("not an image")
    scan = scan_folder(tmp_path)
    assert scan.counts == {"real": 5, "fake": 5}


def test_unreadable_and_imbalance_are_reported(tmp_path: Path) -> None:
    for i in range(6):
        _img(tmp_path / "real" / f"r{i}.png")
    _img(tmp_path / "fake" / "f0.png")
    (tmp_path / "fake" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "fake" / "empty.png").write_bytes(b"")
    scan = scan_folder(tmp_path)
    assert scan.counts == {"real": 6, "fake": 1}
    reasons = dict(scan.unreadable)
    assert set(Path(p).name for p in reasons) == {"broken.jpg", "empty.png"}
    assert any("imbalanced" in w for w in scan.warnings)
    assert any("unreadable" in w for w in scan.warnings)


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "does not exist"),
        ("file", "is a file, not a folder"),
        ("no_fake", "has no fake/ folder"),
        ("empty_fake", "holds no images"),
        ("fake_is_file", "a fake/ folder of images was expected"),
    ],
)
def test_scan_errors(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "ds"
    if layout == "file":
        root.write_text("x")
    elif layout != "missing":
        _img(root / "real" / "r.png")
        if layout == "empty_fake":
            (root / "fake").mkdir()
        elif layout == "fake_is_file":
            (root / "fake").write_text("x")
    with pytest.raises(DataError, match=message) as info:
        scan_folder(root)
    assert str(root) in str(info.value)


def test_transform_resizes_and_normalises() -> None:
    pre = Preprocessing(40, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    out = build_transform(pre)(Image.new("RGB", (13, 77), (255, 0, 128)))
    assert tuple(out.shape) == (3, 40, 40)
    assert out[0].max().item() == pytest.approx(1.0)
    assert out[1].min().item() == pytest.approx(-1.0)
