"""Bad images in training, validation and classification: the scan warns up front, the work
goes on without them, and every skipped file is counted and listed (log + run record)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dftui.core.backbones import get_backbone
from dftui.core.checkpoint import build_metadata, save_weights
from dftui.core.config import TrainConfig
from dftui.core.data import Preprocessing, check_image, display_path, load_rgb, scan_folder
from dftui.core.events import LogMessage, RunFinished
from dftui.core.predict import Predictor, expand_images
from dftui.core.runs import read_run
from dftui.core.synthetic import SyntheticSpec, make_dataset
from dftui.core.train import SKIPPED_FILE, fit

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NON_UTF8 = os.fsdecode(b"face-\xff\xfe")  # a Latin-1 name on a UTF-8 system


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _noise(size=(32, 32), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def add_bad_images(folder: Path) -> dict[str, str | None]:
    """Write every kind of awkward file into ``folder``; returns name -> expected scan
    outcome (None: readable and used; "skip": left out by the scan; "decode": passes the
    header check and is skipped when decoded; "hidden": not even listed)."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, str | None] = {}
    (folder / "zero.jpg").write_bytes(b"")
    out["zero.jpg"] = "skip"
    data = _jpeg_bytes(_noise((64, 64)))
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    out["truncated.jpg"] = "decode"
    (folder / "notes.png").write_text("these are my notes, not an image\n")
    out["notes.png"] = "skip"
    # EXIF orientation 6: stored 40 wide, 20 high; shown rotated, 20 wide, 40 high.
    exif = Image.Exif()
    exif[0x0112] = 6
    (folder / "exif.jpg").write_bytes(_jpeg_bytes(_noise((40, 20)), exif=exif))
    out["exif.jpg"] = None
    _noise().convert("L").save(folder / "gray.png")
    out["gray.png"] = None
    rgba = _noise().convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    out["rgba.png"] = None
    pal = _noise().convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(folder / "palette.png", transparency=0)
    out["palette.png"] = None
    (folder / "cmyk.jpg").write_bytes(_jpeg_bytes(_noise().convert("CMYK")))
    out["cmyk.jpg"] = None
    arr16 = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    Image.fromarray(arr16).save(folder / "sixteen.png")  # mode I;16
    out["sixteen.png"] = None
    Image.new("RGB", (1, 1), (200, 30, 30)).save(folder / "one.png")
    out["one.png"] = None
    # 10000×10000 = 1e8 pixels: over Pillow's limit (~8.9e7), under the 2× at which Pillow
    # itself refuses (between the two it only warns, then decodes hundreds of MB).
    Image.new("1", (10000, 10000)).save(folder / "bomb.png")
    out["bomb.png"] = "skip"
    os.symlink("loop.jpg", folder / "loop.jpg")  # a link to itself
    out["loop.jpg"] = "skip"
    os.symlink(".", folder / "again")  # a folder loop: must not trap the scan
    _noise().save(folder / ".hidden.png")
    out[".hidden.png"] = "hidden"
    (folder / ".cache").mkdir()
    _noise().save(folder / ".cache" / "thumb.png")
    _noise(seed=3).save(folder / (NON_UTF8 + ".png"))
    out[NON_UTF8 + ".png"] = None
    (folder / (NON_UTF8 + "-bad.jpg")).write_bytes(b"\x00" * 100)
    out[NON_UTF8 + "-bad.jpg"] = "skip"
    return out


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad")
    make_dataset(root / "train", SyntheticSpec(n_per_class=12, size=32, seed=1))
    make_dataset(root / "val", SyntheticSpec(n_per_class=6, size=32, seed=2))
    expected = add_bad_images(root / "train" / "fake" / "odd")
    # The validation set gets a few bad files too.
    data = _jpeg_bytes(_noise((64, 64)))
    (root / "val" / "real" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (root / "val" / "fake" / "empty.png").write_bytes(b"")
    return {"root": root, "expected": expected, "odd": root / "train" / "fake" / "odd"}


def test_scan_lists_and_explains_unreadable_files(bad_data):
    scan = scan_folder(bad_data["root"] / "train")
    odd = bad_data["odd"]
    listed = {os.path.basename(p) for p, _ in scan.samples if p.startswith(str(odd))}
    reasons = {os.path.basename(p): r for p, r in scan.unreadable}
    for name, outcome in bad_data["expected"].items():
        if outcome in (None, "decode"):
            assert name in listed, name
        elif outcome == "skip":
            assert name in reasons, name
        else:
            assert name not in listed and name not in reasons, name
    assert reasons["zero.jpg"] == "empty file (0 bytes)"
    assert reasons["notes.png"] == "not an image (or an unsupported format)"
    assert "decompression-bomb" in reasons["bomb.png"]
    assert reasons["loop.jpg"] == "symlink loop"
    assert "thumb.png" not in listed  # inside a hidden folder
    # The folder loop was noticed, not followed forever, and said up front.
    assert any("links back" in w for w in scan.warnings)
    assert any("unreadable image(s) will be skipped" in w for w in scan.warnings)
    assert scan.counts == {"real": 12, "fake": 12 + len(listed)}


def test_decoding_awkward_but_valid_images(bad_data):
    odd = bad_data["odd"]
    exif = load_rgb(odd / "exif.jpg")
    assert exif.size == (20, 40) and exif.mode == "RGB"  # EXIF rotation applied
    for name in ("gray.png", "rgba.png", "palette.png", "cmyk.jpg", "sixteen.png", "one.png"):
        img = load_rgb(odd / name)
        assert img.mode == "RGB", name
    sixteen = np.asarray(load_rgb(odd / "sixteen.png"))
    assert sixteen.max() == 255 and sixteen.min() == 0  # scaled, not clipped to white
    with pytest.raises(OSError, match="truncated"):
        load_rgb(odd / "truncated.jpg")
    with pytest.raises(Image.DecompressionBombError):
        load_rgb(odd / "bomb.png")


def test_unreadable_permission(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    _noise().save(path)
    if IS_ROOT:
        # root reads a chmod 000 file anyway: simulate the refusal the OS gives other users.
        real_open = open

        def guarded(file, *args, **kwargs):
            if os.fspath(file) == str(path):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", guarded)
        real_os_open = os.open

        def guarded_os(file, *args, **kwargs):  # images are opened with os.open (no FIFOs)
            if os.fspath(file) == str(path):
                raise PermissionError(13, "Permission denied", str(path))
            return real_os_open(file, *args, **kwargs)

        monkeypatch.setattr(os, "open", guarded_os)
    else:
        path.chmod(0)
    assert check_image(str(path)) == "permission denied"


def test_training_skips_bad_files_and_records_them(bad_data, tmp_path):
    root = bad_data["root"]
    logs: list[str] = []
    cfg = TrainConfig(
        train_dir=root / "train", val_dir=root / "val", epochs=1, batch_size=8, img_size=32,
        workers=0, precision="fp32", pretrained="none", out_dir=tmp_path / "w",
    )
    final = fit(cfg, lambda e: logs.append(e.text) if isinstance(e, LogMessage) else None)
    assert isinstance(final, RunFinished) and final.status == "finished", final
    run_dir = Path(final.run_dir)
    lines = (run_dir / SKIPPED_FILE).read_text(encoding="utf-8").splitlines()
    names = {os.path.basename(line.split("\t")[0]) for line in lines}
    expected_skips = {n for n, o in bad_data["expected"].items() if o in ("skip", "decode")}
    expected_skips = {display_path(n) for n in expected_skips} | {"cut.jpg", "empty.png"}
    assert names == expected_skips
    info = json.loads((run_dir / "run.json").read_text())
    assert info["skipped_images"] == len(lines) == len(expected_skips)
    assert read_run(run_dir).status == "finished"
    # Found while decoding (the truncated JPEGs), and by the scan: both in the log.
    assert any("truncated.jpg" in t and "truncated" in t.split("truncated.jpg")[1] for t in logs)
    assert any("zero.jpg" in t for t in logs)
    # A name that is not UTF-8 is written escaped, never a crash.
    assert any("\\xff\\xfe" in line for line in lines)


def test_classification_skips_bad_files(bad_data, tmp_path):
    spec = get_backbone("mobilenet_v2")
    model = spec.build().eval()
    pre = Preprocessing(32, spec.mean, spec.std, spec.interpolation)
    weights = tmp_path / "m.pth"
    save_weights(model.state_dict(), weights, build_metadata(spec.name, pre))
    predictor = Predictor(weights, device="cpu")
    paths = expand_images([bad_data["odd"]])
    names = {p.name for p in paths}
    assert ".hidden.png" not in names and "thumb.png" not in names
    preds = {Path(p.path).name: p for p in predictor.predict_paths(paths, batch_size=4)}
    expected = bad_data["expected"]
    for name, outcome in expected.items():
        if outcome == "hidden" or name == "loop.jpg":
            continue
        assert name in preds, name
        if outcome is None:
            assert preds[name].ok and 0.0 <= preds[name].p_fake <= 1.0, name
        else:
            assert not preds[name].ok and preds[name].error, name
    assert "decompression-bomb" in preds["bomb.png"].error
    # Named directly, the symlink loop gets an error too.
    single = predictor.predict_image(bad_data["odd"] / "loop.jpg")
    assert not single.ok and single.error


def test_evaluation_skips_bad_files(bad_data, tmp_path):
    from dftui.core.evaluate import evaluate_folder

    spec = get_backbone("mobilenet_v2")
    pre = Preprocessing(32, spec.mean, spec.std, spec.interpolation)
    weights = tmp_path / "m.pth"
    save_weights(spec.build().eval().state_dict(), weights, build_metadata(spec.name, pre))
    result = evaluate_folder(Predictor(weights, device="cpu"), bad_data["root"] / "train")
    skipped = {os.path.basename(p) for p, _ in result.unreadable}
    expected = bad_data["expected"]
    assert skipped == {n for n, o in expected.items() if o in ("skip", "decode")}
    good = sum(1 for o in expected.values() if o is None)
    assert len(result.images) == 24 + good
