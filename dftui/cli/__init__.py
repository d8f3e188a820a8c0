"""``dftui`` opens the dashboard; ``dftui train|predict|...`` run the same engine headless.

Command modules are imported here but import torch only inside their ``run`` functions, so
``dftui --help`` and the dashboard's first frame do not wait for it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dftui import __version__
from dftui.cli import predict_cmd, train_cmd
from dftui.cli import demo_cmd, prepare_cmd
from dftui.cli import evaluate_cmd

# Each module has register(subparsers) that adds its parser and sets ``func``.
COMMANDS = [train_cmd, predict_cmd]
COMMANDS += [prepare_cmd, demo_cmd]
COMMANDS += [evaluate_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dftui",
        description="Fine-tune and run DeepFake detectors. With no command, opens the dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"dftui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
