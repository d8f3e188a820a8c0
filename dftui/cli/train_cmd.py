"""``dftui train``: fine-tune a backbone on real/fake folders, headless."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

DEFAULT_EPOCHS = 15


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a detector on real/ and fake/ folders",
        description=(
            "Fine-tune an ImageNet backbone to tell real from fake face crops. Defaults are the "
            "reference project's: batch 32, 15 epochs, Adam, lr 1e-4, cross-entropy."
        ),
    )
    p.add_argument("--backbone", choices=["mobilenet_v2", "xception"], default="mobilenet_v2")
    p.add_argument("--train", type=Path, default=Path("processed_data/train_cropped"),
                   help="training folder holding real/ and fake/ (default: %(default)s)")
    p.add_argument("--val", type=Path, default=Path("processed_data/val_cropped"),
                   help="validation folder holding real/ and fake/ (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default: 15; with --resume: the run's own, or more)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--img-size", type=int, default=None,
                   help="input size in pixels (default: the backbone's, 224 or 299)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 where the hardware has it, fp16+scaler on older GPUs, else fp32; "
                   "DFTUI_PRECISION, when set, decides what auto means")
    p.add_argument("--pretrained", default="imagenet",
                   help="imagenet (cached or downloaded), none (random init), or a local .pth path")
    p.add_argument("--workers", type=int, default=None,
                   help="data-loader worker processes (default: from the machine's cores)")
    p.add_argument("--out", type=Path, default=Path("weights"), help="weights folder (default: %(default)s)")
    p.add_argument("--name", default=None, help="weights file name (default: {backbone}_deepfake.pth)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--augment", choices=["none", "light", "robust"], default="none",
                   help="training augmentation (default: none, as the reference)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--overwrite", action="store_true", help="replace existing weights of the same name")
    p.add_argument("--resume", metavar="RUN", default=None,
                   help="continue a stopped or interrupted run (its folder, its id, or 'last')")
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    p.add_argument("--detach", action="store_true",
                   help="run in the background, in a process of its own that outlives this "
                   "terminal (an SSH disconnect); prints the run id and returns at once")
    p.set_defaults(func=run)


def _config_from_args(args: argparse.Namespace) -> Any:
    from dftui.core.config import TrainConfig

    return TrainConfig(
        backbone=args.backbone,
        train_dir=args.train,
        val_dir=args.val,
        epochs=DEFAULT_EPOCHS if args.epochs is None else args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        img_size=args.img_size,
        device=args.device,
        precision=args.precision,
        pretrained=args.pretrained,
        workers=args.workers,
        out_dir=args.out,
        weights_name=args.name,
        seed=args.seed,
        augment=args.augment,
        compile=args.compile,
        overwrite=args.overwrite,
    )


class _SafePrinter:
    """Passes events to the printer until the terminal goes away (a dropped SSH session
    closes it: writes fail with EIO or a broken pipe); then training goes on silently and
    the run record keeps everything."""

    def __init__(self, printer: Any) -> None:
        self.printer = printer
        self.broken = False

    def __call__(self, event: Any) -> None:
        if self.broken:
            return
        try:
            self.printer(event)
        except (OSError, ValueError) as exc:
            if isinstance(exc, ValueError) and "closed file" not in str(exc):
                raise  # a printer bug, not a lost terminal
            self.broken = True
            _silence_stdout()

    def close(self) -> None:
        if not self.broken:
            try:
                self.printer.close()
            except (OSError, ValueError):
                self.broken = True


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the data Python still holds for it does not fail again
    at exit (which would turn the exit status into 120)."""
    import os
    import sys

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass


def _detach(config: Any, resume_dir: Path | None) -> int:
    import sys

    from dftui.cli import fail
    from dftui.core.background import LaunchError, launch_detached

    try:
        run_dir, pid = launch_detached(config, resume_dir)
    except LaunchError as exc:
        return fail(str(exc), 1)
    name = run_dir.name
    sys.stdout.write(
        f"run {name} started in the background (process {pid}); it goes on if this terminal "
        f"closes.\n  follow it: dftui attach {name}\n  stop it:   dftui stop {name}\n"
        f"  its output: {run_dir / 'output.log'}\n"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from dftui.cli import fail
    from dftui.core.config import ConfigError
    from dftui.core.runs import find_run, resume_config, runs_root

    resume_dir = None
    if args.resume:
        resume_dir = find_run(args.resume)
        if resume_dir is None or not (resume_dir / "config.json").is_file():
            return fail(
                f"no run {args.resume!r} to resume; give a run folder (they are in "
                f"{runs_root()}), a run id, or 'last'"
            )
        try:
            config = resume_config(resume_dir, args.epochs)
        except ValueError as exc:
            return fail(f"{exc}; start a new run")
    else:
        config = _config_from_args(args)
    # Settings are checked before torch is imported (seconds) or any data is scanned.
    try:
        config.validate()
    except ConfigError as exc:
        return fail(str(exc))

    if args.detach:
        return _detach(config, resume_dir)

    from dftui.cli.printer import make_printer
    from dftui.core.events import RunFailed
    from dftui.core.train import RESUME_FILE, StopFlag, fit

    stop = StopFlag()
    printer = _SafePrinter(make_printer(args.plain))

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: the user wants out now
        stop.request("interrupted")

    handled = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {s: signal.signal(s, on_signal) for s in handled}
    try:
        final = fit(config, printer, stop, resume=resume_dir)
    finally:
        printer.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    try:  # after a hang-up stderr may be gone too; the exit status still tells
        import sys

        if isinstance(final, RunFailed):
            kept = f" (best weights kept at {final.weights_path})" if final.weights_path else ""
            return fail(final.message + kept, 1)
        if final.status == "interrupted":
            if not final.run_dir:
                advice = "before the run started; nothing was trained and no run was recorded"
            elif (Path(final.run_dir) / RESUME_FILE).is_file():
                advice = (f"after epoch {final.epochs_completed}; resume with "
                          f"`dftui train --resume {final.run_dir}`")
            else:
                advice = (f"after epoch {final.epochs_completed}; no epoch was checkpointed, so "
                          f"there is nothing to resume: start a new run (record: {final.run_dir})")
            sys.stderr.write(f"dftui: interrupted {advice}\n")
            return 130
    except (OSError, ValueError):
        return 1 if isinstance(final, RunFailed) else 130
    return 0
