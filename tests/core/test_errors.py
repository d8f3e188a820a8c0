"""One description of an exception for a person, whichever part of dftui caught it."""

from __future__ import annotations

import errno

import pytest
from PIL import Image, UnidentifiedImageError

from dftui.core.errors import MAX_CHARS, describe_error, first_line, unexpected_error


@pytest.mark.parametrize("exc, expected", [
    (PermissionError(errno.EACCES, "Permission denied", "/x.png"), "permission denied"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x.png"),
     "file not found (deleted, or a broken link)"),
    (IsADirectoryError(errno.EISDIR, "is a folder", "/x"), "is a folder"),
    (OSError(errno.ELOOP, "Too many levels of symbolic links", "/x.png"), "symlink loop"),
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/x"), "Read-only file system"),
    (UnidentifiedImageError("cannot identify image file '/x.png'"),
     "not an image (or an unsupported format)"),
    (OSError("image file is truncated (3 bytes not processed)"),
     "truncated image (the file ends early)"),
    (Image.DecompressionBombError("Image size (1 pixels) exceeds limit"),
     "image larger than Pillow's decompression-bomb limit"),
    (ValueError("first line\nsecond line"), "first line"),
    (ValueError(""), "ValueError"),
])
def test_the_same_fault_reads_the_same_everywhere(exc: BaseException, expected: str) -> None:
    assert describe_error(exc) == expected


def test_a_full_disk_behind_a_library_error_is_named() -> None:
    # torch.save reports a full disk as a RuntimeError raised while handling the OSError.
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from None
    except RuntimeError as exc:
        assert describe_error(exc) == "the disk is full"


def test_text_is_one_short_escaped_line() -> None:
    text = describe_error(ValueError("bad name a\tb\x1b[31m " + "x" * 500 + "\nmore"))
    assert "\n" not in text and "\t" not in text and "\x1b" not in text
    assert len(text) <= MAX_CHARS + 20  # escapes may lengthen the cut line a little


def test_first_line_skips_a_torchscript_header() -> None:
    exc = RuntimeError("\nThe following operation failed in the TorchScript interpreter.\n"
                       "RuntimeError: shape mismatch\n")
    assert first_line(exc) == "RuntimeError: shape mismatch"
    assert first_line(RuntimeError("  \n")) == "RuntimeError"


def test_unexpected_errors_keep_their_type() -> None:
    assert unexpected_error(KeyError("k")) == "KeyError: 'k'"
    assert unexpected_error(ValueError("a\nb")) == "ValueError: a"
