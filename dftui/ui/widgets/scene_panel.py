"""The faces of a photo or the frames of a video, beside the picture on the Classify screen:
a p_fake timeline (videos) and a list to choose from (the whole picture, a face, a frame)."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from dftui.core.video import sparkline

ALL = "all"


def _verdict_text(label: str | None, p_fake: float) -> Text:
    if label is None or math.isnan(p_fake):
        return Text("no face", style="yellow")
    style = "bold red" if label == "fake" else "bold green"
    return Text.assemble((label.upper(), style), f" {p_fake:.2f}")


class ScenePanel(Vertical):
    """Hidden until a photo with faces searched or a video is shown."""

    DEFAULT_CSS = """
    ScenePanel {
        width: 22;
        height: 1fr;
        display: none;
    }
    ScenePanel.-shown {
        display: block;
    }
    ScenePanel #scene-title {
        height: 1;
        color: $text-accent;
        text-style: bold;
    }
    ScenePanel #scene-timeline {
        height: auto;
        max-height: 3;
    }
    ScenePanel #scene-list {
        height: 1fr;
    }
    """

    class Chosen(Message):
        """``key``: "all", "face:N" (1-based) or "frame:INDEX"."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def compose(self) -> ComposeResult:
        yield Static("", id="scene-title")
        yield Static("", id="scene-timeline")
        yield OptionList(id="scene-list")

    @property
    def keys(self) -> list[str]:
        options = self.query_one("#scene-list", OptionList)
        return [str(options.get_option_at_index(i).id) for i in range(options.option_count)]

    def clear(self) -> None:
        self.remove_class("-shown")
        self.query_one("#scene-list", OptionList).clear_options()

    def show_photo(self, faces: list[Any], note: str = "") -> None:
        """``faces``: photo.FaceVerdict list (possibly empty: no face found)."""
        self.add_class("-shown")
        self.query_one("#scene-title", Static).update(f"Faces ({len(faces)})")
        self.query_one("#scene-timeline", Static).update(Text(note, style="yellow") if note else "")
        options = self.query_one("#scene-list", OptionList)
        options.clear_options()
        options.add_option(Option("whole picture", id=ALL))
        for f in faces:
            prompt = Text.assemble(f"{f.index:>2} ", _verdict_text(f.label, f.p_fake),
                                   no_wrap=True, overflow="ellipsis")
            if f.kind == "whole":
                prompt.append(" whole", style="dim")
            options.add_option(Option(prompt, id=f"face:{f.index}"))
        options.highlighted = 0

    def show_video(self, result: Any, width: int | None = None) -> None:
        """``result``: clip.VideoResult (possibly still running: frames so far)."""
        self.add_class("-shown")
        n = len(result.frames)
        self.query_one("#scene-title", Static).update(f"Frames ({n})")
        w = max(8, (width or self.size.width or 22) - 1)
        line = Text(sparkline(result.scores, w), style="red" if result.label == "fake" else "green")
        line.append(f"\nrule {result.rule} (a)", style="dim")
        self.query_one("#scene-timeline", Static).update(line)
        options = self.query_one("#scene-list", OptionList)
        keep = options.highlighted_option.id if options.highlighted_option is not None else None
        options.clear_options()
        options.add_option(Option("whole video", id=ALL))
        # Most suspicious first: what a reviewer looks at.
        for f in sorted(result.frames, key=lambda f: (-(f.p_fake if f.faces else -1.0), f.index)):
            label = None if not f.faces else ("fake" if f.p_fake >= result.threshold else "real")
            prompt = Text.assemble(f"{f.time_s:5.1f}s ", _verdict_text(label, f.p_fake),
                                   no_wrap=True, overflow="ellipsis")
            options.add_option(Option(prompt, id=f"frame:{f.index}"))
        ids = self.keys
        options.highlighted = ids.index(keep) if keep in ids else 0

    @on(OptionList.OptionHighlighted, "#scene-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.Chosen(str(event.option.id)))
