from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from dftui.core.backbones import WeightsError
from dftui.core.checkpoint import build_metadata, load_weights, save_weights
from dftui.core.data import Preprocessing
from dftui.core.predict import Predictor, expand_images


def reference_weights(path: Path, fake_bias: float) -> Path:
    """A .pth made the way the reference scripts made it: torchvision mobilenet_v2,
    classifier[1] = Linear(in_features, 2), torch.save(model.state_dict())."""
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None)
    model.classifier[1] = torch.nn.Linear(model.classifier[1].in_features, 2)
    with torch.no_grad():  # a head that says "fake" whatever the image
        model.classifier[1].weight.zero_()
        model.classifier[1].bias.copy_(torch.tensor([0.0, fake_bias]))
    torch.save(model.state_dict(), path)
    return path


def test_reference_format_weights_classify(tmp_path: Path, dataset: dict[str, Path]) -> None:
    weights = reference_weights(tmp_path / "mobilenet_v2_deepfake.pth", fake_bias=3.0)
    predictor = Predictor(weights, device="cpu")
    assert predictor.reference_format
    assert predictor.preprocessing.input_size == 224  # the reference scripts' resize
    assert predictor.preprocessing.mean == (0.485, 0.456, 0.406)
    img = next((dataset["val"] / "real").iterdir())
    pred = predictor.predict_image(img)
    assert pred.label == "fake"  # index 1 = fake, as in the reference
    assert pred.p_fake == pytest.approx(torch.softmax(torch.tensor([0.0, 3.0]), 0)[1].item(), abs=1e-4)
    assert pred.p_real + pred.p_fake == pytest.approx(1.0)
    weights2 = reference_weights(tmp_path / "other.pth", fake_bias=-3.0)
    assert Predictor(weights2, device="cpu").predict_image(Image.open(img)).label == "real"


def test_metadata_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    from dftui.core.backbones import BACKBONES

    model = BACKBONES["mobilenet_v2"].build()
    pre = Preprocessing(96, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bicubic")
    meta = build_metadata("mobilenet_v2", pre, best_epoch=4, epochs=[{"epoch": 1}])
    written = save_weights(model.state_dict(), tmp_path / "w.pth", meta)
    state, loaded = load_weights(tmp_path / "w.pth")
    assert loaded == written and {k: loaded[k] for k in meta} == meta
    assert Preprocessing.from_dict(loaded["preprocessing"]) == pre
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)
    assert Predictor(tmp_path / "w.pth", device="cpu").preprocessing == pre


def test_imagenet_head_is_not_a_detector(tmp_path: Path) -> None:
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), tmp_path / "in.pth")
    with pytest.raises(WeightsError, match="not 2-class"):
        Predictor(tmp_path / "in.pth", device="cpu")


def test_unreadable_images_are_reported_not_fatal(tmp_path: Path, dataset: dict[str, Path]) -> None:
    weights = reference_weights(tmp_path / "w.pth", fake_bias=1.0)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    good = sorted((dataset["val"] / "fake").iterdir())[:2]
    preds = list(Predictor(weights, device="cpu").predict_paths([good[0], bad, good[1]], batch_size=2))
    assert [p.ok for p in preds] == [True, False, True]
    assert "not an image" in preds[1].error


def test_expand_images(dataset: dict[str, Path]) -> None:
    paths = expand_images([dataset["val"]])
    assert len(paths) == 20 and paths == sorted(paths)
