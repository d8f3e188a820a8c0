"""Accuracy is kept: the same data and seed trained with dftui's default speed policy
(precision auto = bf16 autocast on CPUs with native bf16, channels-last) and with plain
fp32 + contiguous tensors; the final validation accuracies must agree within 1 point.
It also checks that Predictor gives the same labels in bf16 and fp32.

    .venv/bin/python benchmarks/accuracy_check.py [--backbone mobilenet_v2] [--epochs 3]
        [--train-per-class 120] [--val-per-class 60] [--pretrained imagenet|none|PATH]

Full size: the backbone's own input size (224 / 299), generated 256-400 px face-crop JPEGs.
With 1,000 or more validation images over the run (validation images x epochs) the default
run validates with the fused oneDNN graph (dftui/core/inference.py), as a real run would.
Exit status 1 when the accuracies differ by more than --tolerance points."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jpeg_data import make_split  # noqa: E402


def train(config: Any, eval_graph: str) -> tuple[Any, Any, Any, float, str]:
    from dftui.core.events import EpochEnd, LogMessage, RunFinished, RunStarted
    from dftui.core.inference import ENV_SWITCH
    from dftui.core.train import fit

    events: list[Any] = []
    os.environ[ENV_SWITCH] = eval_graph
    t0 = time.perf_counter()
    final = fit(config, events.append)
    if not isinstance(final, RunFinished):
        raise SystemExit(f"training failed: {getattr(final, 'message', final)}")
    started = next(e for e in events if isinstance(e, RunStarted))
    last = [e for e in events if isinstance(e, EpochEnd)][-1]
    notes = [e.text for e in events if isinstance(e, LogMessage) and "graph" in e.text]
    validation = "fused graph" if any("runs a fused" in n for n in notes) else "eager"
    return final, started, last, time.perf_counter() - t0, validation


def main() -> int:
    from dftui.core.backbones import get_backbone
    from dftui.core.config import TrainConfig
    from dftui.core.predict import Predictor, expand_images

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="mobilenet_v2", choices=["mobilenet_v2", "xception"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-per-class", type=int, default=120)
    ap.add_argument("--val-per-class", type=int, default=60)
    ap.add_argument("--pretrained", default=None,
                    help="imagenet, none, or a .pth (default: imagenet when cached, else a stand-in "
                    "pre-trained here on other generated images, as the tests do: a random start "
                    "does not learn in a few epochs and would make the comparison empty)")
    ap.add_argument("--standin-size", type=int, default=64, help="image size of the stand-in pre-training")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tolerance", type=float, default=1.0, help="points of accuracy")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()

    pretrained = args.pretrained
    work = Path(tempfile.mkdtemp(prefix="dftui-acc-"))
    if pretrained is None:
        if get_backbone(args.backbone).cached_weights.is_file():
            pretrained = "imagenet"
        elif args.backbone == "mobilenet_v2":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from conftest import make_standin  # the tests' ImageNet stand-in

            t0 = time.perf_counter()
            pretrained = str(make_standin(work / "standin", args.standin_size))
            print(f"stand-in pre-training ({args.standin_size} px): {time.perf_counter() - t0:.0f} s", flush=True)
        else:
            pretrained = "none"
    root = (args.data or work / "data") / f"acc-{args.train_per_class}-{args.val_per_class}"
    data = make_split(root, args.train_per_class, args.val_per_class, seed=args.seed)
    base = TrainConfig(backbone=args.backbone, train_dir=data["train"], val_dir=data["val"],
                       epochs=args.epochs, batch_size=args.batch, pretrained=pretrained, seed=args.seed,
                       device="cpu", runs_dir=work / "runs")
    print(f"{args.backbone}, {args.epochs} epochs, batch {args.batch}, seed {args.seed}, pretrained "
          f"{pretrained}; {2 * args.train_per_class} training / {2 * args.val_per_class} validation "
          f"JPEGs (256-400 px) in {root}", flush=True)
    results = {}
    # The fp32 baseline is the plain model all through: no fused evaluation graph either.
    for name, policy, graph in (("default", {}, "auto"),
                                ("fp32", {"precision": "fp32", "channels_last": False}, "eager")):
        cfg = base.with_(out_dir=work / name, **policy)
        final, started, last, seconds, validation = train(cfg, graph)
        results[name] = (final, last)
        print(f"{name:8s} ({started.precision}, {'channels-last' if started.channels_last else 'contiguous'}, "
              f"validation {validation}): "
              f"final val accuracy {last.val_accuracy:.2%}, best {final.best_val_accuracy:.2%} "
              f"(epoch {final.best_epoch}), val loss {last.val_loss:.4f}, {seconds:.0f} s", flush=True)
    diff = abs(results["default"][1].val_accuracy - results["fp32"][1].val_accuracy) * 100
    ok = diff <= args.tolerance + 1e-9  # 3 images of 300 are exactly 1 point, not 1.0000000000000009
    print(f"final validation accuracy differs by {diff:.2f} points (tolerance {args.tolerance}): "
          f"{'OK' if ok else 'FAILED'}")

    images = expand_images([data["val"]])
    weights = results["fp32"][0].weights_path
    from dftui.core.inference import ENV_SWITCH, GRAPH_MIN_IMAGES

    os.environ[ENV_SWITCH] = "eager"
    p32 = list(Predictor(weights, device="cpu", precision="fp32").predict_paths(images))
    os.environ[ENV_SWITCH] = "auto"
    bf16 = Predictor(weights, device="cpu", precision="bf16")
    bf16.forward.plan(GRAPH_MIN_IMAGES)  # the fused graph, as a folder of 1,000+ images gets
    pbf = list(bf16.predict_paths(images))
    same = sum(a.label == b.label for a, b in zip(p32, pbf, strict=True))
    worst = max(abs(a.p_fake - b.p_fake) for a, b in zip(p32, pbf, strict=True))
    print(f"Predictor bf16 ({bf16.forward.mode}) vs fp32 (eager) on the fp32 weights: "
          f"{same}/{len(images)} labels the same, largest p_fake difference {worst:.4f}")
    return 0 if ok and same == len(images) else 1


if __name__ == "__main__":
    sys.exit(main())
