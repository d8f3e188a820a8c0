"""``dftui predict``: classify images or folders of images with saved weights."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify images as real or fake",
        description=(
            "Classify images (or every image in the folders given) with trained weights. "
            "Weights made by the reference scripts (a bare state_dict) work too."
        ),
    )
    p.add_argument("--weights", type=Path, required=True, help="a .pth weights file")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    p.add_argument("--threshold", type=float, default=0.5, help="p_fake at or above which an image is fake")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 where the hardware has it (same labels, about 2x faster "
                   "on such CPUs), fp16 on older GPUs, else fp32")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dftui.cli import fail
    from dftui.core.backbones import WeightsError
    from dftui.core.devices import DeviceError
    from dftui.core.predict import Predictor, expand_images

    if not 0.0 <= args.threshold <= 1.0:
        return fail(f"--threshold must be between 0 and 1 (got {args.threshold})")
    if args.batch_size <= 0:
        return fail(f"--batch-size must be at least 1 (got {args.batch_size})")
    paths = expand_images(args.inputs)
    if not paths:
        return fail("no images found in " + ", ".join(args.inputs))
    try:
        predictor = Predictor(args.weights, args.device, args.precision, args.threshold)
    except (WeightsError, DeviceError) as exc:
        return fail(str(exc))
    try:
        return _classify(predictor, paths, args)
    except BrokenPipeError:
        # The reader went away (``dftui predict DIR | head -1``): stop quietly, as other
        # command-line tools do, without a traceback or a second error at exit.
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by the pipe
    except KeyboardInterrupt:
        return fail("interrupted", 130)


def _classify(predictor: Any, paths: list[Path], args: argparse.Namespace) -> int:
    from dftui.cli import fail
    from dftui.core.data import display_path

    results = []
    failed = 0
    for pred in predictor.predict_paths(paths, args.batch_size):
        results.append(pred)
        if not pred.ok:
            failed += 1
            sys.stderr.write(f"dftui: skipped {display_path(pred.path)}: {pred.error}\n")
        elif not args.json:
            # display_path: a name that is not UTF-8 must not crash the output, and a tab or
            # a line break in it must not forge fields or lines.
            sys.stdout.write(f"{display_path(pred.path)}\t{pred.label}\t{pred.p_fake:.4f}\n")
    if args.json:
        json.dump([r.to_dict() for r in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    sys.stdout.flush()
    if failed == len(results):
        return fail("no image could be classified", 1)
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass
