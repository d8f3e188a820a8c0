"""The evaluation forward pass alone, side by side: the plain model, the batch-norm-folded
copy, and the fused graph dftui runs on the CPU (dftui/core/inference.py).

    .venv/bin/python benchmarks/bench_inference.py
    .venv/bin/python benchmarks/bench_inference.py --backbones mobilenet_v2 --batch 32 --rounds 3

Random input at each backbone's input size, model weights random with batch-norm statistics
from a few training-mode batches, channels-last, under torch.inference_mode(). For each
backbone and precision (fp32, and bf16 autocast where the CPU has native bf16) it prints
images/s of each variant (best of --rounds, variants alternating), the speed-up over the
plain model, the first batch's time with the graph (tracing and checking it: four forward
passes, once per run), and the largest difference in softmax probability between the graph
and the plain model."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from dftui.core.backbones import get_backbone
from dftui.core.devices import Precision, cpu_has_native_bf16
from dftui.core.inference import EvalForward, fold_batchnorm


def rate(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, iters: int) -> float:
    with torch.inference_mode():
        fn(x)  # warm-up (and, for the graph, its optimised run)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn(x)
        return iters * x.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "xception"],
                    choices=["mobilenet_v2", "xception"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=4, help="timed batches per measurement")
    ap.add_argument("--rounds", type=int, default=2, help="alternate the variants this many times")
    args = ap.parse_args()

    precisions = [Precision("fp32", scaler=False)]
    if cpu_has_native_bf16():
        precisions.append(Precision("bf16", scaler=False))
    cpu = torch.device("cpu")
    cl = torch.channels_last
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"best of {args.rounds} round(s) x {args.iters} batches")
    print(f"{'backbone':13s} {'precision':9s} {'plain':>8s} {'folded':>8s} {'graph':>8s} "
          f"{'graph/plain':>11s} {'1st batch':>9s} {'max |dp|':>9s}")
    for name in args.backbones:
        spec = get_backbone(name)
        torch.manual_seed(0)
        model = spec.build()
        size = spec.input_size
        model.train()
        with torch.no_grad():  # batch-norm statistics that are not the defaults
            for _ in range(2):
                model(torch.rand(8, 3, size, size) * 2 - 1)
        model = model.to(memory_format=cl).eval()
        x = (torch.rand(args.batch, 3, size, size) * 2 - 1).contiguous(memory_format=cl)
        for precision in precisions:
            dtype = precision.autocast_dtype

            def autocast() -> Any:
                return torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None)

            folded = fold_batchnorm(model, cl)

            def plain(inp: torch.Tensor) -> torch.Tensor:
                with autocast():
                    return model(inp).float()

            def fold(inp: torch.Tensor) -> torch.Tensor:
                with autocast():
                    return folded(inp).float()

            notes: list[str] = []
            graph = EvalForward(model, cpu, precision, cl, note=notes.append)
            with torch.inference_mode():
                got = graph(x)
                want = plain(x)
            gap = float((torch.softmax(got, 1) - torch.softmax(want, 1)).abs().max())
            best = {"plain": 0.0, "folded": 0.0, "graph": 0.0}
            for _ in range(args.rounds):
                for key, fn in (("plain", plain), ("folded", fold), ("graph", graph)):
                    best[key] = max(best[key], rate(fn, x, args.iters))
            mode = "" if graph.mode == "graph" else f"  (graph unavailable: {'; '.join(notes)})"
            print(f"{name:13s} {precision.name:9s} {best['plain']:8.1f} {best['folded']:8.1f} "
                  f"{best['graph']:8.1f} {best['graph'] / best['plain']:10.2f}x "
                  f"{graph.graph_seconds:8.2f}s {gap:9.1e}{mode}", flush=True)


if __name__ == "__main__":
    main()
