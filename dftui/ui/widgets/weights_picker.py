"""The weights list shared by the Classify and Evaluate screens: the .pth files of a folder
(plus any file chosen by path), newest first, each with its backbone, input size, best
validation accuracy and date; the newest is highlighted from the start so Enter works at once.

Metadata files are untrusted input (another version or a person may have written them):
every field is type-checked and a bad one is shown as unknown, never a crash."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from dftui.core.checkpoint import list_weights, read_metadata_checked


@dataclass(frozen=True)
class WeightsEntry:
    path: Path
    backbone: str | None  # None: no metadata (reference-format file)
    img_size: int | None
    accuracy: float | None  # best validation accuracy, 0..1
    created: datetime | None  # from the metadata, else the file's modification time
    problem: str | None = None  # metadata beside the file that cannot be read

    @property
    def key(self) -> Path:
        return _resolved(self.path)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _parse_created(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        created = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Shown in local time; a naive time (an older writer) is taken as local already.
    return created.astimezone()


def entry_for(path: Path, meta: dict[str, Any] | None) -> WeightsEntry:
    problem = None
    if meta is None:  # no metadata, or metadata that cannot be read: say which
        meta, problem = read_metadata_checked(path)
    backbone = img_size = accuracy = created = None
    if isinstance(meta, dict):
        raw = meta.get("backbone")
        backbone = raw if isinstance(raw, str) and raw else "?"
        pre = meta.get("preprocessing")
        size = pre.get("input_size") if isinstance(pre, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            img_size = size
        acc = meta.get("best_val_accuracy")
        if isinstance(acc, (int, float)) and not isinstance(acc, bool) and 0 <= acc <= 1:
            accuracy = float(acc)
        created = _parse_created(meta.get("created"))
    if created is None:
        try:
            created = datetime.fromtimestamp(os.stat(path).st_mtime).astimezone()
        except (OSError, OverflowError, ValueError):
            created = None
    return WeightsEntry(path, backbone, img_size, accuracy, created, problem)


def weights_entries(folder: Path, extra: Iterable[Path | None] = ()) -> list[WeightsEntry]:
    """The .pth files in ``folder`` plus ``extra`` files (chosen by path elsewhere), each file
    once (compared resolved: weights/x.pth and /abs/weights/x.pth are one file), newest
    first; files without a date last, by name."""
    entries = [entry_for(p, meta) for p, meta in list_weights(folder)]
    known = {e.key for e in entries}
    for path in extra:
        if path is None or not path.is_file() or _resolved(path) in known:
            continue
        entries.append(entry_for(path, None))
        known.add(_resolved(path))
    dated = sorted((e for e in entries if e.created), key=lambda e: (e.created, e.path.name),
                   reverse=True)
    undated = sorted((e for e in entries if not e.created), key=lambda e: e.path.name)
    return dated + undated


@dataclass(frozen=True)
class TypedWeights:
    """What the path field beside the list asked for: weights to use, a folder to list, or
    why neither (all None: nothing was typed)."""

    file: Path | None = None
    folder: Path | None = None
    error: str | None = None


def read_typed(text: str) -> TypedWeights:
    """The one rule for a typed weights path on Classify and Evaluate: a folder is listed, a
    file is used, anything else is refused with a line that says what to give."""
    text = text.strip()
    if not text:
        return TypedWeights()
    path = Path(text).expanduser()
    if path.is_dir():
        return TypedWeights(folder=path)
    if path.is_file():
        return TypedWeights(file=path)
    return TypedWeights(error=f"weights file {path} does not exist; give a .pth file or a folder "
                              "that holds some")


def _when(created: datetime | None) -> str:
    # The day only: "mobilenet_v2 224px 87.5% 2026-11-30" just fits the 34-column list, and
    # the newest-first order tells runs of one day apart.
    return created.strftime("%Y-%m-%d") if created is not None else ""


def describe(entry: WeightsEntry) -> str:
    """The second line of a row: backbone, input size, accuracy, date."""
    if entry.problem:
        parts = [f"damaged metadata ({entry.problem})"]
    elif entry.backbone is None:
        parts = ["reference format"]
    else:
        parts = [entry.backbone]
        if entry.img_size:
            parts.append(f"{entry.img_size}px")
        if entry.accuracy is not None:
            parts.append(f"{entry.accuracy:.1%}")
    when = _when(entry.created)
    if when:
        parts.append(when)
    return " ".join(parts)  # single spaces: the list is about 34 columns wide


class WeightsPicker(OptionList):
    """An OptionList of weights files; Enter posts ``OptionList.OptionSelected`` whose
    option id is the file's path."""

    DEFAULT_CSS = """
    WeightsPicker {
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, weights_dir: Path, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.weights_dir = weights_dir
        self.entries: list[WeightsEntry] = []
        # What the screen last asked to show beside the folder's files, so that listing
        # another folder keeps the marks (loaded "●", compared "B") and the highlight.
        self._shown: tuple[list[Path | None], dict[Path, str], Path | None] = ([], {}, None)

    @property
    def highlighted_path(self) -> Path | None:
        option = self.highlighted_option
        return Path(option.id) if option is not None and option.id else None

    def refresh_entries(
        self,
        extra: Iterable[Path | None] = (),
        marks: Mapping[Path, str] | None = None,
        prefer: Path | None = None,
    ) -> None:
        """Re-read the folder. ``marks``: a prefix per file (e.g. "● " for the loaded one);
        the highlight stays on the file it was on, else goes to ``prefer``, else the newest."""
        previous = self.highlighted_path
        self._shown = (list(extra), dict(marks or {}), prefer)
        self.entries = weights_entries(self.weights_dir, extra)
        marks = {_resolved(p): m for p, m in (marks or {}).items()}
        self.clear_options()
        if not self.entries:
            self.add_option(Option(Text(f"no .pth files in {self.weights_dir}/", style="dim"),
                                   disabled=True))
            return
        for entry in self.entries:
            mark = marks.get(entry.key, "")
            prompt = Text.assemble(
                (mark, "green"), (entry.path.name, "bold"), "\n",
                (describe(entry), "dim"),
                overflow="ellipsis", no_wrap=True,
            )
            self.add_option(Option(prompt, id=str(entry.path)))
        keys = [e.key for e in self.entries]
        for wanted in (previous, prefer):
            if wanted is not None and _resolved(wanted) in keys:
                self.highlighted = keys.index(_resolved(wanted))
                return
        self.highlighted = 0  # the newest: Enter works without moving first

    def take_typed(self, text: str) -> TypedWeights:
        """Apply ``read_typed`` to the path field's text: a folder is listed here at once
        (the screen's marks kept); the file or the refusal is the screen's to act on."""
        typed = read_typed(text)
        if typed.folder is not None:
            self.weights_dir = typed.folder
            self.refresh_entries(*self._shown)
            self.focus()
        return typed
