"""Classify images with saved weights: a label and per-class probabilities per image."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from dftui.core.backbones import CLASS_NAMES, get_backbone
from dftui.core.calibration import stored_temperature
from dftui.core.checkpoint import load_weights
from dftui.core.data import (
    IMAGE_EXTENSIONS,
    Preprocessing,
    build_transform,
    expand_inputs,
    load_tensor,
)
from dftui.core.devices import Precision, default_channels_last, resolve_device, resolve_precision
from dftui.core.errors import describe_error
from dftui.core.inference import EvalForward


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str | None  # "real" | "fake"; None when the image could not be read
    p_real: float
    p_fake: float
    latency_ms: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.label is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            # null, not NaN: NaN is not JSON, and a strict reader would refuse the whole output
            "p_real": round(self.p_real, 6) if math.isfinite(self.p_real) else None,
            "p_fake": round(self.p_fake, 6) if math.isfinite(self.p_fake) else None,
            "latency_ms": round(self.latency_ms, 2),
        }
        if self.error:
            out["error"] = self.error
        return out


def expand_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly, plus the images inside named folders (recursively, sorted)."""
    return expand_inputs(inputs, IMAGE_EXTENSIONS)


class Predictor:
    """Weights (+ metadata when present) -> label and probabilities.

    Reference-format weights (a bare state_dict) are taken with the reference scripts'
    preprocessing: 224×224 resize, ImageNet mean/std, real = 0, fake = 1."""

    def __init__(
        self,
        weights: str | Path,
        device: str = "auto",
        precision: str = "auto",
        threshold: float = 0.5,
        channels_last: bool | None = None,
        calibrated: bool = True,
    ) -> None:
        state, meta = load_weights(weights)
        self.weights = Path(weights)
        self.metadata = meta
        # The temperature fitted after training (core/calibration.py) divides the logits;
        # None: uncalibrated (none stored, not wanted, or unusable: ``calibration_warning``).
        self.temperature: float | None = None
        self.calibration_warning: str | None = None
        if calibrated:
            self.temperature, self.calibration_warning = stored_temperature(meta)
        self.spec = get_backbone(meta["backbone"])
        self.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        self.device = resolve_device(device)
        self.precision: Precision = resolve_precision(precision, self.device)
        self.threshold = threshold
        classes = meta.get("classes") or {n: i for i, n in enumerate(CLASS_NAMES)}
        self.fake_index = int(classes.get("fake", 1))
        self.real_index = int(classes.get("real", 0))
        model = self.spec.build()
        model.load_state_dict(state)
        # Channels-last runs oneDNN/cuDNN convolutions without layout reorders (faster on
        # CPU and CUDA); None picks it where it measured faster.
        self.channels_last = (
            default_channels_last(self.device) if channels_last is None else channels_last
        )
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        # Inference runs a copy with batch norm folded into the convolutions (on the CPU a
        # fused graph, see core/inference.py); ``model`` stays as built, for Grad-CAM.
        self.forward = EvalForward(self.model, self.device, self.precision, self.memory_format)
        self.transform = build_transform(self.preprocessing)

    @property
    def reference_format(self) -> bool:
        return bool(self.metadata.get("reference_format"))

    def _tensor(self, image: str | Path | Image.Image) -> torch.Tensor:
        if isinstance(image, Image.Image):
            return self.transform(image.convert("RGB"))
        # The same decoding as training (FaceDataset).
        return self.transform(load_tensor(image, self.preprocessing.input_size))

    @property
    def calibration_label(self) -> str:
        """How the probabilities are scaled, for a person: "calibrated (T=1.8)" or "uncalibrated"."""
        return f"calibrated (T={self.temperature:.3g})" if self.temperature else "uncalibrated"

    def softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities from logits, divided by the stored temperature. In float64, so
        that a calibration fitted later can recover the logits from p_fake
        (calibration.margins_from_p_fake) up to margins of ~36 instead of ~17."""
        z = logits.double()
        if self.temperature:
            z = z / self.temperature
        return torch.softmax(z, dim=1)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """p_fake for a normalised batch."""
        probs = self.softmax(self.forward(batch))
        return probs[:, self.fake_index].cpu()

    def _label(self, p_fake: float) -> str | None:
        # NaN compares false with every threshold: it would read as "real".
        if not math.isfinite(p_fake):
            return None
        return "fake" if p_fake >= self.threshold else "real"

    def predict_image(self, image: str | Path | Image.Image) -> Prediction:
        name = str(image) if not isinstance(image, Image.Image) else "<image>"
        t0 = time.perf_counter()
        try:
            x = self._tensor(image)
        except Exception as exc:  # noqa: BLE001 - unreadable image: report, don't stop
            return Prediction(name, None, float("nan"), float("nan"), 0.0, describe_error(exc))
        p_fake = float(self.probabilities(x.unsqueeze(0))[0])
        ms = (time.perf_counter() - t0) * 1000
        return _scored(name, p_fake, ms, self._label)

    def predict_paths(
        self, paths: Sequence[str | Path], batch_size: int = 32
    ) -> Iterable[Prediction]:
        """Yields predictions in order, batching for speed; unreadable files get an error."""
        self.forward.plan(len(paths))
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            t0 = time.perf_counter()
            tensors: list[torch.Tensor] = []
            errors: dict[int, str] = {}
            for i, path in enumerate(chunk):
                try:
                    tensors.append(self._tensor(path))
                except Exception as exc:  # noqa: BLE001
                    errors[i] = describe_error(exc)
            probs = self.probabilities(torch.stack(tensors)).tolist() if tensors else []
            ms = (time.perf_counter() - t0) * 1000 / max(1, len(chunk))
            it = iter(probs)
            for i, path in enumerate(chunk):
                if i in errors:
                    yield Prediction(str(path), None, float("nan"), float("nan"), 0.0, errors[i])
                else:
                    yield _scored(str(path), next(it), ms, self._label)


NO_SCORE = "the model gave no finite score for this image (NaN or infinity); no label given"


def _scored(name: str, p_fake: float, ms: float, label: Any) -> Prediction:
    """A prediction, unless the score is not a number: NaN compares false with every
    threshold, so it would silently read as "real"."""
    if not math.isfinite(p_fake):
        return Prediction(name, None, float("nan"), float("nan"), ms, NO_SCORE)
    return Prediction(name, label(p_fake), 1.0 - p_fake, p_fake, ms)
