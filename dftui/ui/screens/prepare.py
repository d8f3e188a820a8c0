"""Prepare: cut the OpenForensics archive into face crops, or write the synthetic demo set.

The job runs ``dftui.core.prepare.prepare_openforensics`` in a thread worker; its events
arrive as messages (progress messages merge when the UI falls behind). When the training and
validation crops are ready, their folders are handed to the Setup screen (see ``use_in_setup``).

Also here: ``DemoDataOffer``, the question the dashboard asks when the default data folders
are empty, and ``maybe_offer_demo_data(app)`` that asks it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Log, ProgressBar, Select, Static
from textual.worker import get_current_worker

from dftui.core.advice import decode_all
from dftui.core.demo import (
    DEFAULT_DATA_ROOT,
    DEMO_N,
    DEMO_SIZE,
    DemoDataError,
    default_folders_empty,
    make_demo_data,
)
from dftui.core.errors import unexpected_error
from dftui.core.events import Event, LogMessage
from dftui.core.prepare import (
    FORMATS,
    OPENFORENSICS_TOOL,
    SPLITS,
    PrepareConfig,
    PrepareError,
    PrepareFailed,
    PrepareFinished,
    PrepareStarted,
    SplitFinished,
    SplitProgress,
    SplitStarted,
    discover_splits,
    output_folder_problem,
    suggest_output_folder,
)
from dftui.core.prepare_folder import (
    FolderConfig,
    FolderProgress,
    FolderStarted,
    _label_dirs,
    check_out,
)
from dftui.core.prepare_folder import FolderFinished as FolderJobFinished
from dftui.ui.advice import with_advice
from dftui.ui.app import DftuiApp
from dftui.ui.messages import DataFoldersReady, EngineEvent, engine_poster
from dftui.ui.screens.base import DftuiScreen
from dftui.ui.widgets.folder_picker import FolderPicker, shown_path
from dftui.ui.widgets.navbar import NavBar
from dftui.ui.widgets.tickbox import TickBox

SETTINGS_KEY = "prepare"
# The two sources this screen prepares from; the value of the Source field (#source).
SOURCES = [("OpenForensics archive", "openforensics"), ("Labelled photos/videos (real/, fake/)", "folder")]
FOLDER_MIN_SIZE = 40  # the folder job's detector ignores smaller faces (core default)
DISCOVER_DELAY_S = 0.3


def _split_id(split: str) -> str:
    return f"split-{split}"


# -- messages from the worker thread ---------------------------------------------------------
class DemoWritten(Message):
    def __init__(self, result: Any = None, error: str | None = None, refused: bool = False) -> None:
        super().__init__()
        self.result = result
        self.error = error
        self.refused = refused  # the folders hold files: asking again moves them aside


class _JobStop:
    """Stop when the user asks or when Textual cancels the worker (the app is quitting)."""

    def __init__(self, flag: threading.Event, worker: Any) -> None:
        self.flag, self.worker = flag, worker

    def is_set(self) -> bool:
        return self.flag.is_set() or bool(self.worker.is_cancelled)


def use_in_setup(app: DftuiApp, train_dir: Path, val_dir: Path, test_dir: Path | None = None,
                 img_size: int | None = None) -> None:
    """Make the Setup screen train on these folders: remembered in the settings (a Setup
    created later starts with them) and handed to an open Setup screen as a
    ``DataFoldersReady`` message (it fills its own fields and rescans them). ``img_size``: an
    image size to go with them (the demo set's 64 px pictures train in minutes at 64, in
    about half an hour at the default 224)."""
    values = {"train_dir": shown_path(train_dir), "val_dir": shown_path(val_dir)}
    if img_size is not None:
        values["img_size"] = str(img_size)
    saved = app.settings.data.get("setup")
    setup = dict(saved) if isinstance(saved, dict) else {}
    setup.update(values)
    app.settings.update(setup=setup)
    screen = app.get_open_screen("setup")
    if screen is not None:
        screen.post_message(DataFoldersReady(train_dir, val_dir, test_dir, img_size))


class PrepareScreen(DftuiScreen[None]):
    TITLE = "Prepare"
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", priority=True, id="prepare.start"),
        Binding("ctrl+o", "browse", "Browse folder", id="prepare.browse"),
        Binding("s", "stop_job", "Stop", id="prepare.stop"),
        Binding("ctrl+d", "demo", "Write demo data", id="prepare.demo"),
        Binding("ctrl+u", "use", "Use in Setup", id="prepare.use"),
    ]

    def __init__(self, root: str | Path | None = None, out: str | Path | None = None) -> None:
        super().__init__()
        self._initial_root = str(root) if root is not None else None
        self._initial_out = str(out) if out is not None else None
        self._stop = threading.Event()
        self.running = False
        self.final: PrepareFinished | PrepareFailed | FolderJobFinished | None = None
        self.found: dict[str, Path] = {}
        self.ready: tuple[Path, Path, Path | None] | None = None  # train, val, test for Setup
        self._discover_timer: Any = None
        self._discovered: str | None = None  # the root text the split boxes reflect
        self._demo_refused: Path | None = None  # output folder whose demo write was refused
        self._then_setup = False  # go to Setup once the demo data is written

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        saved = self._saved()
        yield NavBar("prepare")
        with VerticalScroll(id="prepare-form"):
            source = saved.get("source") if saved.get("source") in ("openforensics", "folder") else "openforensics"
            with Horizontal(classes="row"):
                yield Label("Source", classes="field-label")
                yield Select(SOURCES, value=source, allow_blank=False, id="source", compact=True)
            yield Static(
                "Cut every annotated face of the OpenForensics archive into <output>/<split>_cropped/"
                "{real,fake}/. Reruns skip crops already written; skipped faces are listed in "
                "<output>/prepare_report.json.", classes="hint archive-only")
            yield Static(
                "Cut the faces of the photos and videos in <input>/{real,fake}/ into <output>/"
                "{train,val}_cropped/{real,fake}/. Reruns resume; skipped files are listed in "
                "<output>/prepare_folder_report.json.",
                classes="hint folder-only")
            with Horizontal(classes="row"):
                yield Label("Archive folder", classes="field-label", id="root-label")
                yield Input(self._initial_root or str(saved.get("root", "")), id="root", compact=True,
                            placeholder="folder holding Train/Train_poly.json, Val/, ...")
                yield Button("Browse", id="browse-root", compact=True, classes="browse")
            yield Static("", id="root-note", classes="note")
            with Horizontal(classes="row"):
                yield Label("Output folder", classes="field-label")
                yield Input(self._initial_out or str(saved.get("out", DEFAULT_DATA_ROOT)), id="out",
                            compact=True)
                yield Button("Browse", id="browse-out", compact=True, classes="browse")
            out_note = Static("", id="out-note", classes="note")
            out_note.display = False
            yield out_note
            with Horizontal(classes="row folder-only"):
                yield Label("Frames/video", classes="field-label")
                yield Input(str(saved.get("frames", "32")), id="frames", compact=True, classes="short",
                            tooltip="frames sampled evenly from each video")
                yield Label("Val share", classes="field-label2")
                yield Input(str(saved.get("val_fraction", "0")), id="val_fraction", compact=True, classes="short",
                            tooltip="fraction of the photos/videos (whole videos) sent to val_cropped/")
            with Horizontal(classes="row archive-only"):
                yield Label("Splits", classes="field-label")
                for split in SPLITS:
                    yield TickBox(split, False, id=_split_id(split), compact=True, classes="split-box",
                                   disabled=True)
            with Horizontal(classes="row"):
                yield Label("Margin", classes="field-label")
                yield Input(str(saved.get("margin", "0")), id="margin", compact=True, classes="short",
                            tooltip="enlarge each box by this fraction (0.3 = 1.3x boxes)")
                yield Label("Min size", classes="field-label2")
                yield Input(str(saved.get("min_size", "0")), id="min_size", compact=True, classes="short",
                            tooltip="skip faces smaller than this many pixels")
            # Two rows of two fields: one row of four does not fit 80 columns.
            with Horizontal(classes="row"):
                yield Label("Format", classes="field-label")
                fmt = saved.get("fmt") if saved.get("fmt") in FORMATS else "jpg"
                yield Select([(f, f) for f in FORMATS], value=fmt, allow_blank=False, id="fmt", compact=True)
                yield Label("Workers", classes="field-label2 archive-only")
                yield Input(str(saved.get("workers", "")), id="workers", compact=True, classes="short archive-only",
                            placeholder="auto")
            yield Static("", id="form-error", classes="note error")
            with Horizontal(id="prepare-buttons"):
                yield Button("Start", variant="primary", id="start", compact=True)
                yield Button("Stop", id="stop", compact=True, disabled=True)
                yield Button("Use in Setup", id="use", compact=True, disabled=True)
                yield Button("Write demo data", id="demo", compact=True)
            yield Static("", id="prepare-status")  # its own line: beside the buttons it wrapped
        with Vertical(id="prepare-progress"):
            for split in SPLITS:
                with Horizontal(classes="progress-row", id=f"row-{split}"):
                    yield Label(split, classes="progress-label")
                    yield ProgressBar(total=None, show_eta=True, id=f"bar-{split}")
                    yield Static("", classes="progress-info", id=f"info-{split}")
            with Horizontal(classes="progress-row", id="row-folder"):
                yield Label("photos/videos", classes="progress-label")
                yield ProgressBar(total=None, show_eta=True, id="bar-folder")
                yield Static("", classes="progress-info", id="info-folder")
        yield Static("", id="prepare-summary")
        yield Log(id="prepare-log", highlight=False)
        yield Footer()

    def _saved(self) -> dict[str, Any]:
        data = self.app.settings.data.get(SETTINGS_KEY)
        return data if isinstance(data, dict) else {}

    def on_mount(self) -> None:
        self._apply_source()
        self._discover()

    @property
    def source(self) -> str:
        return str(self.query_one("#source", Select).value)

    @on(Select.Changed, "#source")
    def _source_changed(self) -> None:
        self._apply_source()
        self._discover()

    def _apply_source(self) -> None:
        folder = self.source == "folder"
        self.set_class(folder, "folder-source")
        self.query_one("#root-label", Label).update("Input folder" if folder else "Archive folder")
        self.query_one("#root", Input).placeholder = (
            "folder holding real/ and fake/" if folder else "folder holding Train/Train_poly.json, Val/, ...")
        # The two jobs have different minimum face sizes (the folder detector needs >= 8 px):
        # switch an untouched default with the source.
        min_size = self.query_one("#min_size", Input)
        if folder and min_size.value.strip() in ("", "0"):
            min_size.value = str(FOLDER_MIN_SIZE)
        elif not folder and min_size.value.strip() == str(FOLDER_MIN_SIZE):
            min_size.value = "0"
        self._note("out-note", "hint", "")
        self._status("choose the labelled folder, then ctrl+s" if folder else "choose the archive folder, then ctrl+s")

    # -- helpers -------------------------------------------------------------------------
    def _status(self, text: str) -> None:
        self.query_one("#prepare-status", Static).update(text)

    def _note(self, widget_id: str, css: str, text: str) -> None:
        note = self.query_one(f"#{widget_id}", Static)
        note.set_classes(f"note {css}")
        note.update(text)
        note.display = bool(text)  # an empty note takes no line (80x24 has few)

    def _log(self, text: str) -> None:
        self.query_one("#prepare-log", Log).write_line(text)

    def value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value.strip()

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.query_one("#start", Button).disabled = running
        self.query_one("#demo", Button).disabled = running
        self.query_one("#source", Select).disabled = running
        self.query_one("#stop", Button).disabled = not running

    # -- the archive folder ----------------------------------------------------------------
    @on(Input.Changed, "#root")
    def _root_changed(self) -> None:
        if self._discover_timer is not None:
            self._discover_timer.stop()
        self._discover_timer = self.set_timer(DISCOVER_DELAY_S, self._discover)

    @on(Input.Submitted, "#root")
    def _root_submitted(self) -> None:
        self._discover()

    def _discover(self) -> None:
        """Which splits the archive folder holds (a few stat calls: done on the UI thread)."""
        text = self.value("root")
        before = (self._discovered, set(self.found))
        self._discovered = text
        self.found = {}
        if self.source == "folder":
            self._discover_folder(text)
            return
        if not text:
            self._note("root-note", "hint", "the folder the OpenForensics archive was extracted to")
        else:
            root = Path(text).expanduser()
            if not root.is_dir():
                self._note("root-note", "error", f"✗ {text} is not a folder")
            else:
                self.found = discover_splits(root)
                if self.found:
                    listed = ", ".join(f"{s} ({shown_path(p)})" for s, p in self.found.items())
                    self._note("root-note", "ok", f"✓ found {listed}")
                else:
                    self._note("root-note", "error", (
                        f"✗ no Train_poly.json, Val_poly.json, ... in {text}, {text}/<Split>/ or "
                        f"{text}/Annotations/"))
        # Looking at the same folder again (Enter in the field, the source list settling)
        # keeps the splits the user ticked or unticked; a new folder ticks all it holds.
        same = before == (text, set(self.found))
        for split in SPLITS:
            box = self.query_one(f"#{_split_id(split)}", Checkbox)
            box.disabled = split not in self.found
            if not same or split not in self.found:
                box.value = split in self.found

    def _discover_folder(self, text: str) -> None:
        """Whether the folder holds real/ and fake/ (one directory listing, on the UI thread)."""
        if not text:
            self._note("root-note", "hint", "photos and videos in real/ and fake/ (sub-folders too)")
            return
        root = Path(text).expanduser()
        if not root.is_dir():
            self._note("root-note", "error", f"✗ {text} is not a folder")
            return
        try:
            dirs = _label_dirs(root)
        except PrepareError as exc:
            self._note("root-note", "error", f"✗ {exc}")
            return
        if not dirs:
            self._note("root-note", "error",
                       f"✗ no real/ or fake/ folder in {text}; put the photos and videos in those two")
        elif len(dirs) == 1:
            (label,) = dirs
            self._note("root-note", "warning", f"! only {label}/ found in {text}; training needs real/ and fake/")
        else:
            self._note("root-note", "ok", f"✓ found {', '.join(f'{k}/' for k in sorted(dirs))} in {text}")

    def build_folder_config(self) -> FolderConfig:
        """A validated FolderConfig from the form; raises PrepareError with the problem."""
        root = self.value("root")
        if not root:
            raise PrepareError("Input folder: choose the folder holding real/ and fake/")
        out = self.value("out")
        if not out:
            raise PrepareError("Output folder: choose one")
        numbers: dict[str, Any] = {}
        for field, label, kind, default in (("frames", "Frames/video", int, "32"), ("margin", "Margin", float, "0"),
                                            ("min_size", "Min size", int, str(FOLDER_MIN_SIZE)),
                                            ("val_fraction", "Val share", float, "0")):
            text = self.value(field) or default
            try:
                numbers[field] = kind(text)
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise PrepareError(f"{label}: {text!r} is not {what}") from None
        config = FolderConfig(root=Path(root).expanduser(), out=Path(out).expanduser(),
                              fmt=str(self.query_one("#fmt", Select).value), **numbers)
        try:
            config.validate()
        except PrepareError as exc:
            raise PrepareError(f"{exc} (fields Frames/video, Margin, Min size, Val share)") from None
        return config

    def selected_splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if self.query_one(f"#{_split_id(s)}", Checkbox).value)

    def build_config(self) -> PrepareConfig:
        """A validated PrepareConfig from the form; raises PrepareError with the problem."""
        root = self.value("root")
        if not root:
            raise PrepareError("choose the folder the OpenForensics archive was extracted to")
        out = self.value("out")
        if not out:
            raise PrepareError("choose an output folder")
        try:
            margin = float(self.value("margin") or "0")
        except ValueError:
            raise PrepareError(f"margin: {self.value('margin')!r} is not a number (e.g. 0 or 0.3)") from None
        try:
            min_size = int(self.value("min_size") or "0")
        except ValueError:
            raise PrepareError(f"min size: {self.value('min_size')!r} is not a whole number") from None
        workers_text = self.value("workers")
        try:
            workers = int(workers_text) if workers_text else None
        except ValueError:
            raise PrepareError(f"workers: {workers_text!r} is not a whole number") from None
        splits = self.selected_splits()
        if not splits:
            raise PrepareError("no split to prepare: the archive folder has no annotation file, "
                               "or every split is unticked")
        config = PrepareConfig(root=Path(root).expanduser(), out=Path(out).expanduser(), splits=splits,
                               margin=margin, min_size=min_size, fmt=str(self.query_one("#fmt", Select).value),
                               workers=workers, executor="thread")
        config.validate()
        why = output_folder_problem(config.out, OPENFORENSICS_TOOL)
        if why:
            other = suggest_output_folder(config.out, "openforensics")
            raise PrepareError(f"{why}; type a new folder in Output folder (e.g. {other})")
        return config

    def _remember(self) -> None:
        self.app.settings.update(**{SETTINGS_KEY: {
            "root": self.value("root"), "out": self.value("out"), "margin": self.value("margin"),
            "min_size": self.value("min_size"), "workers": self.value("workers"),
            "fmt": str(self.query_one("#fmt", Select).value), "source": self.source,
            "frames": self.value("frames"), "val_fraction": self.value("val_fraction"),
        }})

    # -- start / stop ----------------------------------------------------------------------
    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#stop")
    def _stop_pressed(self) -> None:
        self.action_stop_job()

    def action_start(self) -> None:
        if self.running:
            self.notify("a preparation job is already running", severity="warning")
            return
        if self.value("root") != self._discovered:
            self._discover()  # typed and started before the debounced look-up ran
        if self.source == "folder":
            self._start_folder()
            return
        try:
            config = self.build_config()
        except PrepareError as exc:
            self.query_one("#form-error", Static).update(f"✗ {exc}")
            self.notify(str(exc), title="Cannot start", severity="error", timeout=8)
            return
        self.query_one("#form-error", Static).update("")
        self._remember()
        self.start_job(config)

    def _start_folder(self) -> None:
        form_error = self.query_one("#form-error", Static)
        try:
            config = self.build_folder_config()
        except PrepareError as exc:
            form_error.update(f"✗ {exc}")
            self.notify(str(exc), title="Cannot start", severity="error", timeout=8)
            return
        form_error.update("")
        if not config.root.is_dir():
            self._note("root-note", "error", f"✗ {self.value('root')} is not a folder")
            self.query_one("#root", Input).focus()
            return
        # The output check (a foreign folder, one inside the input, not writable) is a few stat
        # calls: made here so the refusal is shown on the Output folder field, not in the log.
        try:
            check_out(config)
        except PrepareError as exc:
            self._note("out-note", "error", f"✗ {exc}")
            self.notify(str(exc), title="Output folder refused", severity="error", timeout=8)
            self.query_one("#out", Input).focus()
            return
        self._note("out-note", "hint", "")
        self._remember()
        self.start_folder_job(config)

    def _reset_for_job(self, folder_source: bool) -> None:
        """Clear the last job's summary and rows before a new one starts (either source)."""
        self.final = None
        self.ready = None
        self._stop = threading.Event()
        self.query_one("#use", Button).disabled = True
        summary = self.query_one("#prepare-summary", Static)
        summary.set_classes("")
        summary.update("")
        for split in SPLITS:
            self.query_one(f"#row-{split}").remove_class("shown")
        self.query_one("#row-folder").set_class(folder_source, "shown")

    def start_folder_job(self, config: FolderConfig) -> None:
        """Run ``prepare_folder(config)`` in a thread worker."""
        self._reset_for_job(folder_source=True)
        self.query_one("#bar-folder", ProgressBar).update(total=None, progress=0)
        self.query_one("#info-folder", Static).update("listing the photos and videos…")
        self._set_running(True)
        self._status("starting…")
        self._run_folder_job(config, self._stop)

    @work(thread=True, exit_on_error=False, group="prepare", exclusive=True)
    def _run_folder_job(self, config: FolderConfig, flag: threading.Event) -> None:
        from dftui.core.prepare_folder import FolderSummary, prepare_folder

        stop = _JobStop(flag, get_current_worker())
        emit = engine_poster(self)
        try:
            prepare_folder(config, emit, stop)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a bug becomes a readable failure, not a dead app
            emit(FolderJobFinished(FolderSummary(
                status="failed", error=f"unexpected error: {unexpected_error(exc)}")))

    def on_engine_event(self, message: EngineEvent) -> None:
        """Both jobs' events (the bridge's rule: ``ui/messages.py``)."""
        e = message.event
        if isinstance(e, FolderProgress):
            # Merged progress: the bar shows the latest, the log every source skipped.
            for each in message.events:
                if isinstance(each, FolderProgress) and each.status != "ok":
                    self._log(f"{each.source}: {each.detail or each.status}")
        if isinstance(e, (FolderStarted, FolderProgress, FolderJobFinished)):
            self._folder_event(e)  # (either job's LogMessage: _prepare_event)
        elif isinstance(e, SplitProgress):
            self._split_progress(e)
        else:
            self._prepare_event(e)

    def _folder_event(self, e: Event) -> None:
        if isinstance(e, FolderStarted):
            todo = e.photos + e.videos - e.already_done
            self.query_one("#bar-folder", ProgressBar).update(total=max(1, todo), progress=0)
            self.query_one("#info-folder", Static).update(
                f"{e.photos} photos, {e.videos} videos · {e.already_done} done before")
            self._log(f"preparing {e.photos} photos and {e.videos} videos from {e.root} into {e.out} ({e.settings})")
            self._status(f"0/{todo} photos and videos")
        elif isinstance(e, FolderProgress):
            self.query_one("#bar-folder", ProgressBar).update(total=max(1, e.total), progress=e.done)
            self.query_one("#info-folder", Static).update(f"{e.done}/{e.total} · {e.source}: {e.crops} crops")
            self._status(f"{e.done}/{e.total} photos and videos")
        elif isinstance(e, FolderJobFinished):
            self._folder_finished(e)

    def _folder_finished(self, e: FolderJobFinished) -> None:
        s = e.summary
        self.final = e
        self._set_running(False)
        summary = self.query_one("#prepare-summary", Static)
        if s.status == "failed" and not s.report:
            # Refused before anything was written (a folder that changed since Start).
            summary.set_classes("failed")
            summary.update(f"✗ {s.error}")
            self._log(f"error: {s.error}")
            self._status("failed")
            return
        lines = [s.line()]
        if s.error:
            lines.append(f"✗ {s.error}")
        if s.status == "stopped":
            lines.append("stopped; Start again to resume where it stopped")
        lines.append(f"report: {s.report}")
        out = Path(s.report).parent
        train, val = out / "train_cropped", out / "val_cropped"
        if any(k.startswith("train/") for k in s.crops) and any(k.startswith("val/") for k in s.crops):
            self.ready = (train, val, None)
            self.query_one("#use", Button).disabled = False
            if s.status == "finished":
                use_in_setup(self.app, train, val)
                lines.append(f"Setup now trains on {shown_path(train)} and validates on {shown_path(val)}.")
        elif s.status == "finished":
            lines.append("no val_cropped/ crops (Val share 0): set Val share to train on these in Setup")
        summary.set_classes("done" if s.status == "finished" else "failed")
        summary.update("\n".join(lines))
        self._log(lines[0])
        self._status(f"{s.status} in {s.seconds:.1f} s")

    def start_job(self, config: PrepareConfig) -> None:
        """Run ``config`` in a thread worker (the Pilot tests call this directly too)."""
        self._reset_for_job(folder_source=False)
        self._set_running(True)
        self._status("starting…")
        self._run_job(config, self._stop)

    def action_stop_job(self) -> None:
        if self.running:
            self._stop.set()
            self._status("stopping after the images in progress…")

    def on_unmount(self) -> None:
        self._stop.set()  # the app is closing: let the worker thread end promptly

    @work(thread=True, exit_on_error=False, group="prepare", exclusive=True)
    def _run_job(self, config: PrepareConfig, flag: threading.Event) -> None:
        from dftui.core.prepare import prepare_openforensics

        stop = _JobStop(flag, get_current_worker())

        emit = engine_poster(self)
        try:
            prepare_openforensics(config, emit, stop)
        except Exception as exc:  # noqa: BLE001 - a bug becomes a readable failure, not a dead app
            emit(PrepareFailed(f"unexpected error: {unexpected_error(exc)}"))

    # -- events ----------------------------------------------------------------------------
    def _split_progress(self, e: SplitProgress) -> None:
        try:
            self.query_one(f"#bar-{e.split}", ProgressBar).update(total=max(1, e.images), progress=e.images_done)
        except NoMatches:
            return
        self.query_one(f"#info-{e.split}", Static).update(
            f"{e.images_done}/{e.images} images · {e.written} new · {e.existing} already there · "
            f"{e.skipped} skipped · {e.faces_per_s:.1f} faces/s")
        self._status(f"{e.split}: {e.images_done}/{e.images} images")

    def _prepare_event(self, e: Event) -> None:
        if isinstance(e, PrepareStarted):
            self._log(f"preparing {', '.join(e.splits)} from {e.root} into {e.out} "
                      f"({e.workers} worker{'' if e.workers == 1 else 's'}, {e.settings})")
        elif isinstance(e, SplitStarted):
            self.query_one(f"#row-{e.split}").add_class("shown")
            self.query_one(f"#bar-{e.split}", ProgressBar).update(total=max(1, e.images), progress=0)
            self._log(f"{e.split}: {e.images} images, {e.faces} faces from {e.annotations_path}")
            self._status(f"{e.split}: reading images…")
        elif isinstance(e, SplitFinished):
            s = e.summary
            self._log(s.line())
            if s.status == "finished":
                self.query_one(f"#bar-{s.split}", ProgressBar).update(total=max(1, s.images), progress=s.images)
            self.query_one(f"#info-{s.split}", Static).update(
                f"{s.status}: {s.real} real + {s.fake} fake · {s.written} new · skipped {s.skipped_total}")
        elif isinstance(e, LogMessage):
            self._log(f"{e.level}: {with_advice(e.text, decode_all(e.fixes))}")
        elif isinstance(e, PrepareFinished):
            self._finished(e)
        elif isinstance(e, PrepareFailed):
            self._failed(e)

    def _finished(self, e: PrepareFinished) -> None:
        self.final = e
        self._set_running(False)
        lines = [f"{e.status}: " + {"finished": "all chosen splits prepared",
                                     "stopped": "stopped; Start again to resume where it stopped",
                                     "partial": "some splits failed (see below)"}.get(e.status, e.status)]
        lines += [s.line() for s in e.summaries]
        lines.append(f"report: {e.report_path} · skipped faces: {e.skipped_csv}")
        dirs = e.output_dirs
        if "Train" in dirs and "Val" in dirs:
            test = dirs.get("Test-Dev")
            self.ready = (Path(dirs["Train"]), Path(dirs["Val"]), Path(test) if test else None)
            self.query_one("#use", Button).disabled = False
            if e.status == "finished":
                use_in_setup(self.app, *self.ready)
                lines.append(f"Setup now trains on {dirs['Train']} and validates on {dirs['Val']}.")
        summary = self.query_one("#prepare-summary", Static)
        summary.set_classes("done" if e.status == "finished" else "failed")
        summary.update("\n".join(lines))
        self._status(f"{e.status} in {e.seconds:.1f} s")

    def _failed(self, e: PrepareFailed) -> None:
        self.final = e
        self._set_running(False)
        summary = self.query_one("#prepare-summary", Static)
        summary.set_classes("failed")
        message = with_advice(e.message, decode_all(e.fixes))  # fields, not flags
        summary.update(f"✗ {message}" + (f"\nreport: {e.report_path}" if e.report_path else ""))
        self._log(f"error: {message}")
        self._status("failed")

    # -- Setup -----------------------------------------------------------------------------
    @on(Button.Pressed, "#use")
    async def _use_pressed(self) -> None:
        await self.action_use()  # not awaited, the coroutine was dropped: the button did nothing

    async def action_use(self) -> None:
        if self.ready is None:
            self.notify("prepare the Train and Val splits (or write demo data) first", severity="warning")
            return
        use_in_setup(self.app, *self.ready)
        await self.app.open_screen("setup")

    # -- demo data -------------------------------------------------------------------------
    @on(Button.Pressed, "#demo")
    def _demo_pressed(self) -> None:
        self.action_demo()

    def action_demo(self) -> None:
        self.write_demo_data()

    def use_output_folder(self, out: Path) -> None:
        """Point the Output folder field at ``out`` (not while a job writes elsewhere)."""
        if not self.running:
            self.query_one("#out", Input).value = str(out)

    def write_demo_data(self, force: bool = False, then_setup: bool = False) -> None:
        """Write the synthetic demo set into the output folder (in a thread); ``then_setup``:
        open the Setup screen once it is written (the first-run offer's next step)."""
        if self.running:
            self.notify("wait for the running job to end", severity="warning")
            return
        self._then_setup = then_setup
        out = Path(self.value("out") or str(DEFAULT_DATA_ROOT)).expanduser()
        # Asked again for the folder just refused (it holds files): move them aside this
        # time, as the message offered (renamed, never deleted).
        force = force or self._demo_refused == out
        self._demo_refused = None
        self._set_running(True)
        self._status(f"writing synthetic demo data into {shown_path(out)}…")
        self._demo_worker(out, force)

    @work(thread=True, exit_on_error=False, group="prepare", exclusive=True)
    def _demo_worker(self, out: Path, force: bool) -> None:
        try:
            result = make_demo_data(out, n=DEMO_N, size=DEMO_SIZE, force=force)
        except DemoDataError as exc:
            # Phrased for this screen: the Output folder field, ctrl+d again (not --force).
            self.post_message(DemoWritten(error=with_advice(str(exc), exc.fixes),
                                          refused=any(f.setting == "force" for f in exc.fixes)))
            return
        except Exception as exc:  # noqa: BLE001
            self.post_message(DemoWritten(error=f"unexpected error: {unexpected_error(exc)}"))
            return
        self.post_message(DemoWritten(result))

    def on_demo_written(self, message: DemoWritten) -> None:
        self._set_running(False)
        summary = self.query_one("#prepare-summary", Static)
        if message.error:
            if message.refused:
                self._demo_refused = Path(self.value("out") or str(DEFAULT_DATA_ROOT)).expanduser()
            summary.set_classes("failed")
            summary.update(f"✗ {message.error}")
            self._status("demo data not written")
            return
        r = message.result
        lines = ["SYNTHETIC demo data written (generated drawings, not real faces; for trying dftui only):"]
        lines += [f"  {shown_path(r.folders[n])}: {c['real']} real + {c['fake']} fake" for n, c in r.counts.items()]
        lines += [f"  moved the old {n} aside to {shown_path(p)}" for n, p in r.moved_aside.items()]
        self.ready = (r.train_dir, r.val_dir, r.folders.get("test_dev_cropped"))
        use_in_setup(self.app, *self.ready, img_size=DEMO_SIZE)
        lines.append(f"Setup now trains on {shown_path(r.train_dir)} and validates on {shown_path(r.val_dir)}, "
                     f"at image size {DEMO_SIZE} (the pictures' own size: a run takes minutes).")
        self.query_one("#use", Button).disabled = False
        summary.set_classes("done")
        summary.update("\n".join(lines))
        self._status("demo data ready")
        if self._then_setup:  # asked for from the first-run dialog: the next step is Setup
            self._then_setup = False
            self.app.call_later(self.app.open_screen, "setup")
            self.app.notify(f"Demo data written; image size set to {DEMO_SIZE} px. "
                            "ctrl+s starts a run.", timeout=8)

    # -- browse ----------------------------------------------------------------------------
    @on(Button.Pressed, ".browse")
    def _browse_pressed(self, event: Button.Pressed) -> None:
        self.browse((event.button.id or "").removeprefix("browse-"))

    def action_browse(self) -> None:
        focused = self.focused
        self.browse("out" if focused is not None and focused.id in ("out", "browse-out") else "root")

    def browse(self, field: str) -> None:
        current = Path(self.value(field) or ".").expanduser()
        title = "Output folder for the crops"
        if field == "root":
            title = "Folder holding real/ and fake/" if self.source == "folder" else "OpenForensics archive folder"

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.query_one(f"#{field}", Input).value = shown_path(path)
                if field == "root":
                    self._discover()

        self.app.push_screen(FolderPicker(title, current), chosen)


