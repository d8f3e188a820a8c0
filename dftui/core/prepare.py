"""OpenForensics COCO annotations -> one face crop per annotation, in the reference layout.

``prepare_openforensics(config, emit, stop)`` reads each split's ``<Split>_poly.json`` and writes
``<out>/<split>_cropped/{real,fake}/<image stem>_<annotation id>.<fmt>``. Names are
deterministic, so a rerun skips crops already written and an interrupted run resumes where it
stopped; every crop is written to a hidden temporary name and renamed, so a killed run never
leaves half a crop under a final name. Problems in the data (missing or corrupt images,
degenerate boxes, unknown categories) are counted and listed in ``prepare_report.json`` and
``prepare_skipped.csv`` in the output folder; none of them stops the run.

Boxes are in stored pixel coordinates (the way OpenForensics annotated them), so images are
cropped as stored, without applying their EXIF orientation.

Like ``train.fit`` it never raises for expected failures: it emits events (frozen dataclasses)
and returns ``PrepareFinished`` or ``PrepareFailed``. No Textual, no Rich, no torch."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageFile

from dftui.core.advice import Fix, encode_all
from dftui.core.backbones import CLASS_NAMES
from dftui.core.errors import describe_error
from dftui.core.events import (
    Emit,
    LogMessage,
    PrepareFailed,
    PrepareFinished,
    PrepareStarted,
    SplitFinished,
    SplitProgress,
    SplitStarted,
    SplitSummary,
)
from dftui.core.files import atomic_write, check_writable, write_text_atomic
from dftui.core.machine import default_workers

# Split name as distributed -> output folder name used by the reference project.
SPLITS: dict[str, str] = {
    "Train": "train_cropped",
    "Val": "val_cropped",
    "Test-Dev": "test_dev_cropped",
    "Test-Challenge": "test_challenge_cropped",
}
DEFAULT_CATEGORIES: dict[int, str] = {0: "real", 1: "fake"}  # OpenForensics: 0 = real, 1 = fake
FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    # JPEG at 95 like the reference's crops; PNG at a low zlib level (lossless either way, and
    # level 1 is several times faster to write than the default 6 for a few % more disk).
    "jpg": ("JPEG", {"quality": 95}),
    "png": ("PNG", {"compress_level": 1}),
}
REPORT_JSON = "prepare_report.json"
FOLDER_REPORT_JSON = "prepare_folder_report.json"  # dftui prepare folder's report (core/prepare_folder)
REPORT_CSV = "prepare_skipped.csv"
PART_SUFFIX = ".part"
PROGRESS_INTERVAL_S = 0.1  # at most ~10 progress events a second

# Skip reasons (the report's vocabulary).
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
DEGENERATE_BOX = "degenerate_box"
OUTSIDE_IMAGE = "outside_image"
TOO_SMALL = "too_small"
UNKNOWN_CATEGORY = "unknown_category"
UNKNOWN_IMAGE = "unknown_image"
DUPLICATE_ID = "duplicate_annotation_id"
BAD_ID = "unusable_annotation_id"
REASONS = (
    MISSING_IMAGE, UNREADABLE_IMAGE, DEGENERATE_BOX, OUTSIDE_IMAGE, TOO_SMALL,
    UNKNOWN_CATEGORY, UNKNOWN_IMAGE, DUPLICATE_ID, BAD_ID,
)
MAX_ID_CHARS = 100  # the id is part of the crop's file name (255 bytes at most)

# A truncated file is a corrupt image to report, not half a face to train on.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class PrepareError(ValueError):
    """Input that cannot be prepared at all; the message says what, where and what to do,
    ``fixes`` the settings out of it (each surface phrases them)."""

    def __init__(self, message: str, fixes: tuple[Fix, ...] = ()) -> None:
        super().__init__(message)
        self.fixes = fixes


class _WriteError(Exception):
    """The output cannot be written (disk full, permissions): stops the run, unlike bad data."""


class Stoppable(Protocol):
    def is_set(self) -> bool: ...


# --------------------------------------------------------------------------- config / events


@dataclass(frozen=True)
class PrepareConfig:
    root: Path
    out: Path = Path("processed_data")
    splits: tuple[str, ...] | None = None  # None: every split whose annotation file is found
    margin: float = 0.0  # enlarge each box by this fraction of its width/height (0.3 = 1.3x)
    min_size: int = 0  # skip faces whose clamped box is narrower or shorter than this (pixels)
    fmt: str = "jpg"  # "jpg" | "png"
    workers: int | None = None  # None: one per CPU core
    executor: str = "thread"  # "thread" | "process"
    into_existing: bool = False  # write into a folder holding files prepare did not write

    def validate(self) -> None:
        if self.fmt not in FORMATS:
            raise PrepareError(f"format {self.fmt!r} is not supported; use one of: {', '.join(FORMATS)}")
        if not (0.0 <= self.margin <= 10.0) or math.isnan(self.margin):
            raise PrepareError(f"margin {self.margin} is out of range; use a fraction from 0 to 10 (0.3 = 30% larger)")
        if self.min_size < 0:
            raise PrepareError(f"min size {self.min_size} is negative; use 0 or more pixels")
        if self.workers is not None and self.workers < 1:
            raise PrepareError(f"workers must be at least 1 (got {self.workers})")
        if self.executor not in ("thread", "process"):
            raise PrepareError(f"executor {self.executor!r} is not 'thread' or 'process'")
        if self.splits is not None:
            unknown = [s for s in self.splits if _canonical_split(s) is None]
            if unknown:
                raise PrepareError(
                    f"unknown split {', '.join(map(repr, unknown))}; choose from {', '.join(SPLITS)}"
                )
            if not self.splits:
                raise PrepareError(f"no split chosen; choose from {', '.join(SPLITS)}")

    def settings(self) -> dict[str, Any]:
        """What decides the pixels of a crop: recorded so a rerun can tell it differs."""
        return {"margin": self.margin, "min_size": self.min_size, "format": self.fmt}


def _canonical_split(name: str) -> str | None:
    key = name.strip().lower().replace("_", "-")
    for split in SPLITS:
        if split.lower() == key or SPLITS[split] == name.strip().lower():
            return split
    return None



# --------------------------------------------------------------------------- finding files


def annotation_candidates(root: Path, split: str) -> list[Path]:
    """Where a split's COCO file may sit: beside the images as distributed
    (``Train/Train_poly.json``), at the root, or in an annotations folder."""
    name = f"{split}_poly.json"
    return [
        root / name,
        root / split / name,
        root / "Annotations" / name,
        root / "annotations" / name,
        root / split / "Annotations" / name,
    ]


def find_annotations(root: Path, split: str) -> Path | None:
    for path in annotation_candidates(root, split):
        if path.is_file():
            return path
    return None


def discover_splits(root: Path) -> dict[str, Path]:
    """Split -> annotation file, for the splits found under ``root`` (in the canonical order)."""
    found = {}
    for split in SPLITS:
        path = find_annotations(root, split)
        if path is not None:
            found[split] = path
    return found


class ImageResolver:
    """Maps a COCO ``file_name`` to a file on disk, whatever the layout.

    Tries the name as given and with its leading folders removed, against the root, the
    annotation file's folder and the split folders the archive unpacks to
    (``Train/Train/*.jpg``). The first rule that works is tried first for the next image,
    so a large split costs about one ``stat`` per image. Picklable for process pools."""

    def __init__(self, root: Path, json_dir: Path, split: str) -> None:
        bases = [root, json_dir, json_dir / split, root / split, root / split / split,
                 root / "Images" / split, root / "images" / split, root / "Images", root / "images"]
        seen: list[Path] = []
        for b in bases:
            if b not in seen:
                seen.append(b)
        self.bases = seen
        self.preferred: tuple[int, int] | None = None  # (base index, leading parts stripped)

    def _tries(self, parts: Sequence[str]) -> Iterable[tuple[int, int]]:
        if self.preferred is not None:
            yield self.preferred
        for strip in range(len(parts)):
            for b in range(len(self.bases)):
                yield (b, strip)

    def resolve(self, file_name: str) -> Path | None:
        parts = [p for p in file_name.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            return None
        if os.path.isabs(file_name) and os.path.isfile(file_name):
            return Path(file_name)
        for b, strip in self._tries(parts):
            if strip >= len(parts):
                continue
            candidate = self.bases[b].joinpath(*parts[strip:])
            if candidate.is_file():
                self.preferred = (b, strip)
                return candidate
        return None


# --------------------------------------------------------------------------- per-image work


@dataclass(frozen=True)
class FaceJob:
    ann_id: str
    label: str  # "real" | "fake"
    box: tuple[float, float, float, float]  # x, y, w, h as annotated


@dataclass(frozen=True)
class ImageJob:
    file_name: str
    stem: str
    width: int | None  # from the annotation file
    height: int | None
    faces: tuple[FaceJob, ...]


@dataclass(frozen=True)
class CropSettings:
    out_dir: str  # <out>/<split>_cropped
    fmt: str
    margin: float
    min_size: int


@dataclass
class ImageResult:
    file_name: str
    missing: bool = False
    unreadable: bool = False
    written: list[str] = field(default_factory=list)  # labels of crops written
    existing: list[str] = field(default_factory=list)  # labels of crops already present
    clamped: int = 0
    size_mismatch: bool = False
    exif_rotated: bool = False
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (ann_id, reason, detail)


def crop_name(stem: str, ann_id: str, fmt: str) -> str:
    return f"{stem}_{ann_id}.{fmt}"


def _existing_crop(folder: str, stem: str, ann_id: str) -> bool:
    # Either format counts: switching --format on a rerun must not put the same face in the
    # data set twice.
    return any(os.path.exists(os.path.join(folder, crop_name(stem, ann_id, f))) for f in FORMATS)


def crop_box(box: tuple[float, float, float, float], margin: float, width: int, height: int
             ) -> tuple[tuple[int, int, int, int] | None, tuple[int, int, int, int] | None, bool]:
    """(crop box with margin, face box without margin, clamped?) as integer pixel edges,
    clamped to the image; None where nothing of the box lies inside it."""
    x, y, w, h = box

    def clamp(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[int, int, int, int] | None, bool]:
        # Outer edges: floor the top-left, ceil the bottom-right, so a box never loses a
        # fractional pixel of the face.
        cx0, cy0 = max(0, math.floor(x0)), max(0, math.floor(y0))
        cx1, cy1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
        was_clamped = x0 < 0 or y0 < 0 or x1 > width or y1 > height
        if cx1 <= cx0 or cy1 <= cy0:
            return None, was_clamped
        return (cx0, cy0, cx1, cy1), was_clamped

    face, face_clamped = clamp(x, y, x + w, y + h)
    dx, dy = w * margin / 2, h * margin / 2
    crop, crop_clamped = clamp(x - dx, y - dy, x + w + dx, y + h + dy)
    return crop, face, face_clamped or crop_clamped


def _save_atomic(img: Image.Image, path: str, fmt: str) -> None:
    pil_format, options = FORMATS[fmt]
    # The temporary file is hidden, so the data scanner never lists it, and ends in
    # PART_SUFFIX, so a rerun sweeps up what a killed run left. No fsync: a rerun after a
    # crash rewrites crops anyway, and one per crop would cost more than the encoding.
    with atomic_write(path, durable=False, suffix=PART_SUFFIX) as fh:
        img.save(fh, format=pil_format, **options)


def process_image(job: ImageJob, resolver: ImageResolver, settings: CropSettings) -> ImageResult:
    """Crop every pending face of one image. Data problems become skip records; an output
    that cannot be written raises ``_WriteError``."""
    result = ImageResult(job.file_name)
    pending = []
    for face in job.faces:
        folder = os.path.join(settings.out_dir, face.label)
        if _existing_crop(folder, job.stem, face.ann_id):
            result.existing.append(face.label)
        else:
            pending.append(face)
    if not pending:
        return result  # everything done by an earlier run: do not even open the image
    path = resolver.resolve(job.file_name)
    if path is None:
        result.missing = True
        result.skipped = [(f.ann_id, MISSING_IMAGE, job.file_name) for f in pending]
        return result
    try:
        opened = Image.open(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        result.unreadable = True
        result.skipped = [(f.ann_id, UNREADABLE_IMAGE, f"{path}: {describe_error(exc)}") for f in pending]
        return result
    try:  # closed at the end: Pillow drops the pixels of a closed image, so crop first
        width, height = opened.size
        try:
            result.exif_rotated = opened.getexif().get(0x0112, 1) not in (1, None)
        except Exception:  # a broken EXIF block does not make the pixels unusable
            pass
        try:
            opened.load()  # decode once; every face of the image is cut from this
            img = opened if opened.mode == "RGB" else opened.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            result.unreadable = True
            result.skipped = [(f.ann_id, UNREADABLE_IMAGE, f"{path}: {describe_error(exc)}") for f in pending]
            return result
        if job.width and job.height and (job.width, job.height) != (width, height):
            result.size_mismatch = True
        for face in pending:
            crop, face_box, clamped = crop_box(face.box, settings.margin, width, height)
            if crop is None or face_box is None:
                result.skipped.append((face.ann_id, OUTSIDE_IMAGE, f"box {list(face.box)} outside {width}x{height}"))
                continue
            fw, fh = face_box[2] - face_box[0], face_box[3] - face_box[1]
            if min(fw, fh) < settings.min_size:
                result.skipped.append((face.ann_id, TOO_SMALL, f"{fw}x{fh} px < --min-size {settings.min_size}"))
                continue
            result.clamped += int(clamped)
            target = os.path.join(settings.out_dir, face.label, crop_name(job.stem, face.ann_id, settings.fmt))
            try:
                _save_atomic(img.crop(crop), target, settings.fmt)
            except OSError as exc:
                raise _WriteError(f"cannot write {target}: {describe_error(exc)}") from exc
            result.written.append(face.label)
    finally:
        opened.close()
    return result


def _process_chunk(jobs: list[ImageJob], resolver: ImageResolver, settings: CropSettings) -> list[ImageResult]:
    return [process_image(job, resolver, settings) for job in jobs]


# --------------------------------------------------------------------------- reading COCO


@dataclass
class ParsedSplit:
    jobs: list[ImageJob]
    images: int
    faces: int
    skipped: list[tuple[str, str, str, str]]  # (file_name, ann_id, reason, detail), no image needed


def _label_map(categories: Any) -> dict[int, str]:
    """OpenForensics says 0 = real, 1 = fake. Category names, when they say real/fake, win."""
    mapping = dict(DEFAULT_CATEGORIES)
    if isinstance(categories, list):
        named = {}
        for c in categories:
            if isinstance(c, dict) and isinstance(c.get("id"), int):
                name = str(c.get("name", "")).strip().lower()
                if name in CLASS_NAMES:
                    named[c["id"]] = name
        if sorted(named.values()) == sorted(CLASS_NAMES):
            mapping = named
    return mapping


def _as_box(value: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        box = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in box):
        return None
    return box  # type: ignore[return-value]


def _safe_stem(file_name: str) -> str:
    stem = Path(file_name.replace("\\", "/")).stem or "image"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def _bad_id(ann_id: str) -> str | None:
    """Why an annotation id cannot be part of a file name, or None."""
    if ann_id in ("", ".", ".."):
        return f"annotation id {ann_id!r} cannot name a file"
    if any(c in ann_id for c in "/\\\0") or (os.altsep and os.altsep in ann_id):
        return "annotation id contains a path separator"
    if len(ann_id.encode("utf-8", "surrogateescape")) > MAX_ID_CHARS:
        return f"annotation id longer than {MAX_ID_CHARS} bytes"
    return None


def parse_coco(data: Any, source: Path) -> ParsedSplit:
    """Group annotations by image; skip records for what can be judged without the pixels."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("annotations"), list
    ):
        raise PrepareError(
            f"{source} is not a COCO annotation file (it needs 'images' and 'annotations' lists)"
        )
    labels = _label_map(data.get("categories"))
    images: dict[Any, dict[str, Any]] = {}
    order: list[Any] = []
    for img in data["images"]:
        if isinstance(img, dict) and "id" in img and isinstance(img.get("file_name"), str):
            if img["id"] not in images:
                order.append(img["id"])
            images[img["id"]] = img
    faces: dict[Any, list[FaceJob]] = {i: [] for i in order}
    skipped: list[tuple[str, str, str, str]] = []
    seen_ids: set[str] = set()
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            skipped.append(("", f"#{index}", DEGENERATE_BOX, "annotation is not an object"))
            continue
        ann_id = str(ann.get("id", f"n{index}"))
        why_bad = _bad_id(ann_id)
        if why_bad:
            # The id names the crop file: a "/" would point into a folder that does not
            # exist and fail the whole split. Skip this annotation and report it.
            skipped.append(("", ann_id[:MAX_ID_CHARS], BAD_ID, why_bad))
            continue
        image = images.get(ann.get("image_id"))
        file_name = image["file_name"] if image else ""
        if image is None:
            skipped.append(("", ann_id, UNKNOWN_IMAGE, f"image_id {ann.get('image_id')!r} is not in 'images'"))
            continue
        if ann_id in seen_ids:
            skipped.append((file_name, ann_id, DUPLICATE_ID, "annotation id used twice; the first is kept"))
            continue
        seen_ids.add(ann_id)
        label = labels.get(ann.get("category_id")) if isinstance(ann.get("category_id"), int) else None
        if label is None:
            skipped.append((file_name, ann_id, UNKNOWN_CATEGORY, f"category_id {ann.get('category_id')!r}"))
            continue
        box = _as_box(ann.get("bbox"))
        if box is None or box[2] <= 0 or box[3] <= 0:
            skipped.append((file_name, ann_id, DEGENERATE_BOX, f"bbox {ann.get('bbox')!r}"))
            continue
        faces[image["id"]].append(FaceJob(ann_id, label, box))

    def dim(v: Any) -> int | None:
        return v if isinstance(v, int) and v > 0 else None

    jobs = [
        ImageJob(images[i]["file_name"], _safe_stem(images[i]["file_name"]),
                 dim(images[i].get("width")), dim(images[i].get("height")), tuple(faces[i]))
        for i in order
    ]
    return ParsedSplit(jobs, len(order), len(data["annotations"]), skipped)


def _drop_polygons(obj: dict[str, Any]) -> dict[str, Any]:
    # The *_poly.json files carry a segmentation polygon per face; dropping each one as soon as
    # it is decoded keeps the peak memory near the size of the file rather than several times it.
    obj.pop("segmentation", None)
    return obj


def load_coco(path: Path) -> ParsedSplit:
    try:
        with open(path, "rb") as fh:
            data = json.load(fh, object_hook=_drop_polygons)
    except json.JSONDecodeError as exc:
        raise PrepareError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); re-extract it from the archive"
        ) from None
    except RecursionError:
        raise PrepareError(
            f"{path} is nested too deeply to be an annotation file; re-extract it from the archive"
        ) from None
    except UnicodeDecodeError:
        raise PrepareError(f"{path} is not a text JSON file; re-extract it from the archive") from None
    except OSError as exc:
        raise PrepareError(f"cannot read {path}: {describe_error(exc)}") from None
    return parse_coco(data, path)


# --------------------------------------------------------------------------- report


def _read_report(path: Path) -> dict[str, Any]:
    """The previous report, untrusted (a crash, an edit): unusable parts are dropped, so a
    rerun never fails on them; a split entry keeps only rows that are objects."""
    from dftui.core.untrusted import read_json

    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {"splits": {}}
    splits = data.get("splits")
    clean: dict[str, Any] = {}
    for name, entry in (splits.items() if isinstance(splits, dict) else ()):
        if isinstance(entry, dict):
            rows = entry.get("skipped")
            entry["skipped"] = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
            clean[name] = entry
    data["splits"] = clean
    return data


def write_report(out: Path, config: PrepareConfig, entries: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    """Merge this run's splits into the report (other splits' entries are kept), then rewrite
    the skipped-faces CSV from it."""
    path, csv_path = out / REPORT_JSON, out / REPORT_CSV
    report = _read_report(path)
    report.update({
        "tool": "dftui prepare openforensics",
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "root": str(config.root),
        "out": str(out),
        "reasons": {
            MISSING_IMAGE: "the image file named in the annotations was not found",
            UNREADABLE_IMAGE: "the image file could not be decoded (corrupt, truncated, not an image)",
            DEGENERATE_BOX: "the bbox is malformed or has zero or negative width/height",
            OUTSIDE_IMAGE: "the bbox lies wholly outside the image",
            TOO_SMALL: "the face is smaller than --min-size",
            UNKNOWN_CATEGORY: "category_id is neither 0 (real) nor 1 (fake)",
            UNKNOWN_IMAGE: "image_id is not listed in 'images'",
            DUPLICATE_ID: "the annotation id was used twice",
            BAD_ID: "the annotation id cannot be part of a file name (a path separator, too long)",
        },
    })
    report["splits"].update(entries)
    write_text_atomic(path, json.dumps(report, indent=1))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["split", "image", "annotation_id", "reason", "detail"])
    for split, entry in report["splits"].items():
        for row in entry.get("skipped", []):
            writer.writerow([split, row.get("image", ""), row.get("annotation_id", ""),
                             row.get("reason", ""), row.get("detail", "")])
    write_text_atomic(csv_path, buf.getvalue())
    return path, csv_path


# --------------------------------------------------------------------------- the job


class _SplitRun:
    def __init__(self, config: PrepareConfig, split: str, ann_path: Path, emit: Emit,
                 stop: Stoppable, workers: int) -> None:
        self.config, self.split, self.ann_path = config, split, ann_path
        self.emit, self.stop, self.workers = emit, stop, workers
        out_dir = config.out / SPLITS[split]
        self.summary = SplitSummary(split=split, output_dir=str(out_dir), annotations_path=str(ann_path))
        self.skipped_rows: list[dict[str, str]] = []
        self.reasons: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()

    def _skip(self, file_name: str, ann_id: str, reason: str, detail: str) -> None:
        self.reasons[reason] += 1
        self.skipped_rows.append({"image": file_name, "annotation_id": ann_id, "reason": reason, "detail": detail})

    def _add(self, r: ImageResult) -> None:
        s = self.summary
        s.images_done += 1
        s.images_missing += int(r.missing)
        s.images_unreadable += int(r.unreadable)
        s.written += len(r.written)
        s.existing += len(r.existing)
        s.clamped += r.clamped
        s.size_mismatch += int(r.size_mismatch)
        s.exif_rotated += int(r.exif_rotated)
        self.labels.update(r.written)
        self.labels.update(r.existing)
        for ann_id, reason, detail in r.skipped:
            self._skip(r.file_name, ann_id, reason, detail)

    def run(self) -> SplitSummary:
        start = time.perf_counter()
        s = self.summary
        parsed = load_coco(self.ann_path)
        s.images, s.faces = parsed.images, parsed.faces
        for file_name, ann_id, reason, detail in parsed.skipped:
            self._skip(file_name, ann_id, reason, detail)
        out_dir = Path(s.output_dir)
        try:
            for label in CLASS_NAMES:
                (out_dir / label).mkdir(parents=True, exist_ok=True)
                _remove_stale_parts(out_dir / label)
        except OSError as exc:
            raise _WriteError(f"cannot create {out_dir}/{{real,fake}}: {describe_error(exc)}") from exc
        resolver = ImageResolver(self.config.root, self.ann_path.parent, self.split)
        images_dir = ""
        for job in parsed.jobs[:20]:  # learn the layout once, so workers start with the right rule
            found = resolver.resolve(job.file_name)
            if found is not None:
                images_dir = str(found.parent)
                break
        self.emit(SplitStarted(self.split, str(self.ann_path), images_dir, str(out_dir), s.images, s.faces))
        if parsed.jobs and not images_dir:
            self.emit(LogMessage("warning", (
                f"{self.split}: none of the first images of {self.ann_path.name} was found "
                f"(e.g. {parsed.jobs[0].file_name!r} under {self.config.root}); "
                "the archive's images should sit beside the annotation file, e.g. Train/Train/*.jpg"
            )))
        settings = CropSettings(str(out_dir), self.config.fmt, self.config.margin, self.config.min_size)
        status = self._run_pool(parsed.jobs, resolver, settings, start)
        s.status = status
        if s.exif_rotated:
            self.emit(LogMessage("info", (
                f"{self.split}: {s.exif_rotated} image(s) carry an EXIF rotation; they were cropped as "
                "stored, the coordinates the boxes are given in")))
        if s.size_mismatch:
            self.emit(LogMessage("warning", (
                f"{self.split}: {s.size_mismatch} image(s) differ in size from the annotation's "
                "width/height; their boxes were clamped to the real size: check those crops")))
        s.real, s.fake = self.labels["real"], self.labels["fake"]
        s.skipped = {k: v for k, v in sorted(self.reasons.items())}
        s.seconds = time.perf_counter() - start
        return s

    def _run_pool(self, jobs: list[ImageJob], resolver: ImageResolver, settings: CropSettings, start: float) -> str:
        use_processes = self.config.executor == "process" and self.workers > 1
        # Threads get one image per task (Pillow releases the GIL while decoding and encoding);
        # processes get chunks, so pickling is paid per chunk rather than per image.
        chunk = 8 if use_processes else 1
        chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
        window = self.workers * 4  # bounded in flight: a stop request takes effect quickly
        pool: Executor = (ProcessPoolExecutor(self.workers) if use_processes
                          else ThreadPoolExecutor(self.workers, thread_name_prefix="dftui-prepare"))
        last_emit = 0.0
        pending: set[Future[list[ImageResult]]] = set()
        it = iter(chunks)
        stopped = False
        try:
            while True:
                while not stopped and len(pending) < window:
                    if self.stop.is_set():
                        stopped = True
                        break
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    pending.add(pool.submit(_process_chunk, nxt, resolver, settings))
                if not pending:
                    break
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for fut in done:
                    for result in fut.result():  # a _WriteError surfaces here
                        self._add(result)
                if self.stop.is_set():
                    stopped = True
                now = time.perf_counter()
                if now - last_emit >= PROGRESS_INTERVAL_S or not pending:
                    last_emit = now
                    self._progress(now - start)
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        return "stopped" if stopped and self.summary.images_done < len(jobs) else "finished"

    def _progress(self, elapsed: float) -> None:
        s = self.summary
        rate_images = s.images_done / elapsed if elapsed > 0 else 0.0
        eta = (s.images - s.images_done) / rate_images if rate_images > 0 else None
        self.emit(SplitProgress(
            self.split, s.images_done, s.images, s.written, s.existing, sum(self.reasons.values()),
            elapsed, s.written / elapsed if elapsed > 0 else 0.0, eta,
        ))


def _remove_stale_parts(folder: Path) -> None:
    """Temporary files a killed run left behind (never a finished crop)."""
    for entry in os.scandir(folder):
        if entry.name.startswith(".") and entry.name.endswith(PART_SUFFIX):
            try:
                os.remove(entry.path)
            except OSError:
                pass


OUTPUT_MARKER = ".dftui-output.json"  # {"tool": ...}: this folder's files were written by dftui
OPENFORENSICS_TOOL = "dftui prepare openforensics"


def written_by(out: Path) -> str | None:
    """The dftui tool that wrote ``out`` (its marker, or an older prepare report), if any.
    Both files are untrusted: anything unreadable counts as not ours."""
    from dftui.core.untrusted import read_json

    # The reports name their tool too: folders written before the marker existed still count.
    for name in (OUTPUT_MARKER, REPORT_JSON, FOLDER_REPORT_JSON):
        try:
            tool = read_json(out / name).get("tool")
        except (OSError, ValueError):
            continue
        if isinstance(tool, str) and tool:
            return tool
    return None


def output_folder_problem(out: Path, tool: str, allow_existing: bool = False) -> str | None:
    """May ``tool`` write a data set into ``out``? None when it may: the folder is new, empty,
    or was written by the same tool (a rerun). Otherwise the reason, for a message:

    - it holds the synthetic demo set (a SYNTHETIC_DEMO_DATA.txt marker in it or in one of its
      folders): real data must never be mixed into it, whatever ``allow_existing`` says;
    - it holds files this tool did not write, unless ``allow_existing`` (an explicit request).

    One check for every tool that writes data sets (``dftui prepare ...``), so they all
    follow the same rule; the caller adds how to choose another folder or allow it."""
    from dftui.core.demo import DEMO_MARKER

    out = Path(out)
    if not out.exists():
        return None
    if not out.is_dir():
        return f"{out} is a file, not a folder"
    try:
        entries = sorted(e for e in out.iterdir() if not e.name.startswith("."))
    except OSError as exc:
        return f"{out} cannot be read ({describe_error(exc)})"
    demo = [e for e in [out, *entries] if e.is_dir() and (e / DEMO_MARKER).is_file()]
    if demo:
        names = ", ".join(f"{e.name}/{DEMO_MARKER}" for e in demo[:3])
        return (f"{out} holds the synthetic demo data ({names}); real data must not be mixed "
                "with it (delete the demo folders first, or use another folder)")
    if not entries or allow_existing:
        return None
    if written_by(out) == tool:
        return None
    names = ", ".join(e.name + ("/" if e.is_dir() else "") for e in entries[:3])
    more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
    return f"{out} already holds files {tool} did not write ({names}{more})"


def suggest_output_folder(out: Path, label: str) -> Path:
    """A free folder name beside ``out`` for a new data set: processed_data-openforensics, -2, ..."""
    out = Path(out)
    candidate = out.with_name(f"{out.name}-{label}")
    n = 2
    while candidate.exists() and output_folder_problem(candidate, "") is not None:
        candidate = out.with_name(f"{out.name}-{label}-{n}")
        n += 1
    return candidate


def mark_output_folder(out: Path, tool: str) -> None:
    """Record that ``tool`` writes ``out`` (before the first file), so a rerun after a stop
    or a crash is recognised as its own."""
    marker = Path(out) / OUTPUT_MARKER
    if written_by(out) != tool:
        write_text_atomic(marker, json.dumps({
            "tool": tool, "created": datetime.now(UTC).isoformat(timespec="seconds")}))


def _check_out(out: Path) -> None:
    try:
        check_writable(out)
    except OSError as exc:
        raise PrepareError(f"cannot write to the output folder {out}: {describe_error(exc)}",
                           (Fix("data_out"),)) from None


def plan_splits(config: PrepareConfig) -> dict[str, Path]:
    """Split -> annotation file for this run, or PrepareError saying what is missing where."""
    root = config.root
    if not root.exists():
        raise PrepareError(
            f"dataset root {root} does not exist; give the folder the OpenForensics archive was extracted to"
        )
    if not root.is_dir():
        raise PrepareError(f"dataset root {root} is a file; give the folder the OpenForensics archive was extracted to")
    if config.splits is None:
        found = discover_splits(root)
        if not found:
            raise PrepareError(
                f"no OpenForensics annotation file (Train_poly.json, Val_poly.json, ...) under {root}; "
                "looked in the root, in <Split>/ and in Annotations/"
            )
        return found
    planned = {}
    for name in config.splits:
        split = _canonical_split(name)
        assert split is not None  # validate() ran
        path = find_annotations(root, split)
        if path is None:
            where = ", ".join(str(p.relative_to(root)) for p in annotation_candidates(root, split)[:2])
            raise PrepareError(f"{split}: no {split}_poly.json under {root} (looked for {where}, ...)")
        planned[split] = path
    return planned


def prepare_openforensics(
    config: PrepareConfig, emit: Emit, stop: Stoppable | None = None
) -> PrepareFinished | PrepareFailed:
    """Crop every split; returns the final event (also emitted). Never raises for bad input."""
    stop = stop if stop is not None else threading.Event()
    start = time.perf_counter()
    config = replace(config, root=Path(config.root).expanduser(), out=Path(config.out).expanduser())
    try:
        config.validate()
        planned = plan_splits(config)
        why = output_folder_problem(config.out, OPENFORENSICS_TOOL, config.into_existing)
        if why:
            other = suggest_output_folder(config.out, "openforensics")
            allow = "" if "demo data" in why else ", or --into-existing to add to it anyway"
            raise PrepareError(f"{why}; choose a new folder with --out (e.g. {other}){allow}")
        _check_out(config.out)
        mark_output_folder(config.out, OPENFORENSICS_TOOL)
    except OSError as exc:
        failed = PrepareFailed(f"cannot write to the output folder {config.out}: {describe_error(exc)}")
        emit(failed)
        return failed
    except PrepareError as exc:
        failed = PrepareFailed(str(exc), fixes=encode_all(exc.fixes))
        emit(failed)
        return failed
    workers = config.workers or default_workers(spare=0)
    previous = _read_report(config.out / REPORT_JSON)["splits"]
    emit(PrepareStarted(str(config.root), str(config.out), list(planned), config.settings(), workers, config.executor))
    summaries: list[SplitSummary] = []
    entries: dict[str, dict[str, Any]] = {}
    failure: str | None = None
    for split, ann_path in planned.items():
        if stop.is_set():
            break
        before = previous.get(split, {}).get("settings")
        if isinstance(before, dict) and before != config.settings():
            emit(LogMessage("warning", (
                f"{split}: crops already in {config.out / SPLITS[split]} were made with {before}; "
                f"this run uses {config.settings()} for new crops only; a new output folder redoes them all"
            ), fixes=encode_all((Fix("data_out"),))))
        job = _SplitRun(config, split, ann_path, emit, stop, workers)
        try:
            summary = job.run()
        except PrepareError as exc:  # this split's annotation file is unusable; the others may be fine
            summary = job.summary
            summary.status, summary.error = "failed", str(exc)
            summary.seconds = time.perf_counter() - start
        except _WriteError as exc:
            summary = job.summary
            summary.status, summary.error = "failed", str(exc)
            summary.real, summary.fake = job.labels["real"], job.labels["fake"]
            summary.skipped = dict(sorted(job.reasons.items()))
            failure = f"{exc}; the crops written so far are kept, rerun to resume"
        summaries.append(summary)
        entries[split] = {"settings": config.settings(), "summary": summary.to_dict(), "skipped": job.skipped_rows}
        emit(SplitFinished(summary))
        if failure:
            break
    try:
        report, skipped_csv = write_report(config.out, config, entries)
    except OSError as exc:
        failure = failure or f"cannot write the report in {config.out}: {describe_error(exc)}"
        report, skipped_csv = config.out / REPORT_JSON, config.out / REPORT_CSV
    if failure:
        failed = PrepareFailed(failure, str(report))
        emit(failed)
        return failed
    if stop.is_set() and (len(summaries) < len(planned) or any(s.status == "stopped" for s in summaries)):
        status = "stopped"
    elif any(s.status == "failed" for s in summaries):
        status = "partial"
    else:
        status = "finished"
    final = PrepareFinished(status, summaries, str(report), str(skipped_csv), time.perf_counter() - start)
    emit(final)
    return final
