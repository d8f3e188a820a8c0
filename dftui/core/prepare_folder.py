"""``dftui prepare folder``: a folder of labelled photos and videos (``real/``, ``fake/``) ->
the face-crop folders dftui trains on, with the detector and crop rule ``predict`` uses.

Layout written::

    OUT/train_cropped/{real,fake}/<source>__<frame>-<face>.<fmt>
    OUT/val_cropped/{real,fake}/...            (with val_fraction > 0)
    OUT/prepare_folder_report.json             totals, settings, what was skipped and why
    OUT/.prepare_folder_done.jsonl             one line per finished source (resume)

``<source>`` is the file's path under its label folder with unsafe characters replaced
(``clips/a b.mp4`` -> ``clips-a_b.mp4``), ``<frame>`` the frame number (000000 for a photo):
crops of one source share the part before ``__``, which is how evaluation groups them per
video (``video_eval.crop_source``). A source goes wholly to train or to val (by a hash of its name), so no
video has frames on both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dftui.core.data import iter_files, load_rgb
from dftui.core.errors import describe_error
from dftui.core.events import Emit, FolderFinished, FolderProgress, FolderStarted, FolderSummary
from dftui.core.faces import DetectorConfig, FaceDetector, FaceDetectorError, crop_face
from dftui.core.files import check_writable, write_text_atomic
from dftui.core.media import MEDIA_EXTENSIONS
from dftui.core.prepare import (
    FOLDER_REPORT_JSON,
    FORMATS,
    PART_SUFFIX,
    PrepareError,
    _save_atomic,
    mark_output_folder,
    output_folder_problem,
    suggest_output_folder,
)
from dftui.core.untrusted import parse_json, read_json
from dftui.core.video import VIDEO_EXTENSIONS, Sampling, Stopped, VideoError, sample_frames

REPORT = FOLDER_REPORT_JSON
DONE = ".prepare_folder_done.jsonl"
TOOL = "dftui prepare folder"
LABELS = ("real", "fake")
SEP = "__"  # core/video_eval.crop_source reads the names back


def crop_file_name(source: str, frame: int, face: int, fmt: str) -> str:
    return f"{source}{SEP}{frame:06d}-{face}.{fmt}"


def source_key(rel: Path) -> str:
    text = "-".join(rel.parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "file"


@dataclass(frozen=True)
class FolderConfig:
    root: Path
    out: Path = Path("processed_data")
    frames: int = 32  # sampled per video
    margin: float = 0.0
    min_size: int = 40
    fmt: str = "jpg"
    val_fraction: float = 0.0

    def validate(self) -> None:
        if self.fmt not in FORMATS:
            raise PrepareError(f"format {self.fmt!r} is not supported; use one of: {', '.join(FORMATS)}")
        if not 0.0 <= self.margin <= 10.0:
            raise PrepareError(f"margin {self.margin} is out of range; use a fraction from 0 to 10")
        if not 1 <= self.frames <= 10_000:
            raise PrepareError(f"frames per video must be from 1 to 10000 (got {self.frames})")
        if self.min_size < 8:
            raise PrepareError(f"minimum face size must be at least 8 pixels (got {self.min_size})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise PrepareError(f"validation fraction must be from 0 to below 1 (got {self.val_fraction})")

    def settings(self) -> dict[str, Any]:
        return {"frames": self.frames, "margin": self.margin, "min_size": self.min_size,
                "format": self.fmt, "val_fraction": self.val_fraction}


@dataclass(frozen=True)
class Source:
    path: Path
    rel: str  # path under the label folder, as written in records
    label: str
    key: str
    split: str  # "train" | "val"
    video: bool


# --------------------------------------------------------------------------- events


# --------------------------------------------------------------------------- planning


def _label_dirs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise PrepareError(f"cannot read {root}: {describe_error(exc)}") from None
    for entry in entries:
        key = entry.name.lower()
        if key in LABELS and entry.is_dir():
            if key in found:
                raise PrepareError(f"{root} has two {key} folders ({found[key].name}, {entry.name}); keep one")
            found[key] = entry
    return found


def plan_sources(config: FolderConfig) -> list[Source]:
    root = config.root
    if not root.is_dir():
        raise PrepareError(f"{root} is not a folder; give the folder that holds real/ and fake/")
    dirs = _label_dirs(root)
    if not dirs:
        raise PrepareError(f"{root} has no real/ or fake/ folder; put the photos and videos to use in those two")
    sources: list[Source] = []
    for label, folder in dirs.items():
        found: list[Source] = []
        keys: dict[str, str] = {}  # unique within a label: evaluation groups by (label, source)
        # Path order (a folder's files together), as before: a rerun names its crops the same.
        for path in sorted(Path(p) for p in iter_files(folder, MEDIA_EXTENSIONS)):
            rel_path = path.relative_to(folder)
            suffix = path.suffix.lower()
            key = source_key(rel_path)
            if key in keys:
                key = f"{key}-{hashlib.sha1(str(rel_path).encode()).hexdigest()[:6]}"
            keys[key] = path.as_posix()
            found.append(Source(path, rel_path.as_posix(), label, key, "train", suffix in VIDEO_EXTENSIONS))
        sources.extend(_split(found, config.val_fraction))
    return sources


def _split(found: list[Source], val_fraction: float) -> list[Source]:
    """Per class, the fraction of sources (at least one, never all, when there are two or
    more) goes to val: training needs both classes on both sides. Which ones is decided by a
    hash of the name, so reruns choose the same."""
    n = len(found)
    if val_fraction <= 0 or n < 2:
        return found
    k = min(n - 1, max(1, round(n * val_fraction)))

    def digest(src: Source) -> str:
        return hashlib.sha1(f"{src.label}/{src.rel}".encode("utf-8", "surrogateescape")).hexdigest()

    val = {id(src) for src in sorted(found, key=digest)[:k]}
    return [replace(src, split="val") if id(src) in val else src for src in found]


def check_out(config: FolderConfig) -> None:
    """Refuse an output folder inside the input (the crops would be read back as sources next
    time), then apply the one rule every prepare tool follows (``output_folder_problem``: no
    demo data, no files this tool did not write; its own earlier output is resumed)."""
    out, root = config.out.resolve(), config.root.resolve()
    if out == root or root in out.parents:
        raise PrepareError(f"the output folder {config.out} lies inside the input {config.root}; choose one outside it")
    why = output_folder_problem(config.out, TOOL)
    if why:
        # No flag or field name: the CLI and the Prepare screen both show this line.
        other = suggest_output_folder(config.out, "folder")
        raise PrepareError(f"{why}; choose a new output folder (e.g. {other})")
    try:
        check_writable(out)
    except OSError as exc:
        why = describe_error(exc)
        raise PrepareError(f"cannot write to the output folder {config.out}: {why}; choose another") from None


def _read_done(out: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    try:
        with open(out / DONE, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    row = parse_json(line)
                except (ValueError, RecursionError):
                    continue  # a line cut by a crash: that source is redone
                if (isinstance(row, dict) and isinstance(row.get("source"), str)
                        and row.get("label") in LABELS and row.get("split") in ("train", "val")):
                    done[f"{row['label']}/{row['source']}"] = row
    except OSError:
        pass
    return done


# --------------------------------------------------------------------------- the job




def _crop_source(
    src: Source, config: FolderConfig, detector: FaceDetector, stop: threading.Event
) -> tuple[int, str, str]:
    """(crops written, status, detail) for one photo or video."""
    folder = config.out / f"{src.split}_cropped" / src.label
    written = 0
    if src.video:
        frames_iter = ((f.index, f.image) for f in sample_frames(src.path, Sampling(count=config.frames), stop))
    else:
        frames_iter = iter([(0, load_rgb(src.path))])
    for index, image in frames_iter:
        for n, face in enumerate(detector.detect(image).faces, start=1):
            target = folder / crop_file_name(src.key, index, n, config.fmt)
            try:
                _save_atomic(crop_face(image, face, config.margin), str(target), config.fmt)
            except OSError as exc:
                raise _WriteError(f"cannot write {target}: {describe_error(exc)}") from exc
            written += 1
    return written, ("ok" if written else "no_face"), ("" if written else "no face found")


class _WriteError(Exception):
    pass


def prepare_folder(config: FolderConfig, emit: Emit, stop: threading.Event | None = None) -> FolderSummary:
    """Never raises for bad input: the summary says what happened (also emitted)."""
    stop = stop or threading.Event()
    start = time.perf_counter()
    config = replace(config, root=Path(config.root).expanduser(), out=Path(config.out).expanduser())
    summary = FolderSummary()
    try:
        config.validate()
        sources = plan_sources(config)
        check_out(config)
        try:
            mark_output_folder(config.out, TOOL)  # before the first crop: a rerun after a crash is ours
        except OSError as exc:
            why = describe_error(exc)
            raise PrepareError(f"cannot write to the output folder {config.out}: {why}; choose another") from None
        detector = FaceDetector(DetectorConfig(min_size=config.min_size))
    except (PrepareError, FaceDetectorError) as exc:
        summary.status, summary.error = "failed", str(exc)
        emit(FolderFinished(summary))
        return summary
    summary.photos = sum(not s.video for s in sources)
    summary.videos = sum(s.video for s in sources)
    done = _read_done(config.out)
    previous = _previous_settings(config.out)
    for split in {s.split for s in sources}:
        for label in LABELS:
            folder = config.out / f"{split}_cropped" / label
            folder.mkdir(parents=True, exist_ok=True)
            for entry in os.scandir(folder):  # parts a killed run left behind
                if entry.name.endswith(PART_SUFFIX):
                    os.remove(entry.path)
    todo = [s for s in sources if f"{s.label}/{s.rel}" not in done]
    summary.skipped_done_before = len(sources) - len(todo)
    emit(FolderStarted(str(config.root), str(config.out), summary.photos, summary.videos,
                       summary.skipped_done_before, config.settings()))
    if previous is not None and previous != config.settings():
        from dftui.core.events import LogMessage

        emit(LogMessage("warning", f"crops already in {config.out} were made with {previous}; "
                                   f"new ones use {config.settings()}. Use a new output folder to redo them all."))
    skipped: list[dict[str, str]] = [dict(r, source=r["source"]) for r in done.values() if r.get("status") != "ok"]
    for row in done.values():
        status = row.get("status")
        if status == "ok":
            crops = row["crops"] if isinstance(row.get("crops"), int) else 0
            summary.crops[f"{row.get('split', 'train')}/{row['label']}"] += crops
        summary.no_face += status == "no_face"
        summary.errors += status == "error"
    try:
        with open(config.out / DONE, "a", encoding="utf-8") as log:
            for i, src in enumerate(todo, start=1):
                if stop.is_set():
                    summary.status = "stopped"
                    break
                try:
                    crops, status, detail = _crop_source(src, config, detector, stop)
                except Stopped:
                    summary.status = "stopped"  # this source is redone on the next run
                    break
                except VideoError as exc:
                    crops, status, detail = 0, "error", str(exc)
                except _WriteError:
                    raise
                except Exception as exc:  # noqa: BLE001 - an unreadable photo: skip it, say why
                    crops, status, detail = 0, "error", describe_error(exc)
                row = {"source": src.rel, "label": src.label, "split": src.split, "status": status,
                       "crops": crops, "detail": detail}
                log.write(json.dumps(row) + "\n")
                log.flush()
                summary.sources_done += 1
                if status == "ok":
                    summary.crops[f"{src.split}/{src.label}"] += crops
                else:
                    summary.no_face += status == "no_face"
                    summary.errors += status == "error"
                    skipped.append(row)
                emit(FolderProgress(i, len(todo), f"{src.label}/{src.rel}", crops, status, detail))
    except _WriteError as exc:
        summary.status, summary.error = "failed", f"{exc}; the crops written so far are kept, rerun to resume"
    except OSError as exc:
        summary.status, summary.error = "failed", f"cannot write in {config.out}: {describe_error(exc)}"
    summary.sources_done += summary.skipped_done_before
    summary.seconds = time.perf_counter() - start
    summary.report = str(config.out / REPORT)
    try:
        _write_report(config, summary, skipped)
    except OSError as exc:
        summary.status = "failed"
        summary.error = summary.error or f"cannot write the report {summary.report}: {describe_error(exc)}"
    emit(FolderFinished(summary))
    return summary


def _previous_settings(out: Path) -> dict[str, Any] | None:
    try:
        data = read_json(out / REPORT, expect=None)
    except (OSError, ValueError, RecursionError):
        return None
    settings = data.get("settings") if isinstance(data, dict) else None
    return settings if isinstance(settings, dict) else None


def _write_report(config: FolderConfig, summary: FolderSummary, skipped: list[dict[str, Any]]) -> None:
    report = {
        "tool": TOOL,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "root": str(config.root),
        "out": str(config.out),
        "settings": config.settings(),
        "naming": "<source>__<frame>-<face>.<format>; crops of one source share the part before '__'",
        "status": summary.status,
        "photos": summary.photos,
        "videos": summary.videos,
        "crops": dict(sorted(summary.crops.items())),
        "skipped": skipped,
    }
    path = config.out / REPORT
    write_text_atomic(path, json.dumps(report, indent=1))
