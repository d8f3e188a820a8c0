"""What a person adds to and does with a run record: a name, tags and a note; archiving;
deleting; exporting its metrics; the settings that tell runs apart.

The user's additions live in ``runs/<id>/user.json``, a file the run's own process never
writes, so editing a live run cannot race the recorder over run.json. Like every record, it
is untrusted when read (hand-edited, from another version, damaged): a field that cannot be
used is dropped and the reason kept, the rest still counts."""

from __future__ import annotations

import csv
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dftui.core.checkpoint import metadata_path, save_json
from dftui.core.events import EpochEnd, RunStarted
from dftui.core.runs import METRIC_COLUMNS, RunSummary, list_runs, metric_row, read_events
from dftui.core.untrusted import Fields, UntrustedError, read_json

USER_FILE = "user.json"
MAX_USER_BYTES = 256 * 1024
MAX_NAME = 60
MAX_NOTE = 2000
MAX_TAG = 24
MAX_TAGS = 12
_TAG_SPLIT = re.compile(r"[,\s]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class UserInfo:
    name: str = ""
    tags: tuple[str, ...] = ()
    note: str = ""
    archived: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tags": list(self.tags), "note": self.note,
                "archived": self.archived}


def clean_text(value: str, limit: int, newlines: bool = False) -> str:
    """Control characters out (they would move the terminal's cursor), cut to ``limit``."""
    if newlines:
        value = "\n".join(_CONTROL.sub("", line) for line in value.splitlines())
    else:
        value = _CONTROL.sub("", value.replace("\n", " ").replace("\t", " "))
    return value.strip()[:limit]


def parse_tags(text: str | list[Any] | tuple[Any, ...]) -> tuple[str, ...]:
    """Tags from "a, b c" or a list: trimmed, without '#', lower case, no repeats, in order."""
    items = _TAG_SPLIT.split(text) if isinstance(text, str) else [str(t) for t in text]
    out: list[str] = []
    for item in items:
        tag = clean_text(item.lstrip("#"), MAX_TAG).lower()
        if tag and tag not in out:
            out.append(tag)
    return tuple(out[:MAX_TAGS])


def read_user(run_dir: Path) -> tuple[UserInfo, str]:
    """The run's user.json and a problem to show ("" when none). Missing: defaults."""
    path = Path(run_dir) / USER_FILE
    try:
        data = read_json(path, max_bytes=MAX_USER_BYTES)
    except FileNotFoundError:
        return UserInfo(), ""
    except (UntrustedError, OSError) as exc:
        return UserInfo(), f"{USER_FILE}: {exc}"
    f = Fields(data)
    name = clean_text(f.str("name", ""), MAX_NAME)
    note = clean_text(f.str("note", ""), MAX_NOTE, newlines=True)
    archived = bool(f.bool("archived", False))
    raw_tags = data.get("tags", [])
    tags: tuple[str, ...] = ()
    if isinstance(raw_tags, list) and all(isinstance(t, str) for t in raw_tags):
        tags = parse_tags(raw_tags)
    elif raw_tags is not None:
        f.problems.append("tags is not a list of text")
    problem = f"{USER_FILE}: " + "; ".join(f.problems) if f.problems else ""
    return UserInfo(name, tags, note, archived), problem


def write_user(run_dir: Path, info: UserInfo) -> UserInfo:
    """Save ``info`` (cleaned the way it is read back) atomically; returns what was saved."""
    clean = UserInfo(
        name=clean_text(info.name, MAX_NAME),
        tags=parse_tags(list(info.tags)),
        note=clean_text(info.note, MAX_NOTE, newlines=True),
        archived=bool(info.archived),
    )
    save_json(clean.to_dict(), Path(run_dir) / USER_FILE)
    return clean


def update_user(run_dir: Path, **changes: Any) -> UserInfo:
    info, _ = read_user(run_dir)
    return write_user(run_dir, replace(info, **changes))


# -- settings that tell runs apart --------------------------------------------------------
SETTING_LABELS = {
    "backbone": "backbone",
    "img_size": "img",
    "batch_size": "batch",
    "lr": "lr",
    "augment": "augment",
    "epochs": "epochs",
    "pretrained": "pretrained",
    "precision": "precision",
    "seed": "seed",
}


