"""The dashboard's screens see ``self.app`` as the ``DftuiApp`` they run in.

Textual types ``Screen.app`` as a plain ``App``, so every use of the dashboard's own
attributes (settings, ``open_screen``, ``start_training``...) needed a ``type: ignore`` or a
``getattr`` probe. ``textual.getters.app`` is Textual's typed replacement: it returns the
running app and checks its class, so a screen mounted in another app fails at once, by name.
A screen that uses the app's own attributes derives from one of these."""

from __future__ import annotations

from typing import Any, TypeAlias

from textual import getters
from textual.screen import ModalScreen, Screen, ScreenResultType

from dftui.ui.app import DftuiApp


class DftuiScreen(Screen[ScreenResultType]):
    """A full screen of the dashboard (registered in ``dftui.ui.app.SCREENS``)."""

    app = getters.app(DftuiApp)


class DftuiModalScreen(ModalScreen[ScreenResultType]):
    """A dialog or overlay of the dashboard that acts on the app (opens screens, saves settings)."""

    app = getters.app(DftuiApp)


# What helper functions shared by full screens and overlays take.
AnyDftuiScreen: TypeAlias = "DftuiScreen[Any] | DftuiModalScreen[Any]"
