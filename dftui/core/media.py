"""Which files dftui can judge: photos (``core/data``) and videos (``core/video``), one list, and
how a list of files and folders becomes the files to judge (``dftui predict``, the Classify screen)."""

from __future__ import annotations

from pathlib import Path

from dftui.core.data import IMAGE_EXTENSIONS, expand_inputs
from dftui.core.video import VIDEO_EXTENSIONS

MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


def is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS


def expand_media(inputs: list[str]) -> list[Path]:
    """Files named directly, plus the images and videos inside named folders (sorted; hidden
    files and folders skipped)."""
    return expand_inputs(inputs, MEDIA_EXTENSIONS)
