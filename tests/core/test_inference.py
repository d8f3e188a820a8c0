"""The evaluation-time forward pass: folded copy, fused CPU graph, its checks and fallbacks."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from dftui.core import inference
from dftui.core.backbones import get_backbone
from dftui.core.devices import Precision
from dftui.core.events import EpochEnd, LogMessage
from dftui.core.inference import GRAPH_MIN_BATCH, GRAPH_MIN_IMAGES, EvalForward, fold_batchnorm
from dftui.core.synthetic import SyntheticSpec, make_dataset
from dftui.core.train import fit
from tests.conftest import tiny_config

# 64 px: at 32 px MobileNet-v2's last feature map is 1x1, where oneDNN's fp32 graph fails
# (test_graph_failure_on_a_new_shape_falls_back keeps that case).
IMG = 64

CPU = torch.device("cpu")
FP32 = Precision("fp32", scaler=False)
BF16 = Precision("bf16", scaler=False)
CL = torch.channels_last


@pytest.fixture
def model() -> torch.nn.Module:
    """A MobileNet-v2 whose batch-norm statistics are not the defaults (folding must use them)."""
    torch.manual_seed(0)
    net = get_backbone("mobilenet_v2").build()
    net.train()
    with torch.no_grad():
        net(torch.rand(8, 3, IMG, IMG) * 2 - 1)
    return net.to(memory_format=CL).eval()


def batch(n: int = GRAPH_MIN_BATCH, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, IMG, IMG, generator=gen) * 2 - 1).contiguous(memory_format=CL)


def planned(forward: EvalForward) -> EvalForward:
    forward.plan(GRAPH_MIN_IMAGES)  # enough images for the graph to pay
    return forward


def reference(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x).float()


@pytest.mark.parametrize("precision", [FP32, BF16], ids=["fp32", "bf16"])
def test_graph_matches_the_model(model: torch.nn.Module, precision: Precision) -> None:
    notes: list[str] = []
    forward = planned(EvalForward(model, CPU, precision, CL, note=notes.append))
    x = batch()
    with torch.inference_mode():
        got = forward(x)
    assert forward.mode == "graph", notes
    assert any("fused oneDNN graph" in n for n in notes)
    tol = 1e-4 if precision is FP32 else 5e-2
    assert torch.allclose(got, reference(model, x), atol=tol, rtol=tol)
    with torch.inference_mode():  # another batch size reuses the graph
        small = forward(batch(3, seed=2))
    assert torch.allclose(small, reference(model, batch(3, seed=2)), atol=tol, rtol=tol)


def test_sync_follows_the_training_model(model: torch.nn.Module) -> None:
    forward = planned(EvalForward(model, CPU, FP32, CL))
    x = batch()
    with torch.inference_mode():
        before = forward(x)
    assert forward.mode == "graph"
    # A training step changes weights and batch-norm statistics.
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.nn.functional.cross_entropy(model(batch(8, seed=3)), torch.arange(8) % 2).backward()
    opt.step()
    model.eval()
    forward.sync()
    with torch.inference_mode():
        after = forward(x)
    want = reference(model, x)
    assert not torch.allclose(before, want, atol=1e-3)  # the step did change the outputs
    assert torch.allclose(after, want, atol=1e-4, rtol=1e-4)
    assert model.training is False


def test_graph_failure_on_a_new_shape_falls_back(model: torch.nn.Module) -> None:
    notes: list[str] = []
    forward = planned(EvalForward(model, CPU, FP32, CL, note=notes.append))
    with torch.inference_mode():
        forward(batch())
        assert forward.mode == "graph"

        def broken(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("The following operation failed in the TorchScript interpreter.\n"
                               "RuntimeError: could not create a primitive")

        forward._graph = broken
        x = batch(5, seed=4)
        out = forward(x)
    assert forward.mode == "eager"
    assert notes[-1] == ("the fused inference graph failed (RuntimeError: could not create a "
                         "primitive); evaluating with the plain model from now on (slower)")
    assert torch.allclose(out, reference(model, x), atol=1e-4)


def test_real_onednn_failure_at_1x1_maps_is_caught() -> None:
    """At 32 px the fp32 graph fails inside oneDNN on its optimised run (torch 2.14): the
    check before first use finds it, and the results come from the eager copy."""
    torch.manual_seed(0)
    net = get_backbone("mobilenet_v2").build().to(memory_format=CL).eval()
    notes: list[str] = []
    forward = planned(EvalForward(net, CPU, FP32, CL, note=notes.append))
    x = (torch.rand(8, 3, 32, 32) * 2 - 1).contiguous(memory_format=CL)
    with torch.inference_mode():
        out = forward(x)
        out2 = forward(x)
    assert torch.allclose(out, reference(net, x), atol=1e-4)
    assert torch.equal(out, out2)
    if forward.mode == "eager":  # a later torch may have fixed it; then the graph is used
        assert len(notes) == 1 and "unavailable" in notes[0]


def test_small_workloads_stay_eager(model: torch.nn.Module) -> None:
    forward = EvalForward(model, CPU, FP32, CL)
    forward.plan(GRAPH_MIN_IMAGES - 1)
    with torch.inference_mode():
        forward(batch())
    assert forward.mode == "eager"  # the one-off cost would not pay back
    forward.plan(GRAPH_MIN_IMAGES)
    with torch.inference_mode():
        forward(batch())
    assert forward.mode == "graph"


def test_small_validation_runs_the_model_itself(model: torch.nn.Module) -> None:
    """Training validation on a small set: no folded copy to refold after every epoch."""
    forward = EvalForward(model, CPU, FP32, CL, fold_small_workloads=False)
    forward.plan(GRAPH_MIN_IMAGES - 1)
    x = batch()
    with torch.inference_mode():
        out = forward(x)
    forward.sync()
    assert forward._folded is None and forward.mode == "eager"
    assert torch.equal(out, reference(model, x))
    forward.plan(GRAPH_MIN_IMAGES)  # a big set: folded and fused
    with torch.inference_mode():
        forward(x)
    assert forward._folded is not None and forward.mode == "graph"


def test_single_images_stay_eager(model: torch.nn.Module) -> None:
    forward = planned(EvalForward(model, CPU, FP32, CL))
    with torch.inference_mode():
        out = forward(batch(1))
    assert forward.mode == "eager" and forward.graph_seconds == 0.0
    assert torch.allclose(out, reference(model, batch(1)), atol=1e-4)


def test_switch_turns_the_graph_off(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFTUI_EVAL_GRAPH", "eager")
    forward = planned(EvalForward(model, CPU, FP32, CL))
    with torch.inference_mode():
        forward(batch())
    assert forward.mode == "eager"


def test_tracing_failure_falls_back_with_a_note(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer exploded\nsecond line")

    monkeypatch.setattr(torch.jit, "trace", broken)
    notes: list[str] = []
    forward = planned(EvalForward(model, CPU, FP32, CL, note=notes.append))
    x = batch()
    with torch.inference_mode():
        out = forward(x)
    assert forward.mode == "eager"
    assert notes == [
        "the fused inference graph is unavailable (tracer exploded); evaluating with the plain "
        "model instead (slower)"
    ]
    assert torch.allclose(out, reference(model, x), atol=1e-4)


def test_disagreeing_graph_is_not_used(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "AGREEMENT_TOLERANCE", -1.0)  # any gap counts as disagreement
    notes: list[str] = []
    forward = planned(EvalForward(model, CPU, FP32, CL, note=notes.append))
    with torch.inference_mode():
        forward(batch())
        forward(batch())
    assert forward.mode == "eager"
    assert len(notes) == 1 and "disagreed" in notes[0]


def test_fold_keeps_the_model_in_its_mode(model: torch.nn.Module) -> None:
    model.train()
    folded = fold_batchnorm(model, CL)
    assert model.training  # the caller's training state is restored
    assert folded is not model and not folded.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


def test_concurrent_first_calls_trace_once(model: torch.nn.Module) -> None:
    notes: list[str] = []
    forward = planned(EvalForward(model, CPU, FP32, CL, note=notes.append))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with torch.inference_mode():
                forward(batch())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and forward.mode == "graph"
    assert sum("fused oneDNN graph" in n for n in notes) == 1


def test_validation_is_the_same_with_and_without_the_graph(
    standin_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path / "train", SyntheticSpec(n_per_class=8, size=IMG, seed=1))
    make_dataset(tmp_path / "val", SyntheticSpec(n_per_class=8, size=IMG, seed=2))
    dataset = {"train": tmp_path / "train", "val": tmp_path / "val"}

    monkeypatch.setattr(inference, "GRAPH_MIN_IMAGES", 32)  # 16 validation images x 2 epochs

    def run(mode: str) -> tuple[list[EpochEnd], list[str]]:
        monkeypatch.setenv("DFTUI_EVAL_GRAPH", mode)
        events: list[Any] = []
        cfg = tiny_config(dataset, standin_weights, tmp_path / mode, img_size=IMG, epochs=2,
                          precision="fp32")
        fit(cfg, events.append, threading.Event())
        logs = [e.text for e in events if isinstance(e, LogMessage)]
        return [e for e in events if isinstance(e, EpochEnd)], logs

    graph, graph_logs = run("auto")
    eager, eager_logs = run("eager")
    assert any("fused oneDNN graph" in m for m in graph_logs)
    assert not any("fused oneDNN graph" in m for m in eager_logs)
    assert len(graph) == len(eager) == 2  # epoch 2: the graph reads the refolded weights
    for g, e in zip(graph, eager, strict=True):
        assert g.train_loss == e.train_loss  # validation does not disturb training
        assert g.val_loss == pytest.approx(e.val_loss, rel=1e-4, abs=1e-5)
        assert g.val_accuracy == e.val_accuracy


def test_predictor_plans_its_workload(
    dataset: dict[str, Path], standin_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One image at a time stays eager; a folder big enough takes the graph, same labels."""
    from dftui.core.evaluate import evaluate_folder
    from dftui.core.predict import Predictor, expand_images
    from tests.conftest import train_tiny

    weights = train_tiny(dataset, standin_weights, tmp_path)
    monkeypatch.setattr(inference, "GRAPH_MIN_IMAGES", 20)
    images = expand_images([dataset["val"]])[:19]
    single = Predictor(weights, device="cpu", precision="bf16")
    one_by_one = [single.predict_image(p) for p in images]
    listed = list(single.predict_paths(images, batch_size=8))  # 19 < 20 planned
    assert single.forward.mode == "eager"
    assert [p.p_fake for p in listed] == pytest.approx([p.p_fake for p in one_by_one], abs=1e-4)

    folder = Predictor(weights, device="cpu", precision="bf16")
    result = evaluate_folder(folder, dataset["val"], batch_size=8)  # 20 images
    assert folder.forward.mode == "graph"
    by_path = {p.path: p for p in one_by_one}
    for im in result.images:
        if im.path in by_path:  # bf16 rounding differs between the graph and eager
            assert abs(im.p_fake - by_path[im.path].p_fake) < 2e-2
