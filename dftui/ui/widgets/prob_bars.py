"""The verdict for one image: REAL / FAKE, a probability bar per class, and the latency."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

LABEL_WIDTH = 5  # "real " / "fake "
VALUE_WIDTH = 7  # " 100.0%"


@dataclass(frozen=True)
class Verdict:
    label: str  # "real" | "fake"
    p_real: float
    p_fake: float
    latency_ms: float | None = None
    threshold: float = 0.5


def bar(fraction: float, width: int) -> str:
    """A bar of ``width`` cells, filled to ``fraction`` in eighths of a cell."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part and full < width else ""
    return ("█" * full + partial).ljust(width, "·" if width else "")


class ProbBars(Widget):
    """Shows a Verdict, a message (waiting, error) or nothing."""

    DEFAULT_CSS = """
    ProbBars {
        height: 4;
        width: 1fr;
        padding: 0 1;
    }
    ProbBars.-error {
        color: $text-error;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._verdict: Verdict | None = None
        self._message = ""

    @property
    def verdict(self) -> Verdict | None:
        return self._verdict

    @property
    def message(self) -> str:
        return self._message

    def show(self, verdict: Verdict) -> None:
        self._verdict = verdict
        self._message = ""
        self.remove_class("-error")
        self.refresh()

    def show_message(self, text: str, error: bool = False) -> None:
        self._verdict = None
        self._message = text
        self.set_class(error, "-error")
        self.refresh()

    def render(self) -> RenderResult:
        v = self._verdict
        if v is None:
            return Text(self._message)
        fake = v.label == "fake"
        style = "bold white on dark_red" if fake else "bold black on green3"
        headline = Text.assemble(
            (f" {v.label.upper()} ", style),
            f"  p(fake) {v.p_fake:.1%}, threshold {v.threshold:.0%}",
            overflow="ellipsis",
            no_wrap=True,
        )
        width = max(4, self.content_size.width - LABEL_WIDTH - VALUE_WIDTH)
        lines = [headline]
        for name, p, colour in (("real", v.p_real, "green3"), ("fake", v.p_fake, "red3")):
            lines.append(
                Text.assemble(
                    (name.ljust(LABEL_WIDTH), "bold" if name == v.label else ""),
                    (bar(p, width), colour),
                    f"{p:>7.1%}",
                    no_wrap=True,
                )
            )
        if v.latency_ms is not None:
            lines.append(Text(f"latency {v.latency_ms:.1f} ms", style="dim"))
        return Group(*lines)
