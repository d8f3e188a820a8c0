"""The fast image path (Pillow decode, uint8 tensor resize, normalise) gives the reference
pixels, keeps load_rgb's conversions and skips broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.v2.functional import pil_to_tensor

from dftui.core.data import (
    FaceDataset,
    ImageTransform,
    Preprocessing,
    build_transform,
    load_rgb,
    load_tensor,
)
from dftui.core.synthetic import _face

MOBILENET = Preprocessing(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
XCEPTION = Preprocessing(299, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")


def _jpeg(path: Path, size: int, seed: int = 0, **save: object) -> Path:
    _face(np.random.default_rng(seed), size, fake=seed % 2 == 1).save(path, quality=90, **save)
    return path


def test_jpeg_decodes_to_the_same_pixels_as_pillow(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "a.jpg", 320)
    fast = load_tensor(path, 224)
    slow = pil_to_tensor(load_rgb(path, 224))
    assert fast.dtype == torch.uint8 and fast.shape == slow.shape == (3, 320, 320)
    assert torch.equal(fast, slow)


@pytest.mark.parametrize("pre", [MOBILENET, XCEPTION], ids=["224-bilinear", "299-bicubic"])
def test_tensor_pipeline_matches_the_reference_transform(tmp_path: Path, pre: Preprocessing) -> None:
    interp = T.InterpolationMode(pre.interpolation)
    reference = T.Compose([T.Resize((pre.input_size,) * 2, interpolation=interp), T.ToTensor(),
                           T.Normalize(pre.mean, pre.std)])
    for seed, size in enumerate((256, 300, 400)):
        path = _jpeg(tmp_path / f"{seed}.jpg", size, seed)
        with open(path, "rb") as f:
            ref = reference(Image.open(f).convert("RGB"))
        ours = ImageTransform(pre)(load_tensor(path, pre.input_size))
        assert ours.shape == ref.shape == (3, pre.input_size, pre.input_size)
        diff = (ours - ref).abs()
        # A couple of 8-bit levels at most on a few pixels; tiny on average.
        assert diff.max() < 0.05 and diff.mean() < 0.002, (float(diff.max()), float(diff.mean()))
        # PIL input gives the same tensor as the decoded tensor input.
        assert torch.equal(ImageTransform(pre)(load_rgb(path)), ImageTransform(pre)(pil_to_tensor(load_rgb(path))))


def test_large_jpeg_uses_draft_decoding_like_pillow(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "big.jpg", 1000)
    out = load_tensor(path, 224)
    assert torch.equal(out, pil_to_tensor(load_rgb(path, 224)))
    assert out.shape[1] < 1000  # decoded at reduced scale


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    img = _face(np.random.default_rng(0), 300, fake=False).crop((0, 0, 300, 200))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    path = tmp_path / "rot.jpg"
    img.save(path, quality=90, exif=exif)
    out = load_tensor(path, 224)
    assert tuple(out.shape) == (3, 300, 200) == tuple(pil_to_tensor(load_rgb(path)).shape)


def test_other_formats_and_broken_files_behave_as_load_rgb(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # fully transparent: white after compositing
    rgba.save(tmp_path / "a.png")
    assert torch.equal(load_tensor(tmp_path / "a.png"), pil_to_tensor(load_rgb(tmp_path / "a.png")))
    assert int(load_tensor(tmp_path / "a.png").min()) == 255
    good = _jpeg(tmp_path / "good.jpg", 300).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(OSError):
        load_tensor(tmp_path / "cut.jpg", 224)
    with pytest.raises(FileNotFoundError):
        load_tensor(tmp_path / "missing.jpg", 224)


def test_dataset_uses_the_tensor_path_and_skips_broken_files(tmp_path: Path) -> None:
    good = _jpeg(tmp_path / "good.jpg", 300)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:500])
    transform = build_transform(MOBILENET)
    assert isinstance(transform, ImageTransform)
    ds = FaceDataset([(str(good), 0), (str(tmp_path / "cut.jpg"), 1)], transform, 224)
    x, label, note = ds[0]
    assert x.shape == (3, 224, 224) and label == 0 and note == ""
    x, label, note = ds[1]
    assert x is None and label == 1 and "cut.jpg" in note


def test_light_augment_flips_some_images_only() -> None:
    torch.manual_seed(0)
    img = Image.new("RGB", (64, 64))
    img.paste((255, 255, 255), (0, 0, 32, 64))  # left half white
    flip = build_transform(Preprocessing(32, (0.0,) * 3, (1.0,) * 3), "light")
    lefts = {float(flip(img)[0, 0, 0]) for _ in range(20)}
    assert lefts == {0.0, 1.0}
    robust = build_transform(MOBILENET, "robust")
    assert not isinstance(robust, ImageTransform)  # the Pillow perturbations need PIL images