def run_settings(run_dir: Path) -> dict[str, Any]:
    """The comparable settings of a run from its config.json (untrusted): numbers and short
    texts only; a missing or unusable value is left out."""
    try:
        data = read_json(Path(run_dir) / "config.json")
    except (FileNotFoundError, UntrustedError, OSError):
        return {}
    out: dict[str, Any] = {}
    for key in SETTING_LABELS:
        value = data.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)) and value == value:  # not NaN
            out[key] = value
        elif isinstance(value, str):
            out[key] = clean_text(value, 40)
    if "pretrained" in out and out["pretrained"] not in ("imagenet", "none"):
        out["pretrained"] = "file"  # a path: what matters is that it was a file
    return out


def differing_settings(settings: list[dict[str, Any]]) -> list[str]:
    """The setting keys whose values are not the same in every run (in SETTING_LABELS order)."""
    keys = []
    for key in SETTING_LABELS:
        values = {repr(s.get(key)) for s in settings}
        if len(values) > 1:
            keys.append(key)
    return keys


def format_setting(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if key == "lr" and isinstance(value, float):
        return f"{value:g}"
    if key == "img_size" and value is None:
        return "default"
    return str(value)


# -- curves ---------------------------------------------------------------------------------
def epoch_rows(run_dir: Path) -> dict[int, EpochEnd]:
    """Epoch results as the run's charts show them: a resumed run's redone epochs replace
    the abandoned ones."""
    rows: dict[int, EpochEnd] = {}
    for event in read_events(run_dir):
        if isinstance(event, RunStarted):
            for epoch in [e for e in rows if e > event.start_epoch]:
                del rows[epoch]
        elif isinstance(event, EpochEnd):
            rows[event.epoch] = event
    return rows


# -- export ---------------------------------------------------------------------------------
def free_path(path: Path) -> Path:
    """``path`` if nothing is there, else ``name-2.ext``, ``name-3.ext``, ...: an export never
    overwrites a file."""
    if not path.exists():
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def export_metrics_csv(run_dir: Path, folder: Path, stem: str) -> Path:
    """Write the run's per-epoch metrics to ``folder/stem-metrics.csv`` (a free name)."""
    rows = epoch_rows(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        path = free_path(folder / f"{stem}-metrics.csv")
        try:
            # "x": created here or not at all, so a file appearing meanwhile is never
            # overwritten; plain open keeps the user's umask (an export is theirs to share).
            fh = open(path, "x", encoding="utf-8", newline="")
            break
        except FileExistsError:
            continue
    with fh:
        writer = csv.writer(fh)
        writer.writerow(METRIC_COLUMNS)
        for epoch in sorted(rows):
            writer.writerow(metric_row(rows[epoch]))
    return path


def safe_stem(text: str) -> str:
    """A file-name-safe version of a run's name or id."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return stem[:80] or "run"


# -- delete ---------------------------------------------------------------------------------
class ManageError(Exception):
    """A run cannot be changed that way; the message says why."""


def weights_files(run: RunSummary) -> list[Path]:
    """The run's weights and their metadata, as they are on disk (existing files only).
    Only a ``.pth`` file and the ``.json`` beside it: run.json is untrusted and must not be
    able to name any other file for deletion."""
    if not run.weights_path:
        return []
    weights = Path(run.weights_path)  # a relative path is from the working folder, as recorded
    if weights.suffix != ".pth":
        return []
    out = []
    for path in (weights, metadata_path(weights)):
        if path.is_file() and not path.is_symlink():
            out.append(path)
    return out


def weights_shared_with(run: RunSummary, root: Path | None = None) -> list[str]:
    """Other runs whose records name the same weights file (it is theirs too)."""
    if not run.weights_path:
        return []
    mine = os.path.abspath(run.weights_path)
    return [r.run_id for r in list_runs(root)
            if r.run_dir != run.run_dir and r.weights_path
            and os.path.abspath(r.weights_path) == mine]


def delete_run(run: RunSummary, with_weights: bool = False,
               root: Path | None = None) -> list[Path]:
    """Remove the run's folder and, when asked, its weights; returns what was removed.
    Refused while the run is live, and for weights another run also names."""
    if run.live:  # running, or stalled (no heartbeat lately, its process still there)
        raise ManageError(f"run {run.run_id} is still {run.status}; stop it first")
    removed: list[Path] = []
    files: list[Path] = []
    if with_weights:
        shared = weights_shared_with(run, root)
        if shared:
            raise ManageError(f"its weights are also the weights of run(s) {', '.join(shared)};"
                              " delete the record only, or those runs first")
        files = weights_files(run)
    if not (run.run_dir / "run.json").exists() and not (run.run_dir / "events.jsonl").exists():
        raise ManageError(f"{run.run_dir} does not look like a run folder; nothing deleted")
    shutil.rmtree(run.run_dir)
    removed.append(run.run_dir)
    for path in files:
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed
