"""The engine's fixes phrased as command-line options (see dftui.core.advice)."""

from __future__ import annotations

from collections.abc import Iterable

from dftui.core.advice import Fix

FLAGS = {
    "pretrained": "--pretrained", "overwrite": "--overwrite", "out_dir": "--out",
    "data_out": "--out", "force": "--force", "device": "--device", "precision": "--precision",
    "lr": "--lr",
}
PLACEHOLDERS = {"pretrained": "PATH", "out_dir": "DIR", "data_out": "DIR", "lr": "RATE"}


def phrase(fix: Fix) -> str:
    flag = FLAGS[fix.setting]
    if fix.value is not None:
        return f"{flag} {fix.value}"
    placeholder = PLACEHOLDERS.get(fix.setting)
    return f"{flag} {placeholder}" if placeholder else flag


def with_advice(message: str, fixes: Iterable[Fix]) -> str:
    """``message`` followed by the options that get out of it."""
    options = [phrase(f) for f in fixes]
    if not options:
        return message
    return f"{message.rstrip('. ')}. Or use " + ", or ".join(options) + "."
