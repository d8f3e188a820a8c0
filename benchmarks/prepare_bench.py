"""Thread pool vs process pool for `dftui prepare openforensics`, side by side.

    .venv/bin/python benchmarks/prepare_bench.py [--images 60] [--width 1280] [--height 720] [--repeats 2]

Generates a sample archive once (full-size JPEG scenes, 3 faces each), then runs the same job
with each executor and worker count into fresh output folders, alternating the order, and
prints faces/s. On a shared machine only the ratios within one run mean much."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from dftui.core.demo import make_openforensics_sample
from dftui.core.prepare import PrepareConfig, PrepareFinished, prepare_openforensics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--format", default="jpg")
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dftui-bench-"))
    try:
        make_openforensics_sample(tmp / "arch", splits=("Train",), images_per_split=args.images,
                                  image_size=(args.width, args.height), defects=False)
        print(f"{args.images} images {args.width}x{args.height}, 3 faces each, format {args.format}, "
              f"{os.cpu_count()} CPUs")
        results: dict[tuple[str, int], list[float]] = {}
        configs = [(ex, int(w)) for w in args.workers.split(",") for ex in ("thread", "process")]
        for rep in range(args.repeats):
            order = configs if rep % 2 == 0 else list(reversed(configs))
            for ex, w in order:
                out = tmp / f"out-{ex}-{w}-{rep}"
                cfg = PrepareConfig(tmp / "arch", out, margin=0.3, fmt=args.format, workers=w, executor=ex)
                t0 = time.perf_counter()
                final = prepare_openforensics(cfg, lambda e: None)
                dt = time.perf_counter() - t0
                assert isinstance(final, PrepareFinished), final
                faces = sum(s.written for s in final.summaries)
                results.setdefault((ex, w), []).append(faces / dt)
                shutil.rmtree(out)
        for (ex, w), rates in sorted(results.items()):
            print(f"{ex:8s} workers={w}: " + "  ".join(f"{r:7.1f}" for r in rates) + "  faces/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
