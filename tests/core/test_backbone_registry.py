"""A backbone is one registry entry: registering a factory is all it takes for the CLI, the
option table, the engine, the weights' metadata and the predictor to use it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from dftui.core.backbones import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    WeightsError,
    count_parameters,
    register_backbone,
    resolve_pretrained_file,
)

TINY = "tiny_test_net"


class _TinyNet(nn.Module):
    """A network with an ImageNet-style 1000-class head, small enough to train in a blink."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.stem(x))).flatten(1))


@pytest.fixture
def tiny_backbone() -> Iterator[str]:
    @register_backbone(
        title="Tiny (test only)",
        input_size=32,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        head="fc",
        feature_dim=8,
        min_size=16,
        cam_layer="stem",
        key_marker="stem.weight",
        params_2class=3 * 8 * 9 + 8 + 8 * 2 + 2,
    )
    def tiny_test_net() -> nn.Module:
        return _TinyNet()

    try:
        yield TINY
    finally:
        BACKBONES.pop(TINY, None)


def test_a_registered_backbone_trains_from_the_cli_and_predicts(
    tiny_backbone: str, dataset: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dftui.cli import build_parser, main
    from dftui.core.config import TrainConfig
    from dftui.core.options import options
    from dftui.core.predict import Predictor

    spec = BACKBONES[tiny_backbone]
    model = spec.build()
    assert model.fc.out_features == 2 and count_parameters(model) == spec.params_2class
    backbone_option = next(o for o in options(TrainConfig) if o.name == "backbone")
    assert tiny_backbone in backbone_option.all_choices()
    # The CLI's choices come from the registry: nothing else was told about this backbone.
    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    choices = next(a.choices for a in train._actions if "--backbone" in a.option_strings)
    assert tiny_backbone in choices

    out = tmp_path / "weights"
    code = main([
        "train", "--backbone", tiny_backbone, "--pretrained", "none", "--epochs", "1",
        "--batch-size", "40", "--workers", "0", "--train", str(dataset["train"]),
        "--val", str(dataset["val"]), "--out", str(out), "--plain",
    ])
    assert code == 0, capsys.readouterr()
    weights = out / f"{tiny_backbone}_deepfake.pth"
    predictor = Predictor(weights, device="cpu", precision="fp32")
    assert predictor.spec is spec and predictor.preprocessing.input_size == 32
    image = next((dataset["val"] / "fake").iterdir())
    assert predictor.predict_image(image).label in ("real", "fake")


def test_a_name_is_registered_once(tiny_backbone: str) -> None:
    with pytest.raises(ValueError, match="registered already"):
        register_backbone(**_fields(BACKBONES[tiny_backbone], title="again"))(_TinyNet)
    assert BACKBONES[tiny_backbone].title == "Tiny (test only)"
    marker = BACKBONES["mobilenet_v2"].key_marker
    with pytest.raises(ValueError, match="key marker 'features.0.0.weight' is mobilenet_v2's"):
        register_backbone(**_fields(BACKBONES[tiny_backbone], name="tiny_two", key_marker=marker))(
            _TinyNet)
    assert "tiny_two" not in BACKBONES


def _fields(spec: BackboneSpec, **changes: object) -> dict[str, object]:
    """The registration arguments that would make ``spec`` again, with ``changes``."""
    out = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "factory"}
    return {**out, **changes}


def test_imagenet_for_a_backbone_without_a_pretrained_source_is_refused(tiny_backbone: str) -> None:
    with pytest.raises(WeightsError, match="no ImageNet weights are known for tiny_test_net") as info:
        resolve_pretrained_file(BACKBONES[tiny_backbone], "imagenet", lambda e: None)
    assert info.value.fixes


def test_setup_says_a_backbone_without_imagenet_weights_needs_another_start(tiny_backbone: str) -> None:
    from dftui.ui.screens.setup import backbone_note

    level, text = backbone_note(tiny_backbone)
    assert level == "warning" and "no ImageNet weights" in text and "Pretrained" in text
