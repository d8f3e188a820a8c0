"""Writing files so that nothing is left half-written: atomic replacement, and the probe that
a folder takes new files. Standard library only, so the dashboard's settings can use it
without pulling in the engine."""

from __future__ import annotations

import glob
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process umask, without changing it where the system can tell it (Linux): setting
    it to read it back would race with files other threads create meanwhile."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: str | Path) -> int:
    """Permissions for a file written by replacing ``path``: those of the file it replaces,
    else what ``open()`` would give (0666 less the umask). ``mkstemp`` makes every file
    0600, which would make a shared weights folder unreadable to the group."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~_umask()


def _temp_beside(path: Path, suffix: str = TEMP_SUFFIX) -> tuple[int, str]:
    """An open descriptor and the name of a new hidden file in ``path``'s folder (created if
    missing), named ``.<name>.<random><suffix>`` so that two writers never share one and
    ``remove_stale_temp`` (or a sweep for ``suffix``) finds what a killed writer left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode(path))
    except (OSError, AttributeError):  # no fchmod (Windows) or a filesystem without modes
        pass
    return fd, tmp


def fsync_dir(folder: Path) -> None:
    try:  # make a rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


@contextmanager
def atomic_write(
    path: str | Path,
    mode: str = "wb",
    *,
    durable: bool = True,
    suffix: str = TEMP_SUFFIX,
    before_replace: Callable[[str], None] | None = None,
) -> Iterator[IO[Any]]:
    """Write to a temporary file in the same folder, then rename it over ``path``: a crash, an
    exception in the block or a full disk leaves the old file (or none), never a half-written
    one, and no temporary file behind.

    ``durable`` also flushes the data and the rename to the disk (fsync): for records,
    weights and settings. Bulk outputs that a rerun rewrites anyway (thousands of face
    crops) skip it, since an fsync per file costs more than the encoding.

    ``before_replace`` gets the finished temporary file's name just before the rename: the
    weights use it to commit their metadata (which names the new file's digest) first. If
    it raises, the old file stays and the temporary one is removed."""
    path = Path(path)
    fd, tmp = _temp_beside(path, suffix)
    try:
        # Text goes out as written: UTF-8 whatever the locale, line endings not translated.
        opened = (os.fdopen(fd, mode) if "b" in mode
                  else os.fdopen(fd, mode, encoding="utf-8", newline=""))
        with opened as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str, *, durable: bool = True,
                      suffix: str = TEMP_SUFFIX) -> None:
    """``text`` as the new content of ``path`` (UTF-8, line endings as given), atomically."""
    with atomic_write(path, "w", durable=durable, suffix=suffix) as fh:
        fh.write(text)


def remove_stale_temp(path: str | Path) -> int:
    """Delete the temporary files a killed atomic_write left for ``path`` (call only when no
    other process can be writing it). Returns how many were removed."""
    removed = 0
    for tmp in temp_files_of(Path(path)):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def temp_files_of(path: Path) -> Iterator[Path]:
    """The temporary files ``atomic_write`` may have left for ``path``."""
    return path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}")


def check_writable(folder: Path) -> None:
    """Create ``folder`` if missing and prove that it takes new files, before any long work
    starts; raises OSError (with ``strerror``) when it does not. The probe file has a name of
    its own (mkstemp), so runs in threads or processes of their own never trip over each
    other's, and it is gone when this returns."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder, prefix=".dftui-write-test-"):
        pass
