"""The checks a CUDA machine can answer and this project's CPU machines cannot; run by
``benchmarks/gpu_check.sh`` (under 8 minutes on a machine with one or more recent GPUs).

1. Each backbone trains for a few hundred steps with the defaults (automatic precision,
   channels-last, loader workers) on generated face-crop JPEGs: images/s, the fraction of
   the time spent waiting for data, peak GPU memory. When data-wait exceeds 10 %, the same
   run is repeated with twice the loader workers and both are printed (GPU JPEG decoding is
   not implemented in dftui: more workers is the remedy it has).
2. With two or more GPUs: the same MobileNet-v2 run under ``dftui train --nproc-per-node G``
   (DDP over NCCL, global batch 32·G) against one GPU at batch 32; scaling efficiency =
   images/s on G GPUs / (G × images/s on one).
3. The predictor on the GPU (automatic precision) against the predictor on the CPU in fp32,
   on the weights trained in 1: largest probability difference and label agreement.

Each training run is a `dftui train` subprocess; its figures come from its run record
(metrics.csv) and, for memory, from an in-process job. Exit status 1 if a check fails."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

DEVICE = "cuda"  # --smoke-cpu: the whole script on the CPU, tiny, to check it runs
DATA_WAIT_LIMIT = 0.10
PROB_TOLERANCE = 0.02  # bf16/fp16 autocast against fp32: probabilities within 2 points


def machine() -> str:
    import torch

    lines = [f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}",
             f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"]
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        lines.append(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, "
                     f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    return "\n".join(lines)


def train(data: dict[str, Path], out: Path, backbone: str, epochs: int, batch: int,
          nproc: int = 1, workers: int | None = None, timeout: float = 300) -> dict[str, float]:
    home = out / "home"
    cmd = [sys.executable, "-m", "dftui", "train", "--backbone", backbone,
           "--train", str(data["train"]), "--val", str(data["val"]), "--epochs", str(epochs),
           "--batch-size", str(batch), "--device", DEVICE, "--pretrained", "none",
           "--out", str(out / "weights"), "--overwrite", "--plain"]
    if nproc > 1:
        cmd += ["--nproc-per-node", str(nproc)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    env = dict(os.environ, DFTUI_HOME=str(home), PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed ({done.returncode}): {done.stderr[-1500:]}")
    (run,) = sorted((home / "runs").iterdir())[-1:]
    with open(run / "metrics.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    last = rows[-1]  # the first epoch carries the warm-up (cuDNN autotuning, workers start)
    return {
        "images_per_s": float(last["images_per_s"]),
        "data_wait": float(last["data_wait"]),
        "seconds": time.monotonic() - t0,
        "weights": str(out / "weights" / f"{backbone}_deepfake.pth"),
    }


def peak_memory_job(data: str, backbone: str, batch: int, steps: int) -> None:
    """In-process: fit() on a few steps, then the peak GPU memory allocated (MiB)."""
    import torch

    from dftui.core.config import TrainConfig
    from dftui.core.train import fit

    torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(backbone=backbone, train_dir=Path(data) / "mem", val_dir=Path(data) / "val",
                         epochs=1, batch_size=batch, device="cuda", pretrained="none",
                         out_dir=Path(data) / "mem-weights", overwrite=True)
    final = fit(config)
    print(json.dumps({"peak_mb": torch.cuda.max_memory_allocated() / 2**20,
                      "status": getattr(final, "status", "failed")}))


def predictor_check(weights: str, images: list[Path]) -> dict[str, float]:
    from dftui.core.predict import Predictor

    gpu = Predictor(weights, device=DEVICE, precision="auto")
    cpu = Predictor(weights, device="cpu", precision="fp32")
    pg = [p.p_fake for p in gpu.predict_paths(images)]
    pc = [p.p_fake for p in cpu.predict_paths(images)]
    diff = max(abs(a - b) for a, b in zip(pg, pc, strict=True))
    # Labels are compared where the fp32 probability is not within the tolerance of 0.5
    # (a briefly trained model puts some images there; a rounding may flip them).
    clear = [(a, b) for a, b in zip(pg, pc, strict=True) if abs(b - 0.5) > PROB_TOLERANCE]
    agree = sum((a >= 0.5) == (b >= 0.5) for a, b in clear) / len(clear) if clear else 1.0
    return {"max_prob_diff": diff, "label_agreement": agree, "gpu_precision": gpu.precision.name}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/dftui-gpu-check"))
    ap.add_argument("--steps", type=int, default=300, help="training steps per backbone (over 2 epochs)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--_mem", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--smoke-cpu", action="store_true",
                    help="run every step on the CPU with 2 gloo processes for DDP (checks the script, not the GPU)")
    args = ap.parse_args()
    global DEVICE
    if args.smoke_cpu:
        DEVICE = "cpu"
    if args._mem:
        peak_memory_job(args._mem[0], args._mem[1], int(args._mem[2]), int(args._mem[3]))
        return 0

    import torch

    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: this check is for a CUDA machine")
        return 2
    print(machine(), flush=True)
    from jpeg_data import make_jpeg_dataset, make_split

    gpus = torch.cuda.device_count() if DEVICE == "cuda" else 2
    steps_per_epoch = max(1, args.steps // 2)
    n_train = steps_per_epoch * args.batch // 2  # per class
    t0 = time.monotonic()
    data = make_split(args.work / "data", n_train, 128)
    make_jpeg_dataset(args.work / "data" / "mem", 4 * args.batch, seed=5)
    print(f"data: {2 * n_train} training JPEGs, 256 validation ({time.monotonic() - t0:.0f} s to make)", flush=True)

    failed = False
    results: dict[str, dict[str, float]] = {}
    for backbone in ("mobilenet_v2", "xception"):
        r = train(data, args.work / backbone, backbone, epochs=2, batch=args.batch)
        line = (f"{backbone:13s} {r['images_per_s']:8.1f} img/s  data-wait {r['data_wait']:5.1%}")
        if r["data_wait"] > DATA_WAIT_LIMIT:
            cores = os.cpu_count() or 2
            more = train(data, args.work / f"{backbone}-w", backbone, epochs=2, batch=args.batch,
                         workers=min(cores, 2 * max(2, cores // 2)))
            line += (f"  -> with more loader workers: {more['images_per_s']:.1f} img/s, data-wait "
                     f"{more['data_wait']:.1%}")
        if DEVICE != "cuda":
            print(line, flush=True)
            results[backbone] = r
            continue
        mem = subprocess.run([sys.executable, __file__, "--_mem", str(args.work / "data"), backbone,
                              str(args.batch), "8"], capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, DFTUI_HOME=str(args.work / "mem-home"), PYTHONPATH=str(ROOT)))
        try:
            peak = json.loads(mem.stdout.strip().splitlines()[-1])["peak_mb"]
            line += f"  peak GPU memory {peak:,.0f} MiB (batch {args.batch})"
        except (ValueError, IndexError, KeyError):
            line += f"  peak GPU memory: not measured ({mem.stderr[-300:]})"
        print(line, flush=True)
        results[backbone] = r

    if gpus >= 2:
        one = results["mobilenet_v2"]["images_per_s"]
        many = train(data, args.work / "ddp", "mobilenet_v2", epochs=2, batch=args.batch * gpus, nproc=gpus)
        eff = many["images_per_s"] / (gpus * one)
        print(f"DDP mobilenet_v2 on {gpus} GPUs (batch {args.batch} per GPU): {many['images_per_s']:.1f} img/s, "
              f"scaling efficiency {eff:.0%} (1 GPU: {one:.1f} img/s)", flush=True)
    else:
        print("DDP scaling: one GPU only, not measured")

    images = sorted((data["val"] / "fake").glob("*.jpg"))[:32] + sorted((data["val"] / "real").glob("*.jpg"))[:32]
    for backbone, r in results.items():
        c = predictor_check(r["weights"], images)
        ok = c["max_prob_diff"] <= PROB_TOLERANCE and c["label_agreement"] >= 0.97
        failed |= not ok
        print(f"predictor {backbone}: GPU ({c['gpu_precision']}) vs CPU fp32 on {len(images)} images: "
              f"max |p_fake diff| {c['max_prob_diff']:.4f}, labels agree {c['label_agreement']:.0%} "
              f"{'ok' if ok else 'FAILED'}", flush=True)
    print(f"total {time.monotonic() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
