"""The engine's fixes phrased for the dashboard: the field or key to use, never a flag
(see dftui.core.advice)."""

from __future__ import annotations

from collections.abc import Iterable

from dftui.core.advice import Fix

FIELDS = {
    "pretrained": "Pretrained (Setup)", "overwrite": "the Overwrite box (Setup)",
    "out_dir": "the Weights file field (Setup)", "data_out": "the Output folder (Prepare)",
    "device": "Device (Setup)", "precision": "Precision (Setup)",
    "lr": "Learning rate (Setup)",
}


def phrase(fix: Fix) -> str:
    if fix.setting == "overwrite":
        return "tick the Overwrite box (Setup)"
    if fix.setting == "force":
        return "Write demo data again with ctrl+d (Prepare) to move them aside"
    if fix.setting == "pretrained" and fix.value is None:
        return "set Pretrained to file… and give the path (Setup)"
    if fix.value is not None:
        return f"set {FIELDS[fix.setting]} to {fix.value}"
    return f"choose another value in {FIELDS[fix.setting]}"


def with_advice(message: str, fixes: Iterable[Fix]) -> str:
    ways = [phrase(f) for f in fixes]
    if not ways:
        return message
    return f"{message.rstrip('. ')}. Or " + ", or ".join(ways) + "."
