"""``dftui train``: fine-tune a backbone on real/fake folders, headless."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a detector on real/ and fake/ folders",
        description=(
            "Fine-tune an ImageNet backbone to tell real from fake face crops. Defaults are the "
            "reference project's: batch 32, 15 epochs, Adam, lr 1e-4, cross-entropy."
        ),
    )
    from dftui.core.config import TrainConfig

    add_option_flags(p, TrainConfig)
    p.add_argument("--resume", metavar="RUN", default=None,
                   help="continue a stopped or interrupted run (its folder, its id, or 'last')")
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    p.add_argument("--detach", action="store_true",
                   help="run in the background, in a process of its own that outlives this "
                   "terminal (an SSH disconnect); prints the run id and returns at once")
    from dftui.cli.launch import add_arguments

    add_arguments(p)
    p.set_defaults(func=run, train_parser=p)


def add_option_flags(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One flag per option of ``config_class`` (core/options.py), derived from its
    declaration: the type from the annotation, its choices, its help with the default.
    Every flag defaults to None, so that a flag given can be told from one left out (a
    resume applies only those given; a new run takes the config's defaults for the rest)."""
    from dftui.core.options import options

    for opt in options(config_class):
        if not opt.cli:
            continue
        kwargs: dict[str, Any] = {"dest": opt.name, "default": None, "help": _help(opt)}
        kind = opt.value_type
        if kind is bool:
            # Off by default: a plain switch (--compile); on by default or "chosen for you":
            # a pair (--x / --no-x), so that each value can be asked for.
            kwargs["action"] = ("store_true" if opt.default is False
                                else argparse.BooleanOptionalAction)
        else:
            kwargs["type"] = kind
            choices = opt.all_choices()
            if choices:
                kwargs["choices"] = choices
            if not choices:  # a choice flag lists its choices instead
                kwargs["metavar"] = opt.metavar or _METAVARS.get(
                    kind, opt.cli_flag.lstrip("-").replace("-", "_").upper())
        parser.add_argument(opt.cli_flag, **kwargs)


# Short value names by type (--early-stop-patience N, not EARLY_STOP_PATIENCE); an option
# may declare its own (Option.metavar).
_METAVARS: dict[Any, str] = {int: "N", float: "X", Path: "DIR"}


def _help(opt: Any) -> str:
    text = opt.help.replace("%", "%%")  # argparse formats help with %
    if opt.default is None:
        return text  # the help says what "chosen for you" means
    shown = ("on" if opt.default else "off") if isinstance(opt.default, bool) else opt.to_text(opt.default)
    return f"{text} (default: {shown})"


def given_options(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The options given on the command line (left-out flags are None)."""
    from dftui.core.options import options

    return {opt.name: getattr(args, opt.name) for opt in options(config_class)
            if opt.cli and getattr(args, opt.name, None) is not None}


def config_from_args(args: argparse.Namespace) -> Any:
    """A TrainConfig from the flags given, the declared defaults for the rest."""
    from dftui.core.config import TrainConfig

    return TrainConfig(**given_options(args, TrainConfig), sync_bn=args.sync_bn,
                       freeze_bn=args.freeze_bn)


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
    from dftui.core.config import ConfigError, TrainConfig
    from dftui.core.options import ResumeConflict
    from dftui.core.runs import find_run, resume_config

    resume_dir = None
    if args.resume:
        resume_dir = find_run(args.resume)
        if resume_dir is None or not (resume_dir / "config.json").is_file():
            return None, None, f"no run {args.resume!r} to resume; see the run folders with `dftui runs`"
        try:
            # Each flag given applies by its option's resume rule (keep/extend/free).
            config = resume_config(resume_dir, given=given_options(args, TrainConfig))
        except ResumeConflict as exc:
            return None, None, f"{exc.option.cli_flag}: {exc}"
        except ValueError as exc:
            return None, None, f"{exc}; start a new run"
        if args.sync_bn or args.freeze_bn:
            config = config.with_(sync_bn=args.sync_bn, freeze_bn=args.freeze_bn)
    else:
        config = config_from_args(args)
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
            config, resume_dir = config_from_args(args), Path(args.resume)
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
        from dftui.core.errors import unexpected_error

        message = f"rank {info.rank}: could not join the other processes ({unexpected_error(exc)})"
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
    from dftui.cli.signals import stop_on_signals
    from dftui.core.events import RunFailed
    from dftui.core.train import RESUME_FILE, StopFlag, fit

    stop = StopFlag()
    # Ranks other than 0 train silently: rank 0 prints and records for the run.
    printer = _SafePrinter(make_printer(args.plain) if rank == 0 else _Quiet(rank))

    try:
        with stop_on_signals(stop, lambda: stop.request("interrupted")):
            final = fit(config, printer, stop, resume=resume_dir, run_dir=run_dir)
    finally:
        printer.close()
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
