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
    from dftui.core.backbones import backbone_names

    p.add_argument("--backbone", choices=backbone_names(), default="mobilenet_v2")
    p.add_argument("--train", type=Path, default=Path("processed_data/train_cropped"),
                   help="training folder holding real/ and fake/ (default: %(default)s)")
    p.add_argument("--val", type=Path, default=Path("processed_data/val_cropped"),
                   help="validation folder holding real/ and fake/ (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default: 15; with --resume: the run's own, or more)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default: %(default)g)")
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
    p.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
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
    from dftui.cli.launch import add_arguments

    add_arguments(p)
    p.set_defaults(func=run, train_parser=p)


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
        sync_bn=args.sync_bn,
        freeze_bn=args.freeze_bn,
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
            from dftui.cli import silence_stdout
            silence_stdout()

    def close(self) -> None:
        if not self.broken:
            try:
                self.printer.close()
            except (OSError, ValueError):
                self.broken = True


def _under_launcher() -> bool:
    import os

    from dftui.cli.launch import BACKEND_ENV

    return BACKEND_ENV in os.environ


class _Quiet:
    """The listener of ranks other than 0: only their errors reach the terminal."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def __call__(self, event: Any) -> None:
        from dftui.core.events import LogMessage

        if isinstance(event, LogMessage) and event.level == "error":
            import sys

            sys.stderr.write(f"dftui: rank {self.rank}: {event.text}\n")

    def close(self) -> None:
        pass



def _detach(config: Any, resume_dir: Path | None, command: list[str] | None = None) -> int:
    import sys

    from dftui.cli import fail
    from dftui.core.background import LaunchError, launch_detached

    try:
        run_dir, pid = launch_detached(config, resume_dir, command)
    except LaunchError as exc:
        return fail(str(exc), 1)
    name = run_dir.name
    sys.stdout.write(
        f"run {name} started in the background (process {pid}); it goes on if this terminal "
        f"closes.\n  follow it: dftui attach {name}\n  stop it:   dftui stop {name}\n"
        f"  its output: {run_dir / 'output.log'}\n"
    )
    return 0


def _detach_launcher(args: argparse.Namespace, config: Any, resume_dir: Path | None) -> int:
    """A distributed run in the background: the launcher itself runs detached, in the run
    folder prepared here (listed, attachable and stoppable at once); rank 0 takes the
    record over when it starts."""
    from dftui.cli import fail
    from dftui.cli.launch import LaunchError as PlanError
    from dftui.cli.launch import _plan, launcher_argv, worker_argv

    if args.node_rank != 0:
        return fail("--detach is for the machine with --node-rank 0, which keeps the run "
                    "record; start the other machines in the foreground (or in tmux)")
    try:
        _plan(args, config)  # refuse now what the detached launcher would refuse
    except PlanError as exc:
        return fail(str(exc))
    command = worker_argv(args, args.train_parser, None) + launcher_argv(args)
    if resume_dir is not None:
        command += ["--resume", str(Path(resume_dir).resolve())]
    return _detach(config, resume_dir, command)


def _prepared_settings(run_dir: Path) -> tuple[Any, Path | None, str | None]:
    """(config, resume folder, error) from a run folder prepared by core/background.py."""
    from dftui.core.background import LaunchError, read_launch

    try:
        config, resume = read_launch(run_dir)
    except LaunchError as exc:
        return None, None, str(exc)
    return config, (run_dir if resume else None), None


def _resolve(args: argparse.Namespace) -> tuple[Any, Path | None, str | None]:
    """(config, resume folder, error message) from the command line."""
    from dftui.core.config import ConfigError
    from dftui.core.runs import find_run, resume_config

    resume_dir = None
    if args.resume:
        resume_dir = find_run(args.resume)
        if resume_dir is None or not (resume_dir / "config.json").is_file():
            return None, None, f"no run {args.resume!r} to resume; see the run folders with `dftui runs`"
        try:
            config = resume_config(resume_dir, args.epochs)
        except ValueError as exc:
            return None, None, f"{exc}; start a new run"
        if args.sync_bn or args.freeze_bn:
            config = config.with_(sync_bn=args.sync_bn, freeze_bn=args.freeze_bn)
    else:
        config = _config_from_args(args)
    # Settings are checked before torch is imported (seconds) or any data is scanned.
    try:
        config.validate()
    except ConfigError as exc:
        return None, None, str(exc)
    return config, resume_dir, None


def run(args: argparse.Namespace) -> int:
    from dftui.cli import fail, launch

    if launch.wanted(args):
        import os

        user_cpp_log = launch.quiet_store_logs()
        prepared = os.environ.get(launch.PREPARED_ENV)
        if prepared:
            # A launcher detached by the dashboard or --detach: the settings are the ones
            # prepared in its run folder (launch.json), not this command line's.
            config, resume_dir, error = _prepared_settings(Path(prepared))
            if error is not None:
                return fail(error)
        elif args.node_rank != 0 and args.resume:
            # Only the machine with node rank 0 holds the run; it sends the settings.
            config, resume_dir = _config_from_args(args), Path(args.resume)
        else:
            config, resume_dir, error = _resolve(args)
            if error is not None:
                return fail(error)
        if args.detach:
            return _detach_launcher(args, config, resume_dir)
        return launch.launch(args, config, resume_dir, args.train_parser, user_cpp_log)
    from dftui.core.distributed import env_info

    info = env_info()
    if info is not None and info.world > 1:
        return _run_rank(args, info)
    config, resume_dir, error = _resolve(args)
    if error is not None:
        return fail(error)
    if args.detach:
        return _detach(config, resume_dir)
    return _train(args, config, resume_dir)


def _run_rank(args: argparse.Namespace, info: Any) -> int:
    """One process of a distributed run (started by torchrun): join the group, take rank
    0's settings, train; only rank 0 prints and records."""
    import os

    from dftui.cli import fail
    from dftui.cli.launch import BACKEND_ENV, RUN_DIR_ENV, SETTINGS_ENV, write_error_file
    from dftui.core import distributed
    from dftui.core.config import TrainConfig

    backend = os.environ.get(BACKEND_ENV)
    if backend is None:  # started by a plain torchrun: choose as the launcher would
        import torch

        backend = "nccl" if args.device != "cpu" and torch.cuda.is_available() else "gloo"
    try:
        distributed.init_from_env("cuda" if backend == "nccl" else "cpu")
    except Exception as exc:  # noqa: BLE001 - rendezvous errors come in many types
        message = f"rank {info.rank}: could not join the other processes ({type(exc).__name__}: {exc})"
        write_error_file(message)
        return fail(message, 1)
    try:
        if info.rank == 0:
            settings_dir = os.environ.get(SETTINGS_ENV)
            if settings_dir:
                config, resume_dir, error = _prepared_settings(Path(settings_dir))
            else:
                config, resume_dir, error = _resolve(args)
            shared = (config.to_dict() if config else None, str(resume_dir) if resume_dir else None, error)
        else:
            shared = None
        settings, resume, error = distributed.broadcast(shared)
        if error is not None:
            return fail(error) if info.rank == 0 else 2
        config = TrainConfig.from_dict(settings)
        run_dir = os.environ.get(RUN_DIR_ENV) if info.rank == 0 and resume is None else None
        code = _train(args, config, Path(resume) if resume else None,
                      run_dir=Path(run_dir) if run_dir else None, rank=info.rank)
    finally:
        distributed.shutdown()
    return code


