"""``dftui prepare openforensics``: cut the annotated faces out of the OpenForensics archive."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from dftui.cli.printer import log_text, make_printer
from dftui.cli.signals import stop_on_signals
from dftui.core.events import Event, LogMessage
from dftui.core.prepare import (
    FORMATS,
    SPLITS,
    PrepareConfig,
    PrepareFailed,
    PrepareFinished,
    PrepareStarted,
    SplitFinished,
    SplitProgress,
    SplitStarted,
)

PLAIN_PROGRESS_INTERVAL_S = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn a downloaded data set into real/ and fake/ face crops",
        description="Turn a downloaded data set into the real/ and fake/ face-crop folders dftui trains on.",
    )
    kinds = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    of = kinds.add_parser(
        "openforensics",
        help="OpenForensics: COCO annotations (<Split>_poly.json) + images -> face crops",
        description=(
            "Cut every annotated face of the OpenForensics archive into "
            "OUT/<split>_cropped/{real,fake}/<image>_<annotation id>.<format> "
            "(category 0 = real, 1 = fake). A rerun skips crops already written, so an interrupted "
            "run resumes. Missing or corrupt images, bad boxes and unknown categories are skipped "
            "and listed in OUT/prepare_report.json and OUT/prepare_skipped.csv."
        ),
    )
    of.add_argument("--root", type=Path, required=True,
                    help="folder the archive was extracted to (holds Train/Train_poly.json, ... "
                         "or Train_poly.json, ...)")
    of.add_argument("--out", type=Path, default=Path("processed_data"),
                    help="output folder (default: %(default)s)")
    of.add_argument("--splits", default=None,
                    help=f"comma-separated, from {','.join(SPLITS)} (default: every split found)")
    of.add_argument("--margin", type=float, default=0.0,
                    help="enlarge each box by this fraction of its size, e.g. 0.3 for 1.3x boxes "
                         "(default: 0, as the reference)")
    of.add_argument("--min-size", type=int, default=0,
                    help="skip faces narrower or shorter than this many pixels (default: 0)")
    of.add_argument("--format", choices=sorted(FORMATS), default="jpg",
                    help="crop file format (default: %(default)s, quality 95)")
    of.add_argument("--workers", type=int, default=None,
                    help="parallel images (default: one per CPU core, at most 8)")
    of.add_argument("--executor", choices=["thread", "process"], default="thread",
                    help="thread (default; Pillow decodes and encodes outside the GIL) or process")
    of.add_argument("--into-existing", action="store_true",
                    help="write into an output folder that already holds files prepare did not "
                         "write (never into the synthetic demo data)")
    of.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    of.set_defaults(func=run)
    fo = kinds.add_parser(
        "folder",
        help="any folder of labelled photos/videos (real/, fake/) -> face crops",
        description=(
            "Find the faces in every photo and video under ROOT/real and ROOT/fake (sub-folders "
            "too) with the detector `dftui predict` uses, and cut them with the same rule into "
            "OUT/train_cropped/{real,fake}/ (and OUT/val_cropped/ with --val-fraction), named "
            "<source>__<frame>-<face>.<format> so `dftui evaluate` can group the crops of one "
            "video. A rerun resumes; what was skipped and why is in OUT/prepare_folder_report.json."
        ),
    )
    fo.add_argument("--root", type=Path, required=True, help="the folder holding real/ and fake/")
    fo.add_argument("--out", type=Path, required=True,
                    help="output folder: new, empty, or one an earlier run of this command wrote")
    fo.add_argument("--frames", type=int, default=32, help="frames sampled per video (default: %(default)s)")
    fo.add_argument("--val-fraction", type=float, default=0.0,
                    help="send this fraction of the sources (whole videos, never single frames) "
                         "to OUT/val_cropped (default: 0)")
    fo.add_argument("--margin", type=float, default=0.0,
                    help="enlarge each face box by this fraction of its size (default: 0)")
    fo.add_argument("--min-face", type=int, default=40,
                    help="ignore faces smaller than this many pixels (default: %(default)s)")
    fo.add_argument("--format", choices=sorted(FORMATS), default="jpg", help="crop file format (default: %(default)s)")
    fo.set_defaults(func=run_folder)


def _started_line(e: PrepareStarted) -> str:
    s = e.settings
    return (f"preparing {', '.join(e.splits)} from {e.root} into {e.out} "
            f"(margin {s['margin']}, min size {s['min_size']}, {s['format']}, "
            f"{e.workers} {e.executor} worker{'' if e.workers == 1 else 's'})")


def _split_line(e: SplitStarted) -> str:
    where = e.images_dir or "images not found"
    return f"{e.split}: {e.images} images, {e.faces} faces ({e.annotations_path}; images in {where})"


def _final_lines(e: PrepareFinished) -> list[str]:
    lines = [f"report: {e.report_path} (skipped faces listed in {e.skipped_csv})"]
    dirs = e.output_dirs
    if "Train" in dirs and "Val" in dirs:
        lines.append(f"next: dftui train --train {dirs['Train']} --val {dirs['Val']}")
    if e.status == "stopped":
        lines.append("stopped before the end; run the same command again to resume")
    return lines


class PlainPrinter:
    """Lines for logs and pipes: a progress line every few seconds, the summary at the end."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        # The streams of the moment, not those of import time (a test's capture, a redirect).
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.last = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, PrepareStarted):
            self._line(_started_line(event))
        elif isinstance(event, SplitStarted):
            self.last = time.monotonic()
            self._line(_split_line(event))
        elif isinstance(event, SplitProgress):
            now = time.monotonic()
            if now - self.last >= PLAIN_PROGRESS_INTERVAL_S:
                self.last = now
                self._line(
                    f"{event.split}: {event.images_done}/{event.images} images, {event.written} new crops, "
                    f"{event.existing} already there, {event.skipped} skipped, {event.faces_per_s:.1f} faces/s"
                )
        elif isinstance(event, SplitFinished):
            self._line(event.summary.line())
        elif isinstance(event, LogMessage):
            self.err.write(f"{event.level}: {log_text(event)}\n")
            self.err.flush()
        elif isinstance(event, PrepareFinished):
            for line in _final_lines(event):
                self._line(line)

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


