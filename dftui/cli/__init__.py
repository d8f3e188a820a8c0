"""``dftui`` opens the dashboard; ``dftui train|predict|...`` run the same engine headless.

Command modules are imported only to build the parser, and import torch only inside their
``run`` functions: ``dftui --help`` never waits for torch, and plain ``dftui`` skips the
parser entirely so the dashboard's first frame waits for neither."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dftui import __version__

# Modules under dftui.cli, each with register(subparsers) that adds its parser and sets
# ``func``; listed in the order `dftui --help` shows them.
COMMANDS = ["train_cmd", "runs_cmd", "predict_cmd", "evaluate_cmd", "prepare_cmd", "demo_cmd"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dftui",
        description="Fine-tune and run DeepFake detectors. With no command, opens the dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"dftui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dftui.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if not (sys.argv[1:] if argv is None else argv):
        from dftui.ui.launch import launch

        return launch()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from dftui.ui.launch import launch

        return launch()
    return int(args.func(args) or 0)


def fail(message: str, code: int = 2) -> int:
    """One line on stderr, for the failures a user can fix."""
    sys.stderr.write(f"dftui: error: {message}\n")
    return code


def silence_stdout() -> None:
    """Point stdout at /dev/null after its reader went away (a closed pipe, a dropped SSH
    session), so the data Python still holds for it does not fail again at exit (which would
    turn the exit status into 120)."""
    import os

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass
