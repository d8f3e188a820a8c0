"""Helpers shared by the dashboard tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dftui.core.config import TrainConfig


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 90.0,
                   what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        await pilot.pause(0.05)


def one_thread() -> None:
    """This shared 2-core box is heavily oversubscribed: torch's OpenMP threads spin and a
    tiny batch takes seconds instead of milliseconds. One thread keeps runs fast."""
    import torch

    torch.set_num_threads(1)


def run_config(dataset: dict[str, Path], standin: Path, out: Path, **changes: Any) -> TrainConfig:
    """A 2-epoch, 32 px, batch 8 run on the session's generated set."""
    base = TrainConfig(
        train_dir=dataset["train"],
        val_dir=dataset["val"],
        epochs=2,
        batch_size=8,
        img_size=32,
        pretrained=str(standin),
        workers=0,
        device="cpu",
        precision="fp32",
        out_dir=out,
    )
    return base.with_(**changes)


def pin_cell_size() -> None:
    """textual-image sizes half blocks from the terminal's cell size; pin it so the drawing
    does not depend on whether pytest runs in a terminal."""
    from textual_image._terminal import CellSize, get_cell_size

    get_cell_size._result = CellSize(10, 20)  # type: ignore[attr-defined]


def screen_lines(app: Any) -> list[str]:
    """The current screen as plain text lines, as the terminal shows it."""
    strips = app.screen._compositor.render_strips()
    return ["".join(segment.text for segment in strip) for strip in strips]
