"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

The backbone's last convolutional block (``BackboneSpec.cam_layer``: ``features.18`` for
MobileNet-v2, ``act4`` for Xception) is hooked; its activations are weighted by the spatially
averaged gradient of the chosen class's logit, summed over channels, rectified, scaled into
[0, 1] and upsampled to the image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dftui.core.backbones import CLASS_NAMES
from dftui.core.data import load_rgb

if TYPE_CHECKING:
    import torch
    from torch import nn

    from dftui.core.predict import Predictor

# A "jet"-like ramp: blue (no evidence) -> cyan -> yellow -> red (strongest evidence).
_RAMP_AT = np.array([0.0, 0.35, 0.65, 1.0])
_RAMP_RGB = np.array([[0, 0, 160], [0, 220, 255], [255, 230, 0], [230, 0, 0]], dtype=np.float32)


class GradCamError(RuntimeError):
    """The model has no layer of that name, or produced no gradient there."""


@dataclass(frozen=True)
class CamResult:
    heatmap: np.ndarray  # H×W float32 in [0, 1], the image's size
    overlay: Image.Image  # the image with the heat map blended over it
    image: Image.Image  # the image explained (RGB)
    target: int  # the class explained: 0 real, 1 fake
    p_fake: float
    layer: str

    @property
    def target_name(self) -> str:
        return CLASS_NAMES[self.target]


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise GradCamError(f"the model has no layer {name!r} to compute Grad-CAM on") from None


def cam_map(
    model: nn.Module, layer: str, x: torch.Tensor, target: int | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """Grad-CAM at the layer's own resolution for a single-image batch ``x``, and the logits.
    ``target`` None explains the predicted class. The map is >= 0, not yet scaled."""
    import torch

    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image as a 1×C×H×W batch, got shape {tuple(x.shape)}")
    module = _module(model, layer)
    store: dict[str, torch.Tensor] = {}

    def on_forward(_m: Any, _inputs: Any, output: torch.Tensor) -> None:
        store["act"] = output
        output.register_hook(lambda grad: store.__setitem__("grad", grad))

    handle = module.register_forward_hook(on_forward)
    was_training = model.training
    model.eval()
    try:
        # Gradients are needed even when called from inference code.
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            logits = model(x)
            cls = int(logits[0].argmax()) if target is None else int(target)
            model.zero_grad(set_to_none=True)
            logits[0, cls].backward()
    finally:
        handle.remove()
        model.train(was_training)
    if "act" not in store or "grad" not in store:
        raise GradCamError(f"layer {layer!r} produced no activations or gradients")
    act = store["act"].detach()[0].float()  # C×h×w
    grad = store["grad"].detach()[0].float()
    weights = grad.mean(dim=(1, 2))  # one weight per channel
    cam = torch.relu((weights[:, None, None] * act).sum(dim=0))
    model.zero_grad(set_to_none=True)
    return cam.cpu().numpy(), logits.detach()


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a small map to (width, height), scaled into [0, 1] by its maximum
    (an all-zero map, no evidence anywhere, stays zero)."""
    import torch
    import torch.nn.functional as F

    w, h = size
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    up = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
    up = np.clip(up, 0.0, None)
    peak = float(up.max())
    return (up / peak).astype(np.float32) if peak > 0 else np.zeros((h, w), np.float32)


def colorize(heatmap: np.ndarray) -> Image.Image:
    """A heat map in [0, 1] as an RGB image on a blue-to-red ramp."""
    h = np.clip(heatmap, 0.0, 1.0)
    rgb = np.stack([np.interp(h, _RAMP_AT, _RAMP_RGB[:, c]) for c in range(3)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Blend the coloured heat map over the image; cold regions keep more of the image."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    color = np.asarray(colorize(heatmap), dtype=np.float32)
    a = (alpha * (0.35 + 0.65 * np.clip(heatmap, 0, 1)))[..., None]
    return Image.fromarray((base * (1 - a) + color * a).clip(0, 255).astype(np.uint8), "RGB")


def grad_cam(
    predictor: Predictor,
    image: str | Path | Image.Image,
    target: int | None = None,
    alpha: float = 0.5,
) -> CamResult:
    """Grad-CAM of ``predictor``'s model on one image, for the predicted class unless
    ``target`` (0 real, 1 fake) is given. Runs in float32 on the predictor's device."""

    img = image.convert("RGB") if isinstance(image, Image.Image) else load_rgb(image)
    x = predictor.transform(img).unsqueeze(0).to(predictor.device)
    layer = predictor.spec.cam_layer
    cam, logits = cam_map(predictor.model, layer, x, target)
    probs = predictor.softmax(logits.float())[0]  # calibrated, as the predictor's own scores
    p_fake = float(probs[predictor.fake_index])
    cls = int(logits[0].argmax()) if target is None else int(target)
    # Model output index -> label (they only differ for weights with unusual class order).
    label = 1 if cls == predictor.fake_index else 0
    heat = upsample(cam, img.size)
    return CamResult(heat, overlay(img, heat, alpha), img, label, p_fake, layer)
