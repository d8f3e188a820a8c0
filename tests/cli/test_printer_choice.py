"""One rule for every command's output: Rich on a terminal, plain lines otherwise or with
--plain (make_printer / wants_rich in cli/printer.py)."""

from __future__ import annotations

import io
import sys

import pytest

from dftui.cli import prepare_cmd, printer


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("pair", [
    (printer.PlainPrinter, printer.RichPrinter),
    (prepare_cmd.PlainPrinter, prepare_cmd.RichPrinter),
])
def test_rich_only_on_a_terminal_and_never_with_plain(
    monkeypatch: pytest.MonkeyPatch, pair: tuple[type, type]
) -> None:
    plain, rich = pair
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert printer.wants_rich() and not printer.wants_rich(force_plain=True)
    shown = printer.make_printer(False, plain=plain, rich=rich)
    assert isinstance(shown, rich)
    shown.close()
    assert isinstance(printer.make_printer(True, plain=plain, rich=rich), plain)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a pipe or a log file
    assert not printer.wants_rich()
    assert isinstance(printer.make_printer(False, plain=plain, rich=rich), plain)