def _train(
    args: argparse.Namespace, config: Any, resume_dir: Path | None,
    run_dir: Path | None = None, rank: int = 0,
) -> int:
    from dftui.cli import fail
    from dftui.cli.printer import make_printer
    from dftui.core.events import RunFailed
    from dftui.core.train import RESUME_FILE, StopFlag, fit

    stop = StopFlag()
    # Ranks other than 0 train silently: rank 0 prints and records for the run.
    printer = _SafePrinter(make_printer(args.plain) if rank == 0 else _Quiet(rank))

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: the user wants out now
        stop.request("interrupted")

    handled = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {s: signal.signal(s, on_signal) for s in handled}
    try:
        final = fit(config, printer, stop, resume=resume_dir, run_dir=run_dir)
    finally:
        printer.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    try:  # after a hang-up stderr may be gone too; the exit status still tells
        import sys

        if isinstance(final, RunFailed):
            if rank != 0:
                if not final.message.startswith("rank "):  # its own failure, not an agreed one
                    from dftui.cli.launch import write_error_file

                    write_error_file(f"rank {rank}: {final.message}")
                    return fail(f"rank {rank}: {final.message}", 1)
                return 2
            kept = f" (best weights kept at {final.weights_path})" if final.weights_path else ""
            from dftui.cli.printer import failure_text

            return fail(failure_text(final) + kept, 1)
        if rank != 0 and final.status == "interrupted":
            # Stopped (`dftui stop`, agreed by every rank) exits 0 as rank 0 does: the agent
            # takes any other code as a failure of the group.
            return 130
        if final.status == "interrupted" and not _under_launcher():  # the launcher says it
            import sys

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
