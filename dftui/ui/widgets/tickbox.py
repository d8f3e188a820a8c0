"""A checkbox whose state reads without colour: ✓ when ticked, blank when not (Textual's
draws an X in both states and tells them apart by colour only, which 256-colour terminals,
light themes and colour-blind users lose)."""

from __future__ import annotations

from textual.widgets import Checkbox


class TickBox(Checkbox):
    @property  # type: ignore[override]
    def BUTTON_INNER(self) -> str:  # noqa: N802 - Textual's name for the glyph
        return "✓" if self.value else " "
