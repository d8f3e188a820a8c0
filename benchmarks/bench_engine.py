"""dftui's engine against the reference training loop, side by side, in one run.

    .venv/bin/python benchmarks/bench_engine.py            # full: both backbones
    .venv/bin/python benchmarks/bench_engine.py --quick    # a few steps, for a smoke check
    .venv/bin/python benchmarks/bench_engine.py --backbones mobilenet_v2 --steps 5

On the same generated face-crop JPEGs (256-400 px) it measures, for each backbone:

- training and evaluation images/s of the reference loop (plain fp32, model.train(), Adam
  1e-4, cross-entropy, batch 32, num_workers=0, Resize/ToTensor/Normalize, loss.item() per
  batch; evaluation under torch.no_grad() as the reference train.py) and of dftui's engine
  (``fit()`` with its defaults: precision auto, channels-last, data-loader workers, ...);
  both at the backbone's input size, the first (warm-up) batch of each phase not timed;
  and, for evaluation, also the whole pass with its first batch and set-up counted (dftui's
  validation folds batch norm and, on the CPU, traces a fused graph once per run: that
  one-off cost shows there);
- the fraction of the time each loop waits for data, and the peak memory (RSS of the main
  process; on CUDA also the peak allocated GPU memory);
- single-image classification latency with ``Predictor``: cold (process start to the first
  prediction, and Predictor construction + first prediction) and warm (median of N);
- the time to the dashboard's first frame.

Each measurement runs in its own fresh Python process so that memory peaks, thread pools
and caches do not leak from one to the next. On a machine shared with other work the
absolute numbers move; the ratios measured side by side in one run are what count.
Where a CUDA GPU is present, everything runs there (``--device cpu`` forces the CPU)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGETS = {  # from issue #6, for this CPU class (2 cores, AMX / AVX-512 BF16)
    ("mobilenet_v2", "train"): 1.6,
    ("xception", "train"): 3.5,
    ("mobilenet_v2", "eval"): 2.5,
    ("xception", "eval"): 2.5,
}
LATENCY_TARGET_MS = {"mobilenet_v2": 30.0, "xception": 150.0}
FIRST_FRAME_TARGET_S = 1.0


# -- measurements that run in a child process ----------------------------------------------
def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _cuda_peak_mb(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def job_reference(backbone: str, data: dict[str, str], batch: int, device_name: str) -> dict[str, Any]:
    """The reference train.py loop, as it was: fp32, num_workers=0, loss.item() per batch."""
    import torch
    from PIL import Image
    from torch import nn, optim
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from dftui.core.backbones import get_backbone
    from dftui.core.data import scan_folder

    spec = get_backbone(backbone)
    device = torch.device(device_name)
    interp = transforms.InterpolationMode(spec.interpolation)
    transform = transforms.Compose([
        transforms.Resize((spec.input_size, spec.input_size), interpolation=interp),
        transforms.ToTensor(),
        transforms.Normalize(spec.mean, spec.std),
    ])

    class Folder(torch.utils.data.Dataset):  # ImageFolder with the real = 0, fake = 1 labels
        def __init__(self, root: str) -> None:
            self.samples = scan_folder(root, check=False).samples

        def __len__(self) -> int:
            return len(self.samples)

        def __getitem__(self, i: int) -> tuple[Any, int]:
            path, label = self.samples[i]
            with open(path, "rb") as f:  # torchvision's default_loader
                img = Image.open(f).convert("RGB")
            return transform(img), label

    torch.manual_seed(0)
    train_loader = DataLoader(Folder(data["train"]), batch_size=batch, shuffle=True, num_workers=0)
    val_loader = DataLoader(Folder(data["val"]), batch_size=batch, shuffle=False, num_workers=0)
    model = spec.build().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=1e-4)

    whole: dict[str, float] = {}

    def timed(loader: DataLoader, step: Any, phase: str) -> tuple[float, float]:
        """images/s and data-wait fraction, the first (warm-up) batch not counted; the rate of
        the whole pass, first batch included, goes to ``whole``."""
        images, wait, t_start = 0, 0.0, 0.0
        t_begin = time.perf_counter()
        it = iter(loader)
        for i in range(len(loader)):
            t_a = time.perf_counter()
            x, y = next(it)
            t_b = time.perf_counter()
            x, y = x.to(device), y.to(device)
            step(x, y)
            if i == 0:
                t_start = time.perf_counter()
            else:
                wait += t_b - t_a
                images += len(y)
        t_end = time.perf_counter()
        whole[phase] = len(loader.dataset) / (t_end - t_begin)
        elapsed = t_end - t_start
        return images / elapsed, wait / elapsed

    running = [0.0]

    def train_step(x: Any, y: Any) -> None:
        optimizer.zero_grad()
        outputs = model(x)
        loss = criterion(outputs, y)
        loss.backward()
        optimizer.step()
        running[0] += loss.item()

    def val_step(x: Any, y: Any) -> None:
        outputs = model(x)
        loss = criterion(outputs, y)
        running[0] += loss.item() * x.size(0)
        _, preds = torch.max(outputs, 1)
        running[0] += torch.sum(preds == y.data).item()

    model.train()
    train_ips, train_wait = timed(train_loader, train_step, "train")
    model.eval()
    with torch.no_grad():
        eval_ips, eval_wait = timed(val_loader, val_step, "eval")
    return {
        "train_ips": train_ips, "eval_ips": eval_ips, "eval_whole_ips": whole["eval"],
        "train_wait": train_wait, "eval_wait": eval_wait,
        "peak_rss_mb": _peak_rss_mb(), "cuda_peak_mb": _cuda_peak_mb(device),
        "precision": "fp32", "channels_last": False, "workers": 0,
    }


def job_engine(backbone: str, data: dict[str, str], batch: int, device_name: str,
               overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """dftui's fit() with its defaults, one epoch; rates from its own BatchEnd events."""
    import torch

    from dftui.core.config import TrainConfig
    from dftui.core.events import BatchEnd, EpochEnd, LogMessage, RunFailed, RunStarted
    from dftui.core.train import fit

    tmp = Path(tempfile.mkdtemp(prefix="dftui-bench-engine-"))
    config = TrainConfig(
        backbone=backbone, train_dir=Path(data["train"]), val_dir=Path(data["val"]), epochs=1,
        batch_size=batch, pretrained="none", device=device_name, out_dir=tmp / "weights",
        runs_dir=tmp / "runs", **(overrides or {}),
    )
    events: list[Any] = []
    final = fit(config, events.append)
    if isinstance(final, RunFailed):
        raise SystemExit(f"engine run failed: {final.message}\n{final.details}")
    started = next(e for e in events if isinstance(e, RunStarted))
    epoch = next(e for e in events if isinstance(e, EpochEnd))

    def rate(phase: str) -> float:
        """images/s between the end of batch 1 (warm-up) and the end of the last batch."""
        batches = [e for e in events if isinstance(e, BatchEnd) and e.phase == phase]
        first, last = batches[0], batches[-1]
        assert first.batch == 1, "the first batch always emits a BatchEnd"
        return (last.batch - first.batch) * batch / (last.elapsed_s - first.elapsed_s)

    train_batches = [e for e in events if isinstance(e, BatchEnd) and e.phase == "train"]
    val_batches = [e for e in events if isinstance(e, BatchEnd) and e.phase == "val"]
    # The whole validation pass: from the end of training to the last validation batch, so
    # the batch-norm fold, the fused graph's tracing and the loader start are all counted.
    val_whole_s = val_batches[-1].elapsed_s - train_batches[-1].elapsed_s
    graph_notes = [e.text for e in events if isinstance(e, LogMessage) and "graph" in e.text]
    return {
        "train_ips": rate("train"), "eval_ips": rate("val"),
        "eval_whole_ips": started.val_size / val_whole_s,
        "eval_graph": graph_notes[0] if graph_notes else "eager folded copy (too few images for the fused graph)",
        "train_wait": epoch.data_wait,
        "eval_wait": [e for e in events if isinstance(e, BatchEnd) and e.phase == "val"][-1].data_wait,
        "peak_rss_mb": _peak_rss_mb(), "cuda_peak_mb": _cuda_peak_mb(torch.device(started.device)),
        "precision": started.precision, "channels_last": started.channels_last,
        "workers": started.workers, "device": started.device,
    }