# -- the offer when the default folders are empty ----------------------------------------------
class DemoDataOffer(ModalScreen[str | None]):
    """Asks what to do about empty data folders; dismisses with "demo", "prepare" or None."""

    BINDINGS = [
        Binding("d", "answer('demo')", "Demo data", show=False),
        Binding("p", "answer('prepare')", "Prepare", show=False),
        Binding("n,escape", "answer(None)", "Not now", show=False),
    ]

    def __init__(self, root: Path = DEFAULT_DATA_ROOT) -> None:
        super().__init__()
        self.root = root

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="demo-offer"):
            yield Static("No training data yet", classes="dialog-title")
            yield Static(
                f"{self.root}/train_cropped and {self.root}/val_cropped hold no images.\n\n"
                f"• Demo data: write a small SYNTHETIC set ({DEMO_N}+{DEMO_N} generated drawings of faces, "
                "not photographs) to try a complete run on a CPU in minutes.\n"
                "• Prepare: cut the faces out of a downloaded OpenForensics archive.", id="demo-offer-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Demo data (d)", variant="primary", id="offer-demo")
                yield Button("Prepare… (p)", id="offer-prepare")
                yield Button("Not now (n)", id="offer-no")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss({"offer-demo": "demo", "offer-prepare": "prepare"}.get(event.button.id or ""))

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)


