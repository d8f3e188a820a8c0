"""Corruptions for robustness tests and the training augmentations (--augment)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dftui.core.augment import CORRUPTIONS, RandomPerturb, parse_corruptions, robust_augmentations
from dftui.core.config import ConfigError, TrainConfig
from dftui.core.data import Preprocessing, build_transform
from dftui.core.synthetic import _face

PRE = Preprocessing(32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")


@pytest.fixture
def face() -> Image.Image:
    return _face(np.random.default_rng(3), 48, fake=True)


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_grow_with_severity(name: str, face: Image.Image) -> None:
    spec = CORRUPTIONS[name]
    outs = [spec.apply(face, s, seed=1) for s in spec.severities]
    for out in outs:
        assert out.size == face.size and out.mode == "RGB"
    diffs = [_diff(face, o) for o in outs]
    assert diffs[0] > 0, f"{name} at its mildest changed nothing"
    assert diffs == sorted(diffs), f"{name}: damage should grow with severity: {diffs}"
    assert spec.label(spec.severities[0]).startswith(name)


def test_noise_is_seeded(face: Image.Image) -> None:
    spec = CORRUPTIONS["noise"]
    a, b, c = (spec.apply(face, 10, seed=s) for s in (1, 1, 2))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_parse_corruptions() -> None:
    assert parse_corruptions("all") == list(CORRUPTIONS)
    assert parse_corruptions(" JPEG, blur,jpeg ") == ["jpeg", "blur"]
    with pytest.raises(ValueError, match="fog"):
        parse_corruptions("jpeg,fog")
    with pytest.raises(ValueError):
        parse_corruptions(",")


def _reference_transform() -> T.Compose:
    """The reference scripts' eval/train transform: resize, to tensor, normalise."""
    return T.Compose([T.Resize((32, 32)), T.ToTensor(), T.Normalize(PRE.mean, PRE.std)])


def _steps(transform: object) -> list[object]:
    return list(getattr(transform, "transforms", [transform]))


def test_augment_none_is_the_reference_transform(face: Image.Image) -> None:
    transform = build_transform(PRE, "none")
    # No random step of any kind.
    random_types = (T.RandomHorizontalFlip, T.ColorJitter, RandomPerturb)
    assert not any(isinstance(s, random_types) for s in _steps(transform))
    outs = []
    for seed in range(5):
        torch.manual_seed(seed)
        random.seed(seed)
        outs.append(transform(face))
    for out in outs[1:]:
        assert torch.equal(out, outs[0]), "augment none must be deterministic"
    ref = _reference_transform()(face)
    assert outs[0].shape == ref.shape == (3, 32, 32)
    # The same pixels as the reference pipeline (an antialiased tensor resize may differ
    # from Pillow's by at most 2/255 per pixel, far below what changes a prediction).
    tol = (2.5 / 255) / min(PRE.std)
    assert (outs[0] - ref).abs().max().item() <= tol
    assert (outs[0] - ref).abs().mean().item() < 0.01


def test_augment_light_only_flips(face: Image.Image) -> None:
    plain = build_transform(PRE, "none")(face)
    flipped = plain.flip(-1)
    light = build_transform(PRE, "light")
    torch.manual_seed(0)
    random.seed(0)
    seen = set()
    for _ in range(20):
        out = light(face)
        if torch.allclose(out, plain, atol=1e-5):
            seen.add("plain")
        elif torch.allclose(out, flipped, atol=1e-5):
            seen.add("flipped")
        else:
            pytest.fail("light augmentation did something other than a horizontal flip")
    assert seen == {"plain", "flipped"}


def test_augment_robust_applies_the_perturbations(face: Image.Image) -> None:
    transform = build_transform(PRE, "robust")
    steps = _steps(transform)
    kinds = {type(s).__name__ for s in steps}
    assert {"RandomHorizontalFlip", "ColorJitter", "RandomPerturb"} <= kinds
    perturbs = {s.fn.__name__ for s in steps if isinstance(s, RandomPerturb)}
    assert perturbs == {"jpeg", "blur", "noise"}
    assert len(robust_augmentations()) == 4
    random.seed(0)
    torch.manual_seed(0)
    plain = build_transform(PRE, "none")(face)
    outs = [transform(face) for _ in range(12)]
    assert all(o.shape == plain.shape for o in outs)
    changed = [not torch.allclose(o, plain, atol=1e-3) and not torch.allclose(o, plain.flip(-1), atol=1e-3)
               for o in outs]
    assert sum(changed) >= 6, "robust augmentation should perturb most images"
    assert not all(torch.allclose(outs[0], o) for o in outs[1:])


def test_random_perturb_probability(face: Image.Image) -> None:
    calls = []

    def fn(img: Image.Image, level: float) -> Image.Image:
        calls.append(level)
        return img

    random.seed(1)
    never, always = RandomPerturb(fn, 1, 2, p=0.0), RandomPerturb(fn, 1, 2, p=1.0)
    for _ in range(10):
        never(face)
    assert calls == []
    for _ in range(10):
        always(face)
    assert len(calls) == 10 and all(1 <= c <= 2 for c in calls)


def test_config_and_cli_accept_the_augment_modes(tmp_path) -> None:
    from dftui.cli import build_parser

    for mode in ("none", "light", "robust"):
        args = build_parser().parse_args(["train", "--train", "a", "--val", "b", "--augment", mode])
        assert args.augment == mode
    assert TrainConfig(backbone="mobilenet_v2", train_dir=tmp_path, val_dir=tmp_path).augment == "none"
    with pytest.raises(ConfigError, match="augmentation"):
        TrainConfig(backbone="mobilenet_v2", train_dir=tmp_path, val_dir=tmp_path,
                    augment="heavy").validate()
