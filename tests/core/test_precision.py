"""The default speed policy (bf16 autocast where the CPU has it, channels-last) keeps
accuracy: same data, same seed, compared with plain fp32. The full-size version of this
check is benchmarks/accuracy_check.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from dftui.core.config import TrainConfig
from dftui.core.devices import resolve_precision
from dftui.core.events import RunFinished, RunStarted
from dftui.core.predict import Predictor, expand_images
from dftui.core.train import fit


def _run(dataset: dict[str, Path], weights: Path, out: Path, **policy: Any) -> tuple[RunFinished, RunStarted]:
    config = TrainConfig(
        backbone="mobilenet_v2", train_dir=dataset["train"], val_dir=dataset["val"], epochs=2,
        batch_size=8, img_size=32, pretrained=str(weights), workers=0, seed=3, out_dir=out,
        runs_dir=out / "runs", device="cpu", **policy,
    )
    events: list[Any] = []
    final = fit(config, events.append)
    assert isinstance(final, RunFinished), final
    started = next(e for e in events if isinstance(e, RunStarted))
    return final, started


@pytest.fixture(scope="module")
def runs(dataset: dict[str, Path], standin_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("precision")
    default = _run(dataset, standin_weights, out / "default")
    fp32 = _run(dataset, standin_weights, out / "fp32", precision="fp32", channels_last=False)
    return {"default": default, "fp32": fp32}


def test_default_policy_is_resolved_and_recorded(runs: dict[str, Any]) -> None:
    final, started = runs["default"]
    expected = resolve_precision("auto", torch.device("cpu")).name
    assert started.precision == expected
    assert started.channels_last is True
    meta = json.loads(Path(final.metadata_path).read_text(encoding="utf-8"))
    assert meta["precision"] == expected and meta["channels_last"] is True
    _, started32 = runs["fp32"]
    assert (started32.precision, started32.channels_last) == ("fp32", False)


def test_default_policy_keeps_validation_accuracy(runs: dict[str, Any], dataset: dict[str, Path]) -> None:
    acc_default = runs["default"][0].best_val_accuracy
    acc_fp32 = runs["fp32"][0].best_val_accuracy
    n_val = len(expand_images([dataset["val"]]))
    # Both learned the separable task, and differ by at most one of the 20 images (the
    # full-size check in benchmarks/ holds them within 1 point).
    assert acc_fp32 >= 0.8 and acc_default >= 0.8, (acc_fp32, acc_default)
    assert abs(acc_default - acc_fp32) <= 1 / n_val + 1e-9, (acc_fp32, acc_default)


def test_bf16_prediction_keeps_labels(runs: dict[str, Any], dataset: dict[str, Path]) -> None:
    weights = runs["fp32"][0].weights_path
    images = expand_images([dataset["val"]])
    p32 = list(Predictor(weights, device="cpu", precision="fp32").predict_paths(images, 8))
    pbf = list(Predictor(weights, device="cpu", precision="bf16").predict_paths(images, 8))
    assert [p.label for p in p32] == [p.label for p in pbf]
    assert max(abs(a.p_fake - b.p_fake) for a, b in zip(p32, pbf)) < 0.05


def test_predictor_layout_does_not_change_results(runs: dict[str, Any], dataset: dict[str, Path]) -> None:
    weights = runs["fp32"][0].weights_path
    image = expand_images([dataset["val"]])[0]
    cl = Predictor(weights, device="cpu", precision="fp32", channels_last=True)
    contiguous = Predictor(weights, device="cpu", precision="fp32", channels_last=False)
    assert cl.channels_last and not contiguous.channels_last
    assert cl.predict_image(image).p_fake == pytest.approx(contiguous.predict_image(image).p_fake, abs=1e-4)


def test_folded_inference_model_matches_the_model(runs: dict[str, Any], dataset: dict[str, Path]) -> None:
    predictor = Predictor(runs["fp32"][0].weights_path, device="cpu", precision="fp32")
    assert predictor.forward.folded is not predictor.model  # batch norm folded in a copy
    x = torch.stack([predictor.transform(Image.open(p).convert("RGB")) for p in expand_images([dataset["val"]])])
    with torch.inference_mode():
        folded = predictor.forward.folded(x.contiguous(memory_format=torch.channels_last))
        plain = predictor.model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(folded, plain, atol=1e-3)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor.model.modules())  # Grad-CAM's
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor.forward.folded.modules())


def test_predictor_default_is_auto() -> None:
    import inspect

    assert inspect.signature(Predictor).parameters["precision"].default == "auto"