def job_latency(weights: str, images: list[str], n: int, device_name: str, precision: str | None,
                spawned_at: float) -> dict[str, Any]:
    """Cold: Predictor construction + first prediction (and from process start). Warm: median."""
    t0 = time.perf_counter()
    from dftui.core.predict import Predictor

    kwargs = {"device": device_name}
    if precision is not None:
        kwargs["precision"] = precision
    predictor = Predictor(weights, **kwargs)
    first = predictor.predict_image(images[0])
    cold_construct = time.perf_counter() - t0
    cold_process = time.time() - spawned_at
    assert first.ok, first.error
    warm = []
    for i in range(n):
        pred = predictor.predict_image(images[(i + 1) % len(images)])
        warm.append(pred.latency_ms)
    return {
        "cold_process_s": cold_process, "cold_construct_s": cold_construct,
        "warm_ms": statistics.median(warm), "warm_min_ms": min(warm),
        "precision": predictor.precision.name, "channels_last": predictor.channels_last,
        "peak_rss_mb": _peak_rss_mb(),
    }


def job_first_frame(spawned_at: float) -> dict[str, Any]:
    """Import the dashboard and wait for its first paint in a headless test driver."""
    import asyncio

    t0 = time.perf_counter()
    from dftui.ui.app import DftuiApp

    imported = time.perf_counter() - t0
    torch_loaded = "torch" in sys.modules  # torch at import time would cost seconds

    async def paint() -> None:
        app = DftuiApp()
        async with app.run_test() as pilot:
            await pilot.pause()

    asyncio.run(paint())
    return {"import_s": imported, "first_frame_s": time.time() - spawned_at,
            "torch_loaded": torch_loaded}


