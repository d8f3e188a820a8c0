"""An exception described for a person: one short line, the same words for the same fault
wherever it shows (a skipped image, a failed prediction, a save that did not happen).

Every screen and command that reports a caught exception goes through ``describe_error``
(or ``first_line`` where the exception's own words are the message), so that "not an image"
does not read three different ways and a multi-line traceback text never reaches a table."""

from __future__ import annotations

import errno

# The longest line shown: one table cell or log line, not a dump of the exception.
MAX_CHARS = 160


def first_line(exc: BaseException, limit: int = MAX_CHARS) -> str:
    """The line of an exception's text that says what went wrong, else its type's name.

    The first line that names an error wins (TorchScript and some C++ extensions put a header
    of their own before it), else the first line that is not blank."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Error:" in line:
            return line[:limit]
    return (lines[0] if lines else type(exc).__name__)[:limit]


def _system_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, else one it was raised from or while handling
    (torch.save wraps a full disk in a RuntimeError of its own)."""
    if isinstance(exc, OSError):
        return exc
    for err in (exc.__cause__, exc.__context__):
        if isinstance(err, OSError) and err.errno is not None:
            return err
    return None


def describe_error(exc: BaseException, limit: int = MAX_CHARS) -> str:
    """Why a file could not be read or written, in words for a person: the known faults in
    fixed words (no type names; the caller says which file), anything else as the first line
    of its text. Control characters are escaped, since the text may quote a file name and
    ends up in tab-separated output and logs."""
    from dftui.core.data import display_path  # data imports Pillow: only when describing

    err = _system_error(exc)
    if err is not None:
        code = err.errno
        if isinstance(err, PermissionError):
            return "permission denied"
        if isinstance(err, FileNotFoundError):
            return "file not found (deleted, or a broken link)"
        if isinstance(err, IsADirectoryError):
            return "is a folder"
        if code == errno.ELOOP:
            return "symlink loop"
        if code == errno.ENOSPC:
            return "the disk is full"
    if type(exc).__name__ == "DecompressionBombError":  # Pillow's; not imported for a name
        return "image larger than Pillow's decompression-bomb limit"
    if err is not None and err.strerror:
        return display_path(err.strerror[:limit])
    text = first_line(exc, limit)
    if "cannot identify image file" in text:
        return "not an image (or an unsupported format)"
    if "truncated" in text.lower():  # Pillow: "image file is truncated", "Truncated File Read"
        return "truncated image (the file ends early)"
    return display_path(text)


def unexpected_error(exc: BaseException, limit: int = MAX_CHARS) -> str:
    """An exception nobody planned for (a bug, a library's surprise): its type, which a bug
    report needs, and the line that says what went wrong; never the whole multi-line text."""
    return f"{type(exc).__name__}: {first_line(exc, limit)}"
