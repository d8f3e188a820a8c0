"""Hardware panel of the Training screen: CPU and memory of the run's process (its data-loader
workers included) and, on NVIDIA GPUs with nvidia-ml-py installed, GPU utilisation, memory and
temperature, each with a short history drawn as a sparkline.

It samples only while the screen follows a run, every ``SAMPLE_EVERY_S`` seconds, in a thread
(NVML calls can take milliseconds), and repaints only when the line it shows changed. The run's
process is the dashboard itself for a run in a thread, and the run's own pid (from run.json)
for a background run."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widgets import Static

from dftui.core.errors import unexpected_error
from dftui.core.hardware import HardwareSample, HardwareSampler

SAMPLE_EVERY_S = 2.0
BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Iterable[float], width: int, top: float | None = None) -> str:
    """The last ``width`` values as bar characters: from 0 to ``top`` when given (percentages),
    else from their minimum to their maximum (memory: its growth is what matters)."""
    tail = list(values)[-width:]
    if not tail:
        return ""
    low, high = (0.0, top) if top is not None else (min(tail), max(tail))
    span = high - low
    if span <= 0 or (top is None and span < 0.01 * abs(high)):
        return BARS[0] * len(tail)  # flat
    steps = len(BARS) - 1
    return "".join(BARS[min(steps, max(0, int((v - low) / span * steps + 0.5)))] for v in tail)


def _mib(mb: float | None) -> str:
    if mb is None:
        return "?"
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def hardware_text(sample: HardwareSample, history: dict[str, Any], width: int,
                  note: str = "") -> Text:
    """One line (two on narrow screens with GPUs): CPU, memory, then each GPU."""
    spark = 8 if width < 100 else 16
    text = Text(no_wrap=True, overflow="ellipsis")
    if not sample.alive:
        text.append(f"run process {sample.pid} is gone", style="dim")
        return text
    cpu = sample.cpu_percent or 0.0
    cpu_history = list(history.get("cpu", []))
    text.append("CPU ", style="bold")
    text.append(f"{cpu:.0f}% ")
    # One core is 100 %; busier than that, the scale grows with the busiest sample shown.
    top = max([100.0] + cpu_history[-spark:])
    text.append(sparkline(cpu_history, spark, top=top), style="green")
    text.append("  mem ", style="bold")
    text.append(f"{_mib(sample.rss_mb)} ")
    text.append(sparkline(history.get("rss", []), spark), style="cyan")
    for g in sample.gpus:
        text.append(f"  GPU{g.index} ", style="bold")
        util = f"{g.util_percent:.0f}%" if g.util_percent is not None else "?%"
        text.append(f"{util} ")
        text.append(sparkline(history.get(f"gpu{g.index}.util", []), spark, top=100.0),
                    style="magenta")
        if g.mem_used_mb is not None and g.mem_total_mb is not None:
            text.append(f" {g.mem_used_mb / 1024:.1f}/{g.mem_total_mb / 1024:.0f} GiB")
        if g.temp_c is not None:
            hot = g.temp_c >= 85
            text.append(f" {g.temp_c:.0f}°C", style="bold red" if hot else "")
    if not sample.gpus and note:
        text.append(f"  ({note})", style="dim")
    return text


class HardwareSampled(Message):
    def __init__(self, generation: int, sample: HardwareSample | None, history: dict[str, Any],
                 note: str, error: str = "") -> None:
        super().__init__()
        self.generation = generation
        self.sample = sample
        self.history = history
        self.note = note
        self.error = error


def run_pid(training: Any) -> int | None:
    """The pid doing the training the screen follows: a background run's own (run.json),
    else this process (a run in a thread of the dashboard)."""
    if getattr(training, "background", False):
        run_dir = getattr(training, "run_dir", None)
        if run_dir is None:
            return None
        from dftui.core.runs import read_run_info
        from dftui.core.runs import run_pid as record_pid

        try:
            pid = record_pid(read_run_info(Path(run_dir)))
        except (OSError, ValueError):
            return None
        return pid or None
    return os.getpid()


class HardwarePanel(Static):
    """Shown while the Training screen follows a run; hidden otherwise."""

    DEFAULT_CSS = """
    HardwarePanel { height: auto; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    """
    # Tests put a fake here: (pid) -> an object with sample() -> HardwareSample, .history,
    # .gpu_note.
    sampler_factory: Callable[[int], Any] = staticmethod(lambda pid: HardwareSampler(pid))

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.sampler: Any = None
        self.generation = 0
        self.last: HardwareSample | None = None
        self.shown = ""
        self.samples = 0

    def on_mount(self) -> None:
        self.display = False
        self.set_interval(SAMPLE_EVERY_S, self.tick)

    def tick(self) -> None:
        training = self.screen
        if not getattr(training, "running", False):
            if self.sampler is not None or self.display:
                self.sampler = None
                self.generation += 1  # a sample still in flight is dropped
                self.display = False
            return
        pid = run_pid(training)
        if pid is None:
            return
        if self.sampler is not None and getattr(self.sampler, "pid", pid) != pid:
            self.sampler = None
            self.generation += 1
        self._sample(self.generation, pid)

    @work(thread=True, exclusive=True, group="hardware", exit_on_error=False)
    def _sample(self, generation: int, pid: int) -> None:
        try:
            if self.sampler is None:
                self.sampler = type(self).sampler_factory(pid)
            sampler = self.sampler
            sample = sampler.sample()
            history = {k: list(v) for k, v in sampler.history.items()}
            self.post_message(HardwareSampled(generation, sample, history, sampler.gpu_note))
        except Exception as exc:  # noqa: BLE001 - a broken sensor must not stop the run's view
            self.post_message(HardwareSampled(generation, None, {}, "", unexpected_error(exc)))

    def on_hardware_sampled(self, message: HardwareSampled) -> None:
        message.stop()
        if message.generation != self.generation or not getattr(self.screen, "running", False):
            return
        self.samples += 1
        if message.sample is None:
            text = Text(f"hardware figures unavailable: {message.error}", style="dim")
        else:
            self.last = message.sample
            started = getattr(self.screen, "started", None)
            on_cuda = str(getattr(started, "device", "")).startswith("cuda")
            # Why GPU figures are missing is worth a word only for a run on a GPU.
            text = hardware_text(message.sample, message.history, self.size.width or 80,
                                 note=message.note if on_cuda else "")
        self.display = True
        if text.markup != self.shown:  # unchanged: no repaint
            self.shown = text.markup
            self.update(text)