# -- the parent: data, child processes, the table -------------------------------------------
def run_child(job: str, payload: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    payload = {**payload, "spawned_at": time.time()}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_job", job, json.dumps(payload)],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{job} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(job: str, payload: dict[str, Any]) -> None:
    spawned = payload.pop("spawned_at")
    if job == "reference":
        out = job_reference(**payload)
    elif job == "engine":
        out = job_engine(**payload)
    elif job == "latency":
        out = job_latency(spawned_at=spawned, **payload)
    elif job == "first_frame":
        out = job_first_frame(spawned)
    else:
        raise SystemExit(f"unknown job {job}")
    print(json.dumps(out))


def make_weights(folder: Path, backbone: str) -> Path:
    import torch

    from dftui.core.backbones import get_backbone
    from dftui.core.checkpoint import build_metadata, save_weights
    from dftui.core.data import Preprocessing

    spec = get_backbone(backbone)
    path = folder / f"{backbone}_bench.pth"
    if not path.exists():
        torch.manual_seed(0)
        pre = Preprocessing(spec.input_size, spec.mean, spec.std, spec.interpolation)
        save_weights(spec.build().state_dict(), path, build_metadata(backbone, pre))
    return path


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    from dftui.core.devices import cpu_has_native_bf16

    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return (f"{cpu}, {cores} cores ({bf16}){gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def fmt(x: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The backbones this benchmark has targets for (a registry entry without one has none).
    ap.add_argument("--backbones", nargs="+", default=list(LATENCY_TARGET_MS),
                    choices=list(LATENCY_TARGET_MS))
    ap.add_argument("--steps", type=int, default=None,
                    help="timed training batches per loop (default 6; --quick 2)")
    ap.add_argument("--eval-batches", type=int, default=None,
                    help="timed evaluation batches per loop (default 32, about a thousand images, "
                    "where dftui's fused evaluation graph starts to pay; --quick 2)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--latency-n", type=int, default=None, help="warm predictions (default 30; --quick 10)")
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, mps")
    ap.add_argument("--quick", action="store_true", help="few steps: a smoke check, noisy numbers")
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "latency", "ui"],
                    help="parts to leave out")
    ap.add_argument("--data", type=Path, default=None, help="where to keep the generated JPEGs")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate reference and dftui this many times and keep each one's best "
                    "(steadier on a busy machine)")
    ap.add_argument("--_job", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._job:
        child_main(args._job[0], json.loads(args._job[1]))
        return

    import torch
    from jpeg_data import make_split

    steps = args.steps or (2 if args.quick else 6)
    eval_batches = args.eval_batches or (2 if args.quick else 32)
    latency_n = args.latency_n or (10 if args.quick else 30)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"  # mps: pass --device mps
    work = Path(tempfile.mkdtemp(prefix="dftui-bench-"))
    data_root = args.data or work / "data"
    # Exactly one warm-up batch plus the timed ones per phase, all full batches.
    per_class_train = (steps + 1) * args.batch // 2
    per_class_val = (eval_batches + 1) * args.batch // 2
    data_root = data_root / f"b{args.batch}-t{steps}-v{eval_batches}"
    data = {k: str(v) for k, v in make_split(data_root, per_class_train, per_class_val).items()}
    env = {**os.environ, "DFTUI_HOME": str(work / "home"), "DFTUI_OFFLINE": "1"}
    print(f"machine: {machine()}")
    print(f"device: {device}; batch {args.batch}; {steps} timed training and {eval_batches} timed "
          f"evaluation batches per loop (+1 warm-up each), best of {args.rounds} alternating "
          f"round(s); JPEGs 256-400 px in {data_root}")
    results: dict[str, Any] = {"machine": machine(), "device": device, "batch": args.batch,
                               "steps": steps, "eval_batches": eval_batches, "rows": [],
                               "latency": [], "ui": None}
    t_all = time.perf_counter()

    if "train" not in args.skip:
        header = (f"{'backbone':13s} {'phase':5s} {'reference':>10s} {'dftui':>10s} {'speed-up':>8s} "
                  f"{'target':>6s}  {'data-wait ref/dftui':>19s}  {'peak RSS MiB ref/dftui':>22s}")
        if device.startswith("cuda"):
            header += f"  {'CUDA peak MiB ref/dftui':>23s}"
        print("\nimages/s (training: fit() with its defaults vs the reference loop)")
        print(header, flush=True)
        for backbone in args.backbones:
            payload = {"backbone": backbone, "data": data, "batch": args.batch, "device_name": device}
            # Alternating rounds, best of each: load from other work comes and goes, and
            # the best rate of a loop is the one least disturbed by it.
            ref: dict[str, Any] = {}
            eng: dict[str, Any] = {}
            for _ in range(args.rounds):
                ref = best_of(ref, run_child("reference", payload, env, args.timeout))
                eng = best_of(eng, run_child("engine", payload, env, args.timeout))
            for phase in ("train", "eval"):
                speedup = eng[f"{phase}_ips"] / ref[f"{phase}_ips"]
                target = TARGETS[(backbone, phase)]
                wait = f"{fmt(ref[f'{phase}_wait'], '.0%')}/{fmt(eng[f'{phase}_wait'], '.0%')}"
                rss = f"{ref['peak_rss_mb']:.0f}/{eng['peak_rss_mb']:.0f}"
                line = (f"{backbone:13s} {phase:5s} {ref[f'{phase}_ips']:10.1f} {eng[f'{phase}_ips']:10.1f} "
                        f"{speedup:7.2f}x {target:5.1f}x  {wait:>19s}  {rss:>22s}")
                if device.startswith("cuda"):
                    line += f"  {fmt(ref['cuda_peak_mb'], '.0f')}/{fmt(eng['cuda_peak_mb'], '.0f'):>23s}"
                line += "" if speedup >= target else "  (below target)"
                print(line, flush=True)
                results["rows"].append({"backbone": backbone, "phase": phase, "reference": ref[f"{phase}_ips"],
                                        "dftui": eng[f"{phase}_ips"], "speedup": speedup, "target": target,
                                        "reference_run": ref, "dftui_run": eng})
            whole = eng["eval_whole_ips"] / ref["eval_whole_ips"]
            print(f"{backbone:13s} {'eval*':5s} {ref['eval_whole_ips']:10.1f} {eng['eval_whole_ips']:10.1f} "
                  f"{whole:7.2f}x          * whole pass, first batch and setup included", flush=True)
            results["rows"].append({"backbone": backbone, "phase": "eval_whole",
                                    "reference": ref["eval_whole_ips"], "dftui": eng["eval_whole_ips"],
                                    "speedup": whole})
            print(f"{'':13s} (dftui ran {eng['precision']}, "
                  f"{'channels-last' if eng['channels_last'] else 'contiguous'}, {eng['workers']} "
                  f"data-loader worker(s); validation: {eng['eval_graph']})", flush=True)

    if "latency" not in args.skip:
        weights_dir = work / "weights"
        weights_dir.mkdir(exist_ok=True)
        images = sorted(str(p) for p in Path(data["val"]).rglob("*.jpg"))[: latency_n + 1]
        print(f"\nsingle-image classification latency (Predictor.predict_image, decode included; "
              f"warm = median of {latency_n})")
        print(f"{'backbone':13s} {'precision':>12s} {'cold: process':>14s} {'cold: Predictor':>16s} "
              f"{'warm':>9s} {'target':>8s}  {'peak RSS':>9s}")
        for backbone in args.backbones:
            weights = make_weights(weights_dir, backbone)
            for precision in (None, "fp32", "bf16"):
                payload = {"weights": str(weights), "images": images, "n": latency_n,
                           "device_name": device, "precision": precision}
                lat = run_child("latency", payload, env, args.timeout)
                label = f"default={lat['precision']}" if precision is None else precision
                target = LATENCY_TARGET_MS[backbone]
                mark = "" if lat["warm_ms"] <= target or precision is not None else "  (above target)"
                print(f"{backbone:13s} {label:>12s} {lat['cold_process_s']:13.2f}s {lat['cold_construct_s']:15.2f}s "
                      f"{lat['warm_ms']:7.1f}ms {target:6.0f}ms  {lat['peak_rss_mb']:7.0f}MiB{mark}")
                results["latency"].append({"backbone": backbone, "requested": precision or "default", **lat})

    if "ui" not in args.skip:
        ui = first_frame(env, args.timeout)
        results["ui"] = ui
        if ui is None:
            print("\nfirst frame: dftui.ui.app is not importable here; skipped")
        else:
            mark = "" if ui["first_frame_s"] <= FIRST_FRAME_TARGET_S else "  (above target)"
            print(f"\ndashboard first frame: {ui['first_frame_s']:.2f} s from process start, "
                  f"{ui['method']} (import dftui.ui.app {ui['import_s']:.2f} s; torch loaded by "
                  f"it: {'yes' if ui['torch_loaded'] else 'no'}); target {FIRST_FRAME_TARGET_S:.0f} s{mark}")
    print(f"\nbenchmark took {time.perf_counter() - t_all:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


def best_of(best: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Per phase, the run with the higher images/s (its data-wait with it); peaks: the max."""
    if not best:
        return new
    out = dict(new)
    for phase in ("train", "eval"):
        if best[f"{phase}_ips"] > new[f"{phase}_ips"]:
            out[f"{phase}_ips"], out[f"{phase}_wait"] = best[f"{phase}_ips"], best[f"{phase}_wait"]
    if best.get("eval_whole_ips", 0) > new.get("eval_whole_ips", 0):
        out["eval_whole_ips"] = best["eval_whole_ips"]
    for key in ("peak_rss_mb", "cuda_peak_mb"):
        if best.get(key) is not None and new.get(key) is not None:
            out[key] = max(best[key], new[key])
    return out


def first_frame(env: dict[str, str], timeout: float) -> dict[str, Any] | None:
    """Time to the dashboard's first frame. With UI-A's benchmarks/ui_bench.py: `dftui` in a
    pseudo-terminal until the Setup screen's text arrives (median of 3). Without it: a child
    process that imports the app and paints once under App.run_test(). Either way our child
    also reports the import time and whether torch was loaded by the import."""
    try:
        import importlib.util

        if importlib.util.find_spec("textual") is None:
            return None
        own = run_child("first_frame", {}, env, timeout)
        own["method"] = "App.run_test() first paint"
        if (HERE / "ui_bench.py").exists():
            import importlib

            measure = getattr(importlib.import_module("ui_bench"), "first_frame_once", None)
            if callable(measure):
                home = Path(tempfile.mkdtemp(prefix="dftui-bench-ff-"))
                frames = [measure(home / f"ff{i}") for i in range(3)]
                own["first_frame_s"] = statistics.median(frames)
                own["method"] = "dftui in a pseudo-terminal, median of 3 (ui_bench.first_frame_once)"
        return own
    except Exception as exc:  # noqa: BLE001 - the UI part must not sink the engine numbers
        print(f"\nfirst frame: could not be measured ({type(exc).__name__}: {exc})")
        return None


if __name__ == "__main__":
    main()