class RichPrinter:
    """A progress bar per split with crops, skips, speed and ETA."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images  {task.fields[info]}"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: Event) -> None:
        p = self.progress
        if isinstance(event, PrepareStarted):
            self.console.print(_started_line(event), highlight=False, markup=False)
            p.start()
        elif isinstance(event, SplitStarted):
            p.console.print(_split_line(event), highlight=False, markup=False)
            self.tasks[event.split] = p.add_task(event.split, total=max(1, event.images), info="")
        elif isinstance(event, SplitProgress) and event.split in self.tasks:
            p.update(self.tasks[event.split], completed=event.images_done, info=(
                f"{event.written} new, {event.existing} there, {event.skipped} skipped, "
                f"{event.faces_per_s:.1f} faces/s"
            ))
        elif isinstance(event, SplitFinished):
            summary = event.summary
            if summary.split in self.tasks:
                p.update(self.tasks[summary.split], completed=summary.images_done)
            style = "red" if summary.status == "failed" else "green"
            p.console.print(event.summary.line(), style=style, highlight=False, markup=False)
        elif isinstance(event, LogMessage):
            style = {"warning": "yellow", "error": "red"}.get(event.level, "dim")
            p.console.print(f"{event.level}: {log_text(event)}", style=style, highlight=False, markup=False)
        elif isinstance(event, (PrepareFinished, PrepareFailed)):
            p.stop()
            if isinstance(event, PrepareFinished):
                for line in _final_lines(event):
                    self.console.print(line, highlight=False, markup=False)

    def close(self) -> None:
        self.progress.stop()


def _splits(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(s.strip() for s in text.split(",") if s.strip())


def run(args: argparse.Namespace) -> int:
    from dftui.cli import fail
    from dftui.core.prepare import prepare_openforensics

    config = PrepareConfig(
        root=args.root,
        out=args.out,
        splits=_splits(args.splits),
        margin=args.margin,
        min_size=args.min_size,
        fmt=args.format,
        workers=args.workers,
        executor=args.executor,
        into_existing=args.into_existing,
    )
    stop = threading.Event()  # not train.StopFlag: that module pulls in torch for nothing
    printer = make_printer(args.plain, plain=PlainPrinter, rich=RichPrinter)

    try:
        with stop_on_signals(stop):
            final = prepare_openforensics(config, printer, stop)
    finally:
        printer.close()
    if isinstance(final, PrepareFailed):
        # Before any crop (bad root, no annotation file): a usage error. Later: the output failed.
        from dftui.cli.advice import with_advice
        from dftui.core.advice import decode_all

        message = with_advice(final.message, decode_all(final.fixes))  # flags, not fields
        return fail(message, 2 if final.report_path is None else 1)
    if final.status == "stopped":
        return 130
    if final.status == "partial":
        failed = [s for s in final.summaries if s.status == "failed"]
        return fail("; ".join(f"{s.split}: {s.error}" for s in failed), 1)
    return 0


def run_folder(args: argparse.Namespace) -> int:
    from dftui.cli import fail
    from dftui.core.prepare_folder import (
        FolderConfig,
        FolderFinished,
        FolderProgress,
        FolderStarted,
        prepare_folder,
    )

    config = FolderConfig(root=args.root, out=args.out, frames=args.frames, margin=args.margin,
                          min_size=args.min_face, fmt=args.format, val_fraction=args.val_fraction)
    stop = threading.Event()
    last = [0.0]

    def show(event: Event) -> None:
        if isinstance(event, FolderStarted):
            print(f"preparing {event.photos} photos and {event.videos} videos from {event.root} into "
                  f"{event.out} ({event.already_done} done by an earlier run)", flush=True)
        elif isinstance(event, FolderProgress):
            if event.status == "error" or event.status == "no_face":
                sys.stderr.write(f"skipped {event.source}: {event.detail}\n")
            now = time.monotonic()
            if now - last[0] >= 5.0 or event.done == event.total:
                last[0] = now
                print(f"{event.done}/{event.total} sources", flush=True)
        elif isinstance(event, LogMessage):
            sys.stderr.write(f"{event.level}: {log_text(event)}\n")
        elif isinstance(event, FolderFinished) and (event.summary.status != "failed" or event.summary.sources_done):
            print(event.summary.line(), flush=True)
            print(f"report: {event.summary.report}", flush=True)

    with stop_on_signals(stop):
        summary = prepare_folder(config, show, stop)
    if summary.status == "failed":
        return fail(summary.error, 1 if summary.sources_done else 2)
    if summary.status == "stopped":
        print("stopped before the end; run the same command again to resume")
        return 130
    train = Path(config.out) / "train_cropped"
    val = Path(config.out) / "val_cropped"
    if val.is_dir():
        print(f"next: dftui train --train {train} --val {val}")
    return 0