def maybe_offer_demo_data(app: DftuiApp, root: Path = DEFAULT_DATA_ROOT) -> bool:
    """Ask ``DemoDataOffer`` when ``root``'s training or validation folder has no image (and
    Setup is not pointed at other folders), and act on the answer: open the Prepare screen,
    writing the demo set there for "demo". Returns True when the question was asked. Asked at
    most once per app session. Meant to be called once the Setup screen is shown."""
    if app.demo_offered or not default_folders_empty(root):
        return False
    setup = app.settings.data.get("setup")
    if isinstance(setup, dict):
        # The user pointed Setup at folders of their own: not the moment to suggest demo data.
        defaults = {"train_dir": root / "train_cropped", "val_dir": root / "val_cropped"}
        for field, default in defaults.items():
            value = setup.get(field)
            if isinstance(value, str) and value.strip() and Path(value.strip()).expanduser() != default:
                return False
    app.demo_offered = True

    async def answered(answer: str | None) -> None:
        if answer is None:
            return
        existing = app.get_open_screen("prepare")
        if isinstance(existing, PrepareScreen):
            # Reuse it: a fresh instance would drop a job running there.
            screen = await app.open_screen("prepare")
            existing.use_output_folder(root)
        else:
            screen = await app.open_screen("prepare", out=str(root))
        if answer == "demo" and isinstance(screen, PrepareScreen):
            screen.write_demo_data(then_setup=True)

    app.push_screen(DemoDataOffer(root), answered)
    return True
