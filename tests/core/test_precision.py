"""The default speed policy (bf16 autocast where the CPU has it, channels-last) keeps
accuracy: same data, same seed, compared with plain fp32. The full-size version of this
check is benchmarks/accuracy_check.py. Both the fp32 and the bf16 code paths run here
whatever the CPU and whatever DFTUI_PRECISION says (bf16 autocast works on any CPU, only
more slowly without native support; tiny inputs keep it cheap)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from dftui.core.config import TrainConfig
from dftui.core.devices import resolve_precision
from dftui.core.events import RunFailed, RunFinished, RunStarted
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
    # The bf16 path even where "auto" means fp32 (a CPU without native bf16, DFTUI_PRECISION).
    bf16 = default if default[1].precision == "bf16" else _run(
        dataset, standin_weights, out / "bf16", precision="bf16")
    return {"default": default, "fp32": fp32, "bf16": bf16}


def test_default_policy_is_resolved_and_recorded(runs: dict[str, Any]) -> None:
    final, started = runs["default"]
    expected = resolve_precision("auto", torch.device("cpu")).name
    assert started.precision == expected
    assert started.channels_last is True
    meta = json.loads(Path(final.metadata_path).read_text(encoding="utf-8"))
    assert meta["precision"] == expected and meta["channels_last"] is True
    _, started32 = runs["fp32"]
    assert (started32.precision, started32.channels_last) == ("fp32", False)


def test_bf16_training_ran_under_autocast(runs: dict[str, Any]) -> None:
    final, started = runs["bf16"]
    assert started.precision == "bf16"
    meta = json.loads(Path(final.metadata_path).read_text(encoding="utf-8"))
    assert meta["precision"] == "bf16"
    assert all(math.isfinite(e["train_loss"]) for e in meta["epochs"])


@pytest.mark.parametrize("policy", ["default", "bf16"])
def test_default_policy_keeps_validation_accuracy(runs: dict[str, Any], dataset: dict[str, Path],
                                                  policy: str) -> None:
    acc = runs[policy][0].best_val_accuracy
    acc_fp32 = runs["fp32"][0].best_val_accuracy
    n_val = len(expand_images([dataset["val"]]))
    # Both learned the separable task (from the stand-in, runs reach 95-100 % whatever the
    # precision or seed; 80 % leaves a margin of three images), and differ by at most two
    # of the 20 images (the full-size check in benchmarks/ holds them within 1 point).
    assert acc_fp32 >= 0.8 and acc >= 0.8, (acc_fp32, acc)
    assert abs(acc - acc_fp32) <= 2 / n_val + 1e-9, (acc_fp32, acc)


def test_environment_decides_what_auto_means_in_a_run(
    dataset: dict[str, Path], standin_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dftui.core.devices import cpu_has_native_bf16

    # The precision this CPU would not pick by itself, so the variable is what decides it.
    forced = "fp32" if cpu_has_native_bf16() else "bf16"
    monkeypatch.setenv("DFTUI_PRECISION", forced)
    config = TrainConfig(
        backbone="mobilenet_v2", train_dir=dataset["train"], val_dir=dataset["val"], epochs=1,
        batch_size=8, img_size=32, pretrained=str(standin_weights), workers=0, out_dir=tmp_path,
        runs_dir=tmp_path / "runs", device="cpu",
    )
    events: list[Any] = []
    assert isinstance(fit(config, events.append), RunFinished)
    assert next(e for e in events if isinstance(e, RunStarted)).precision == forced
    monkeypatch.setenv("DFTUI_PRECISION", "fp64")
    failed = fit(config.with_(weights_name="again.pth"))
    assert isinstance(failed, RunFailed)
    assert "DFTUI_PRECISION='fp64'" in failed.message and "\n" not in failed.message


def test_bf16_prediction_keeps_labels(runs: dict[str, Any], dataset: dict[str, Path]) -> None:
    weights = runs["fp32"][0].weights_path
    images = expand_images([dataset["val"]])
    p32 = list(Predictor(weights, device="cpu", precision="fp32").predict_paths(images, 8))
    pbf = list(Predictor(weights, device="cpu", precision="bf16").predict_paths(images, 8))
    assert [p.label for p in p32] == [p.label for p in pbf]
    assert max(abs(a.p_fake - b.p_fake) for a, b in zip(p32, pbf, strict=True)) < 0.05


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
