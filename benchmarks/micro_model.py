"""Model-only step timings on random tensors: fp32 vs bf16 autocast, contiguous vs
channels-last, training and evaluation, for each backbone.

    .venv/bin/python benchmarks/micro_model.py --backbones mobilenet_v2 xception --steps 3

Each variant runs interleaved (round-robin) so background load hits them alike."""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
from torch import nn

from dftui.core.backbones import get_backbone


def make_step(name: str, train: bool, bf16: bool, cl: bool, batch: int):
    spec = get_backbone(name)
    torch.manual_seed(0)
    model = spec.build()
    fmt = torch.channels_last if cl else torch.contiguous_format
    model.to(memory_format=fmt)
    x = torch.randn(batch, 3, spec.input_size, spec.input_size).to(memory_format=fmt)
    y = torch.randint(0, 2, (batch,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    crit = nn.CrossEntropyLoss()
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext

    def step() -> None:
        if train:
            model.train()
            opt.zero_grad(set_to_none=True)
            with ctx():
                loss = crit(model(x).float(), y)
            loss.backward()
            opt.step()
            loss.item()
        else:
            model.eval()
            with torch.inference_mode(), ctx():
                model(x).float().argmax(1).tolist()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "xception"])
    ap.add_argument("--phases", nargs="+", default=["train", "eval"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}")
    for name in args.backbones:
        for phase in args.phases:
            variants = {
                (bf16, cl): make_step(name, phase == "train", bf16, cl, args.batch)
                for bf16 in (False, True)
                for cl in (False, True)
            }
            for step in variants.values():  # warm-up (oneDNN primitive creation)
                step()
            times: dict[tuple[bool, bool], list[float]] = {k: [] for k in variants}
            for _ in range(args.steps):
                for key, step in variants.items():
                    t0 = time.perf_counter()
                    step()
                    times[key].append(time.perf_counter() - t0)
            base = min(times[(False, False)])
            for (bf16, cl), ts in times.items():
                best = min(ts)
                print(
                    f"{name:13s} {phase:5s} {'bf16' if bf16 else 'fp32'} "
                    f"{'channels_last' if cl else 'contiguous   '} "
                    f"{args.batch / best:7.1f} img/s  x{base / best:4.2f}"
                )


if __name__ == "__main__":
    main()
