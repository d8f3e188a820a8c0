"""Is torch.compile worth it end to end? The same short fit() with and without
``compile=True``, wall time including compilation, each in a fresh process.

    .venv/bin/python benchmarks/bench_compile.py [--backbone mobilenet_v2] [--steps 6] [--epochs 1]

Prints total seconds and the steady training rate (images/s after the first batch)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def child(args: dict[str, Any]) -> None:
    from dftui.core.config import TrainConfig
    from dftui.core.events import BatchEnd, RunFailed
    from dftui.core.train import fit

    tmp = Path(tempfile.mkdtemp(prefix="dftui-compile-"))
    cfg = TrainConfig(backbone=args["backbone"], train_dir=Path(args["train"]), val_dir=Path(args["val"]),
                      epochs=args["epochs"], batch_size=args["batch"], pretrained="none", device="cpu",
                      compile=args["compile"], out_dir=tmp / "w", runs_dir=tmp / "runs")
    events: list[Any] = []
    t0 = time.perf_counter()
    final = fit(cfg, events.append)
    total = time.perf_counter() - t0
    if isinstance(final, RunFailed):
        raise SystemExit(final.message + "\n" + final.details)
    train = [e for e in events if isinstance(e, BatchEnd) and e.phase == "train"]
    first, last = train[0], train[-1]
    # The steady rate of the last epoch (its first batch excluded).
    last_epoch = [e for e in train if e.epoch == last.epoch]
    a, b = last_epoch[0], last_epoch[-1]
    steady = (b.batch - a.batch) * args["batch"] / (b.elapsed_s - a.elapsed_s) if b.batch > a.batch else None
    print(json.dumps({"total_s": total, "first_batch_s": first.elapsed_s, "steady_ips": steady}))


def main() -> None:
    ap = argparse.ArgumentParser()
    from dftui.core.backbones import backbone_names

    ap.add_argument("--backbone", default="mobilenet_v2", choices=backbone_names())
    ap.add_argument("--steps", type=int, default=6, help="training batches per epoch")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(json.loads(args._child))
        return
    from jpeg_data import make_split

    root = Path(tempfile.gettempdir()) / f"dftui-bench-compile-{args.batch}-{args.steps}"
    data = make_split(root, args.steps * args.batch // 2, args.batch // 2)
    print(f"{args.backbone}, {args.epochs} epoch(s) of {args.steps} batches of {args.batch} + "
          f"1 validation batch, defaults otherwise")
    for compiled in (False, True):
        payload = {"backbone": args.backbone, "train": str(data["train"]), "val": str(data["val"]),
                   "epochs": args.epochs, "batch": args.batch, "compile": compiled}
        proc = subprocess.run([sys.executable, __file__, "--_child", json.dumps(payload)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"compile={compiled}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        steady = "-" if r["steady_ips"] is None else f"{r['steady_ips']:.1f}"
        print(f"compile={str(compiled):5s}: total {r['total_s']:6.1f} s, first batch done at "
              f"{r['first_batch_s']:6.1f} s, steady {steady} images/s", flush=True)


if __name__ == "__main__":
    main()
