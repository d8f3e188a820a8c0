"""Accuracy check of the training recipe: the reference recipe (Adam 1e-4, no schedule, plain
cross-entropy, no calibration: TrainConfig's defaults) against one improved recipe, on the
same data, with the same seed and the same number of epochs.

    .venv/bin/python benchmarks/accuracy_bench.py [--train DIR --val DIR [--test DIR]]
        [--epochs 3] [--batch 32] [--img-size 64] [--pretrained imagenet|none|PATH]

Without --train/--val a synthetic set is generated (dftui's drawn faces, 64 px, with
--label-noise of the images filed under the wrong class, so that no recipe reaches 100%
and calibration has something to correct) with a held-out test split. For each recipe it
prints the best validation accuracy and loss, ROC AUC, the validation ECE before and after
a fitted temperature (fitted and measured on the validation set, as training does), the
test (or validation) accuracy, AUC, ECE and Brier score with the weights as saved (the
improved recipe's stored temperature applied), the seconds it trained, and the machine.

The improved recipe takes those of its options that this version's TrainConfig declares;
the others are named as missing, never silently dropped."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The improved recipe: AdamW with weight decay, cosine schedule with a warm-up epoch, label
# smoothing, weight averaging (EMA) and a temperature fitted after training.
IMPROVED: dict[str, Any] = {
    "optimizer": "adamw",
    "weight_decay": 0.05,
    "lr_schedule": "cosine",
    "warmup_epochs": 1,
    "label_smoothing": 0.1,
    "ema": True,
    "calibrate": True,
}


def improved_recipe() -> tuple[dict[str, Any], list[str]]:
    """(the options TrainConfig has, the names it lacks)."""
    from dftui.core.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return ({k: v for k, v in IMPROVED.items() if k in names},
            [k for k in IMPROVED if k not in names])


def noisy_copy(src: Path, dst: Path, fraction: float, seed: int) -> Path:
    """``src`` copied to ``dst`` with ``fraction`` of each class moved to the other class."""
    import numpy as np

    shutil.copytree(src, dst)
    rng = np.random.default_rng(seed)
    moves = []
    for name, other in (("real", "fake"), ("fake", "real")):
        files = sorted((dst / name).iterdir())
        k = int(round(fraction * len(files)))
        moves += [(f, dst / other / f"noisy-{f.name}") for f in rng.choice(files, k, replace=False)]
    for f, target in moves:
        f.rename(target)
    return dst


def generated(work: Path, n_train: int, n_val: int, n_test: int, size: int, noise: float,
              seed: int) -> dict[str, Path]:
    from dftui.core.synthetic import SyntheticSpec, make_dataset

    out = {}
    for i, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        clean = work / "clean" / split
        make_dataset(clean, SyntheticSpec(n_per_class=n, size=size, seed=seed + i, fmt="jpg"))
        out[split] = noisy_copy(clean, work / "data" / split, noise, seed + 10 + i)
    return out


def run_recipe(name: str, config: Any, test_dir: Path) -> dict[str, Any]:
    from dftui.core.calibration import calibrate_weights
    from dftui.core.evaluate import evaluate_folder
    from dftui.core.events import EpochEnd, RunFinished
    from dftui.core.predict import Predictor
    from dftui.core.train import fit

    events: list[Any] = []
    t0 = time.perf_counter()
    final = fit(config, events.append)
    seconds = time.perf_counter() - t0
    if not isinstance(final, RunFinished) or not final.weights_path:
        raise SystemExit(f"{name}: training failed: {getattr(final, 'message', final)}")
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    best = next(e for e in epochs if e.epoch == final.best_epoch)
    # Validation: ECE of the raw logits and with a temperature fitted on them (not stored).
    fit_val = calibrate_weights(final.weights_path, config.val_dir, device=config.device,
                                precision="fp32", batch_size=config.batch_size)
    val_auc = evaluate_folder(Predictor(final.weights_path, config.device, "fp32", calibrated=False),
                              config.val_dir, batch_size=config.batch_size).metrics.roc_auc
    # Held out: the weights as saved, with the temperature they carry (if any).
    predictor = Predictor(final.weights_path, config.device, "fp32")
    test = evaluate_folder(predictor, test_dir, batch_size=config.batch_size)
    return {
        "name": name, "seconds": seconds, "final": final, "best": best, "fit": fit_val,
        "val_auc": val_auc, "test": test, "temperature": predictor.temperature,
    }


def _f(value: float | None, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(value, fmt)


def main() -> int:
    from dftui.core.config import TrainConfig
    from dftui.core.machine import benchmark_line

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, help="training folder (real/, fake/); with --val")
    ap.add_argument("--val", type=Path, help="validation folder (real/, fake/)")
    ap.add_argument("--test", type=Path, help="held-out folder (default: generated, or --val)")
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--pretrained", default=None,
                    help="imagenet, none or a .pth (default: imagenet when cached, else the tests' "
                    "stand-in pre-trained here on other generated images: a random start does "
                    "not learn in a few epochs)")
    ap.add_argument("--train-per-class", type=int, default=200)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--label-noise", type=float, default=0.1,
                    help="generated data: fraction of each class filed under the other (default 0.1)")
    args = ap.parse_args()
    if (args.train is None) != (args.val is None):
        ap.error("give both --train and --val, or neither (a generated set)")

    work = Path(tempfile.mkdtemp(prefix="dftui-accbench-"))
    if args.train is not None:
        train_dir, val_dir = args.train, args.val
        test_dir = args.test or args.val
        data_line = f"data: {train_dir} / {val_dir}" + (f" / test {args.test}" if args.test else "")
    else:
        split = generated(work, args.train_per_class, args.val_per_class, args.test_per_class,
                          args.img_size, args.label_noise, args.seed)
        train_dir, val_dir, test_dir = split["train"], split["val"], split["test"]
        data_line = (f"data: generated {2 * args.train_per_class}/{2 * args.val_per_class}/"
                     f"{2 * args.test_per_class} train/val/test images, {args.img_size} px, "
                     f"{args.label_noise:.0%} label noise, in {work / 'data'}")
    pretrained = args.pretrained
    if pretrained is None:
        from dftui.core.backbones import get_backbone

        if get_backbone(args.backbone).cached_weights.is_file():
            pretrained = "imagenet"
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from conftest import make_standin  # the tests' ImageNet stand-in

            t0 = time.perf_counter()
            pretrained = str(make_standin(work / "standin", 32))
            print(f"stand-in pre-training: {time.perf_counter() - t0:.0f} s", flush=True)

    recipe, missing = improved_recipe()
    base = TrainConfig(backbone=args.backbone, train_dir=train_dir, val_dir=val_dir,
                       epochs=args.epochs, batch_size=args.batch, img_size=args.img_size,
                       pretrained=pretrained, seed=args.seed, device=args.device,
                       workers=args.workers, runs_dir=work / "runs")
    print(f"machine: {benchmark_line()}")
    print(data_line)
    print(f"{args.backbone}, {args.epochs} epochs, batch {args.batch}, seed {args.seed}, "
          f"pretrained {pretrained}")
    print("reference recipe: Adam, lr 1e-4, no schedule, cross-entropy (TrainConfig defaults)")
    print("improved recipe:  " + ", ".join(f"{k}={v}" for k, v in recipe.items())
          + (f"; not in this version's TrainConfig, so left out: {', '.join(missing)}" if missing else ""))
    results = [run_recipe("reference", base.with_(out_dir=work / "reference"), test_dir),
               run_recipe("improved", base.with_(out_dir=work / "improved", **recipe), test_dir)]

    held = "test" if test_dir != val_dir else "val"
    rows = [
        ("best val accuracy", lambda r: _f(r["final"].best_val_accuracy)),
        ("best val loss", lambda r: _f(r["best"].val_loss)),
        ("best epoch", lambda r: str(r["final"].best_epoch)),
        ("val ROC AUC", lambda r: _f(r["val_auc"])),
        ("val ECE (T=1)", lambda r: _f(r["fit"].ece_before)),
        ("val ECE (T fitted)", lambda r: _f(r["fit"].ece_after) if r["fit"].ok else "n/a: " + r["fit"].reason[:40]),
        ("fitted T", lambda r: _f(r["fit"].temperature, ".3g")),
        ("T stored in weights", lambda r: _f(r["temperature"], ".3g")),
        (f"{held} accuracy", lambda r: _f(r["test"].metrics.accuracy)),
        (f"{held} ROC AUC", lambda r: _f(r["test"].metrics.roc_auc)),
        (f"{held} ECE (as saved)", lambda r: _f(r["test"].ece)),
        (f"{held} Brier (as saved)", lambda r: _f(r["test"].brier)),
        ("training seconds", lambda r: f"{r['seconds']:.0f}"),
    ]
    width = max(len(title) for title, _ in rows) + 2
    print()
    print(f"{'':<{width}}{'reference':>12}{'improved':>12}")
    for title, cell in rows:
        print(f"{title:<{width}}" + "".join(f"{cell(r):>12}" for r in results))
    print(f"\n(the machine may be shared: seconds vary with other load; records in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
