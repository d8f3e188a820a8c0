"""An image drawn in the terminal, with a one-line caption under it.

textual-image draws with sixel or the kitty graphics protocol where the terminal supports
them and with coloured half-block characters otherwise, so images also show over plain SSH.
It picks the method by querying the terminal, which only works before the app starts:
``dftui.ui.launch`` imports ``textual_image.widget`` first. Headless (``run_test``, SVG
snapshots) half blocks are always used, so what the tests see is the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Center, Middle, Vertical
from textual.widget import Widget
from textual.widgets import Static

if TYPE_CHECKING:
    from PIL import Image as PILImage

# Larger images are shrunk before drawing: the terminal shows at most a few hundred pixels,
# and textual-image rescales on every repaint.
MAX_DRAW_PIXELS = 768


def image_widget_class(headless: bool) -> type[Widget]:
    """textual-image's auto-detected widget, or half blocks when there is no real terminal."""
    if headless:
        from textual_image.widget import HalfcellImage

        return HalfcellImage
    from textual_image.widget import Image

    return Image


def fit_for_display(image: PILImage.Image) -> PILImage.Image:
    """An RGB copy no larger than MAX_DRAW_PIXELS on its longer side."""
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    out.thumbnail((MAX_DRAW_PIXELS, MAX_DRAW_PIXELS))
    return out


class ImageView(Vertical):
    """Shows a PIL image (``show_image``) or a file (``show_path``) scaled to fit, with a
    caption; ``clear(message)`` shows a message in its place (e.g. why a file is unreadable)."""

    DEFAULT_CSS = """
    ImageView {
        height: 1fr;
        width: 1fr;
    }
    ImageView > #image-frame {
        height: 1fr;
        width: 1fr;
    }
    ImageView #image-placeholder {
        width: auto;
        color: $text-muted;
    }
    ImageView .image {
        width: auto;
        height: auto;
    }
    ImageView > #image-caption {
        height: 1;
        width: 1fr;
        color: $text-muted;
        text-align: center;
    }
    """

    def __init__(
        self,
        placeholder: str = "No image",
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._placeholder = placeholder
        self._image: PILImage.Image | None = None
        self._drawn: Widget | None = None

    def compose(self) -> ComposeResult:
        with Middle(id="image-frame"):
            with Center(id="image-center"):
                yield Static(Text(self._placeholder), id="image-placeholder")
        yield Static("", id="image-caption")

    @property
    def image(self) -> PILImage.Image | None:
        """The image shown now (after shrinking), or None."""
        return self._image

    @property
    def caption(self) -> str:
        return str(self.query_one("#image-caption", Static).content)

    def show_image(self, image: PILImage.Image, caption: str = "") -> None:
        """Draw ``image`` (any PIL mode) with ``caption`` under it. UI thread only."""
        self._image = fit_for_display(image)
        placeholder = self.query_one("#image-placeholder", Static)
        placeholder.display = False
        if self._drawn is None:
            cls = image_widget_class(self.app.is_headless)
            self._drawn = cls(self._image, classes="image")  # type: ignore[call-arg]
            self.query_one("#image-center", Center).mount(self._drawn)
        else:
            self._drawn.image = self._image  # type: ignore[attr-defined]
            self._drawn.display = True
        self._set_caption(caption)

    def show_path(self, path: str | Path, caption: str | None = None) -> None:
        """Open and draw an image file. Decoding runs on the calling thread: for large files
        decode in a worker (``dftui.core.data.load_rgb``) and call ``show_image``."""
        from dftui.core.data import load_rgb

        path = Path(path)
        try:
            image = load_rgb(path, MAX_DRAW_PIXELS)
        except Exception as exc:  # noqa: BLE001 - any decoder error means "cannot show it"
            self.clear(f"Cannot show {path.name}: {exc}")
            return
        self.show_image(image, path.name if caption is None else caption)

    def clear(self, message: str | None = None, caption: str = "") -> None:
        """Remove the image and show ``message`` (the placeholder text by default)."""
        self._image = None
        if self._drawn is not None:
            self._drawn.display = False
        placeholder = self.query_one("#image-placeholder", Static)
        placeholder.update(Text(message if message is not None else self._placeholder))
        placeholder.display = True
        self._set_caption(caption)

    def _set_caption(self, caption: str) -> None:
        self.query_one("#image-caption", Static).update(Text(caption, overflow="ellipsis"))
