"""Grad-CAM: the heat map's shape and range, that it depends on the image, the layers used."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dftui.core.backbones import BACKBONES
from dftui.core.config import TrainConfig
from dftui.core.data import scan_folder
from dftui.core.gradcam import GradCamError, cam_map, colorize, grad_cam, overlay, upsample
from dftui.core.predict import Predictor
from dftui.core.train import fit


@pytest.fixture(scope="module")
def weights_96(tmp_path_factory: pytest.TempPathFactory, dataset: dict[str, Path],
               standin_weights: Path) -> Path:
    """Tiny trained weights, with metadata asking for 96 px input so the last block has a
    3×3 map (at 32 px it is 1×1 and any heat map is flat)."""
    out = tmp_path_factory.mktemp("gc")
    cfg = TrainConfig(backbone="mobilenet_v2", train_dir=dataset["train"], val_dir=dataset["val"],
                      pretrained=str(standin_weights), img_size=32, epochs=1, batch_size=8,
                      workers=0, out_dir=out / "weights", runs_dir=out / "runs")
    final = fit(cfg, lambda e: None, threading.Event())
    assert final.weights_path, final
    src = Path(final.weights_path)
    dst = out / "mnv2-96.pth"
    shutil.copy(src, dst)
    meta = json.loads(src.with_suffix(".json").read_text())
    meta["preprocessing"]["input_size"] = 96
    dst.with_suffix(".json").write_text(json.dumps(meta))
    return dst


def test_cam_layers_are_the_last_conv_blocks() -> None:
    mnv2 = BACKBONES["mobilenet_v2"].build()
    assert BACKBONES["mobilenet_v2"].cam_layer == f"features.{len(mnv2.features) - 1}"
    last = mnv2.get_submodule("features.18")
    assert isinstance(last[0], torch.nn.Conv2d) and last[0].out_channels == 1280
    xc = BACKBONES["xception"].build()
    names = [n for n, _ in xc.named_children()]
    # act4 follows conv4/bn4, the last convolution before global pooling and the head.
    assert names[names.index("act4") - 2 : names.index("act4") + 2] == ["conv4", "bn4", "act4", "global_pool"]


def test_heat_map_shape_range_and_overlay(weights_96: Path, dataset: dict[str, Path]) -> None:
    predictor = Predictor(weights_96, precision="fp32")  # Grad-CAM runs in float32
    path = scan_folder(dataset["val"]).samples[-1][0]
    res = grad_cam(predictor, path)
    img = Image.open(path)
    assert res.heatmap.shape == (img.height, img.width)
    assert res.heatmap.dtype == np.float32
    assert res.heatmap.min() >= 0.0 and res.heatmap.max() <= 1.0
    assert res.heatmap.max() == pytest.approx(1.0) or res.heatmap.max() == 0.0
    assert res.overlay.size == img.size and res.overlay.mode == "RGB"
    assert res.target in (0, 1) and res.layer == "features.18"
    # The explained class is the predicted one, and p_fake agrees with the predictor.
    pred = predictor.predict_image(path)
    assert res.p_fake == pytest.approx(pred.p_fake, abs=1e-4)
    assert res.target_name == pred.label


def test_heat_map_depends_on_the_input(weights_96: Path, dataset: dict[str, Path]) -> None:
    predictor = Predictor(weights_96)
    samples = scan_folder(dataset["val"]).samples
    maps = [grad_cam(predictor, p).heatmap for p, _ in samples[:3] + samples[-3:]]
    assert any(m.std() > 0.01 for m in maps), "every heat map is flat"
    assert any(not np.allclose(maps[0], m, atol=1e-3) for m in maps[1:])
    # Explaining the other class gives another map.
    a = grad_cam(predictor, samples[0][0], target=0).heatmap
    b = grad_cam(predictor, samples[0][0], target=1).heatmap
    assert not np.allclose(a, b, atol=1e-3)


def test_cam_map_on_xception_and_bad_layer() -> None:
    torch.manual_seed(0)
    model = BACKBONES["xception"].build()
    assert model.training
    cam, logits = cam_map(model, "act4", torch.randn(1, 3, 96, 96))
    assert cam.ndim == 2 and cam.shape[0] >= 2 and (cam >= 0).all()
    assert logits.shape == (1, 2)
    assert model.training  # computed in eval mode, the caller's mode restored
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind
    with pytest.raises(GradCamError, match="no layer"):
        cam_map(model, "nope", torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match="one image"):
        cam_map(model, "act4", torch.randn(2, 3, 96, 96))


def test_upsample_colorize_overlay() -> None:
    heat = upsample(np.array([[0.0, 2.0], [1.0, 4.0]]), (40, 30))
    assert heat.shape == (30, 40) and heat.max() == pytest.approx(1.0) and heat.min() >= 0
    assert heat[-1, -1] > heat[0, 0]
    assert (upsample(np.zeros((3, 3)), (8, 8)) == 0).all()  # no evidence stays zero
    cold, hot = np.asarray(colorize(np.array([[0.0, 1.0]])))[0]
    assert cold[2] > cold[0] and hot[0] > hot[2]  # blue for 0, red for 1
    img = Image.new("RGB", (40, 30), (128, 128, 128))
    assert overlay(img, heat).size == (40, 30)
