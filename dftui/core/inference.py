"""The evaluation-time forward pass shared by validation, evaluation and prediction.

A copy of the model with each BatchNorm folded into the convolution before it (the training
model keeps its BatchNorm layers; Grad-CAM and training use it as it is). On the CPU that
copy is also traced once with TorchScript so that oneDNN fuses convolution, activation and
add into single kernels: measured 2.0x (MobileNet-v2) and 1.35x (Xception) over the eager
folded copy with bf16, and 1.8x in fp32 (benchmarks/bench_inference.py).

TorchScript is deprecated upstream but works in the torch this project pins. The graph is
checked against the eager copy on its first batch; any failure or disagreement falls back
to the eager copy and says why once, so a future torch without it only costs speed.
``DFTUI_EVAL_GRAPH=eager`` turns the traced graph off."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from dftui.core.devices import Precision
from dftui.core.errors import first_line

ENV_SWITCH = "DFTUI_EVAL_GRAPH"  # "auto" (default) or "eager"
# Largest softmax-probability difference accepted between the traced graph and the eager
# copy on the check batch: bf16 rounding moves probabilities by ~1e-3; a wrong graph by far more.
AGREEMENT_TOLERANCE = 2e-2
# The graph costs its first three batches: tracing, a profiling run and two optimising runs
# (measured on 2 cores, batch 32: 3.3 s MobileNet-v2, 17 s Xception, against 0.5 s / 1.5 s
# eager). It then runs 2x faster, so it pays back from about 700 images for both backbones:
# it is used when the caller plans to score at least GRAPH_MIN_IMAGES (``plan()``), and only
# for batches, so ``dftui predict one.jpg`` and the Classify screen stay eager.
GRAPH_MIN_IMAGES = 1000
GRAPH_MIN_BATCH = 8
CHECK_IMAGES = 4  # images of the first batch on which the graph is checked against eager

Note = Callable[[str], None]

# torch.jit.trace warns that it is deprecated on every call (the module docstring says why
# it is used anyway). A filter for that message only: catch_warnings() is not thread-safe,
# and the dashboard traces in a worker thread.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning
)


def fold_batchnorm(model: torch.nn.Module, memory_format: torch.memory_format) -> torch.nn.Module:
    """An eval-mode copy of ``model`` with each BatchNorm folded into the convolution before
    it; ``model`` itself when the graph cannot be traced by torch.fx."""
    was_training = model.training
    model.eval()  # folding uses the running statistics, which only eval mode applies
    try:
        from torch.fx.experimental.optimization import fuse

        # Callers may be under inference_mode; the copy must hold normal tensors, or sync()
        # could not copy new weights into it outside inference mode.
        with torch.inference_mode(False), torch.no_grad():
            return fuse(model).to(memory_format=memory_format).eval()
    except Exception:  # noqa: BLE001 - an untraceable model still predicts, only slower
        return model
    finally:
        model.train(was_training)


def graph_wanted(device: torch.device) -> bool:
    """The traced graph is for oneDNN on the CPU; CUDA (cuDNN) and MPS run the eager copy."""
    setting = os.environ.get(ENV_SWITCH, "auto").strip().lower()
    return (
        device.type == "cpu"
        and setting not in ("eager", "0", "off", "no")
        and hasattr(torch.jit, "trace")
        and hasattr(torch.jit, "enable_onednn_fusion")
    )


class EvalForward:
    """``forward(x) -> float logits`` for an eval-mode model, under ``torch.inference_mode()``.

    ``sync()`` refreshes the folded copy from the model's current weights (after a training
    epoch); the traced graph shares the copy's parameters, so it is traced only once, on the
    first batch of at least ``GRAPH_MIN_BATCH`` images once ``plan()`` has announced at least
    ``GRAPH_MIN_IMAGES``."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        precision: Precision,
        memory_format: torch.memory_format,
        note: Note | None = None,
        fold_small_workloads: bool = True,
    ) -> None:
        self.model = model
        self.device = device
        self.precision = precision
        self.memory_format = memory_format
        self.note = note or (lambda message: None)
        # True: even a few images run the folded copy (the Predictor: 1.1-1.7x faster per
        # image, folded once). False: below GRAPH_MIN_IMAGES run the model itself (training
        # validation: refolding after every epoch costs 0.1 s MobileNet-v2, 1 s Xception,
        # more than a small validation set gains from it).
        self.fold_small_workloads = fold_small_workloads
        self._folded: torch.nn.Module | None = None  # made on first use
        self._graph: Any = None
        # None: not tried yet; False: eager only (not wanted, or it failed its check).
        self._graph_ok: bool | None = None if graph_wanted(device) else False
        self.graph_seconds = 0.0  # one-off cost of tracing and checking, for the benchmarks
        self.planned = 0  # images the caller is about to score (plan())
        self._lock = threading.Lock()  # the dashboard may predict from two workers at once

    @property
    def mode(self) -> str:
        """"graph" once the traced graph runs, else "eager" (folded copy)."""
        return "graph" if self._graph_ok else "eager"

    def plan(self, images: int) -> None:
        """Say how many images are about to be scored (a validation set times the epochs
        left, a folder times its passes): the graph is only worth it for many."""
        self.planned = max(self.planned, int(images))

    @property
    def folded(self) -> torch.nn.Module:
        """The batch-norm-folded copy (the model itself when it cannot be folded)."""
        if self._folded is None:
            self._folded = fold_batchnorm(self.model, self.memory_format)
        return self._folded

    def sync(self) -> None:
        """Copy the model's current weights, folded, into the copy the graph reads."""
        if self._folded is None or self._folded is self.model:
            return  # not made yet (it will be folded from the current weights) or no copy
        fresh = fold_batchnorm(self.model, self.memory_format)
        with torch.inference_mode(False), torch.no_grad():
            self._folded.load_state_dict(fresh.state_dict())

    def _autocast(self) -> Any:
        dtype = self.precision.autocast_dtype
        if dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        # No weight-cast cache: the cache would hold bf16 copies of weights that sync() changes.
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=False)

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        small = self.planned < GRAPH_MIN_IMAGES
        module = self.folded if self.fold_small_workloads or not small else self.model
        with self._autocast():
            return module(x).float()

    def _try_graph(self, x: torch.Tensor) -> torch.Tensor:
        """Trace, check against the eager copy on ``x``, and return the logits for ``x``."""
        t0 = time.perf_counter()
        try:
            torch.jit.enable_onednn_fusion(True)
            with self._autocast():
                # Traced on one image (the graph does not depend on the batch size; tracing
                # 32 took 1.6 s of the 3.6 s first batch), then run twice on the batch: the
                # profiling executor optimises for the batch's shape on the second call.
                graph = torch.jit.trace(self.folded, x[:1], check_trace=False)
                graph(x)
                got = graph(x).float()
            # The optimised graph's answer for this batch is the one returned, once it agrees
            # with the eager copy on a few images (eager results do not depend on the batch).
            k = min(len(x), CHECK_IMAGES)
            want = self._eager(x[:k])
            gap = float((torch.softmax(got[:k], 1) - torch.softmax(want, 1)).abs().max())
            if not gap <= AGREEMENT_TOLERANCE:
                self._graph_ok = False
                self.note(
                    f"the fused inference graph disagreed with the model (probabilities up to "
                    f"{gap:.3f} apart); evaluating with the plain model instead (slower)"
                )
                return self._eager(x)
        except Exception as exc:  # noqa: BLE001 - any tracing failure: the eager copy works
            self._graph_ok = False
            self.note(f"the fused inference graph is unavailable ({first_line(exc)}); "
                      "evaluating with the plain model instead (slower)")
            return self._eager(x)
        self._graph, self._graph_ok = graph, True
        self.graph_seconds = time.perf_counter() - t0
        self.note(f"evaluation runs a fused oneDNN graph (traced and checked in "
                  f"{self.graph_seconds:.1f} s)")
        return got

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, memory_format=self.memory_format)
        if (
            self._graph_ok is None
            and x.shape[0] >= GRAPH_MIN_BATCH
            and self.planned >= GRAPH_MIN_IMAGES
        ):
            with self._lock:
                if self._graph_ok is None:
                    return self._try_graph(x)
        if self._graph_ok:
            try:
                with self._autocast():
                    return self._graph(x).float()
            except Exception as exc:  # noqa: BLE001 - e.g. a oneDNN primitive a new shape lacks
                # The graph re-specialises per input shape, so a shape seen for the first
                # time can still fail; inference has no side effects, so the eager copy redoes it.
                self._graph_ok = False
                self.note(f"the fused inference graph failed ({first_line(exc)}); "
                          "evaluating with the plain model from now on (slower)")
        return self._eager(x)
