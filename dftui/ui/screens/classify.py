"""Classify screen: choose weights, then an image (verdict, probability bars, latency) or a
whole folder (a sortable table, exportable as CSV). n / p walk the images of a folder.

torch loads inside the workers (``dftui.core.predict`` imports it), never when this module
is imported, so opening the screen does not wait for it."""

from __future__ import annotations

import csv
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    DataTable,
    DirectoryTree,
    Footer,
    Input,
    Label,
    OptionList,
    Static,
    TabbedContent,
    TabPane,
)
from textual.worker import get_current_worker

from dftui.core.data import IMAGE_EXTENSIONS, load_rgb
from dftui.core.errors import describe_error, unexpected_error
from dftui.core.files import atomic_write
from dftui.core.media import is_media
from dftui.core.video import AGGREGATES, DEFAULT_AGGREGATE, VIDEO_EXTENSIONS
from dftui.ui.widgets.image_view import ImageView, fit_for_display
from dftui.ui.widgets.navbar import NavBar
from dftui.ui.widgets.prob_bars import ProbBars, Verdict
from dftui.ui.widgets.scene_panel import ALL, ScenePanel
from dftui.ui.widgets.weights_picker import WeightsPicker

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from dftui.core.clip import VideoResult
    from dftui.core.photo import PhotoResult
    from dftui.core.predict import Prediction, Predictor

DEFAULT_WEIGHTS_DIR = Path("weights")
DEFAULT_IMAGE_ROOT = Path("processed_data/val_cropped")
FOLDER_BATCH = 16  # images per batch in folder mode; rows reach the table batch by batch
CSV_COLUMNS = ("path", "label", "p_real", "p_fake", "latency_ms", "truth", "error")
TRUTH_NAMES = ("real", "fake")


# -- helpers (no Textual state) -------------------------------------------------------------
def is_image(path: Path) -> bool:
    """An image or a video file: what the tree lists and n / p walk through (core's one list,
    the files ``dftui predict`` judges)."""
    return is_media(path)


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


# The most faces drawn and listed: each is a crop kept in memory for its own view.
CROP_VIEW_SIDE = 256
VIDEO_FRAMES = 32  # frames judged per video on this screen (dftui predict --frames)


def images_in(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name, hidden files left out."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return sorted(
        (Path(e.path) for e in entries if not e.name.startswith(".") and e.is_file()
         and is_image(Path(e.name))),
        key=lambda p: p.name,
    )


def truth_of(path: Path, folder: Path) -> str:
    """'real' / 'fake' when the image sits in a real/ or fake/ folder under ``folder``."""
    try:
        parts = path.relative_to(folder).parts[:-1]
    except ValueError:
        parts = ()
    names = [p.lower() for p in parts] or [folder.name.lower()]
    for name in reversed(names):
        if name in TRUTH_NAMES:
            return name
    return ""


def default_csv_path(folder: Path, where: Path | None = None) -> Path:
    """``<folder>-predictions.csv`` in the working folder (where dftui was started, beside
    weights/), not inside the data set, where it would sit among the images; a class folder
    is named with its parent (``val_cropped-fake``); -2, -3 ... when that exists."""
    folder = folder.resolve()
    stem = folder.name or "folder"
    if stem.lower() in TRUTH_NAMES and folder.parent.name:
        stem = f"{folder.parent.name}-{stem}"
    base = (where or Path.cwd()).resolve() / f"{stem}-predictions.csv"
    path, n = base, 2
    while path.exists():
        path = base.with_name(f"{stem}-predictions-{n}.csv")
        n += 1
    return path


def write_predictions_csv(path: Path, rows: list[tuple[Prediction, str]]) -> None:
    """Rows of (prediction, truth) in the given order; written atomically."""
    with atomic_write(path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for pred, truth in rows:
            ok = pred.label is not None
            writer.writerow(
                [
                    pred.path,
                    pred.label or "",
                    f"{pred.p_real:.6f}" if ok else "",
                    f"{pred.p_fake:.6f}" if ok else "",
                    f"{pred.latency_ms:.2f}" if ok else "",
                    truth,
                    pred.error,
                ]
            )


def _whole_prediction(path: Path, p_fake: float, label: str, ms: float) -> Prediction:
    from dftui.core.predict import Prediction

    return Prediction(str(path), label, 1.0 - p_fake, p_fake, ms)


# -- messages from the workers ----------------------------------------------------------------
class ModelReady(Message):
    def __init__(self, path: Path, predictor: Predictor) -> None:
        super().__init__()
        self.path = path
        self.predictor = predictor


class ModelFailed(Message):
    def __init__(self, path: Path, error: str) -> None:
        super().__init__()
        self.path = path
        self.error = error


class ImageDecoded(Message):
    def __init__(self, path: Path, image: PILImage.Image | None, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.image = image
        self.error = error


class ImageClassified(Message):
    def __init__(self, path: Path, prediction: Prediction) -> None:
        super().__init__()
        self.path = path
        self.prediction = prediction


@dataclass
class Scene:
    """A photo searched for faces, or a video: what the picture, the face list and the
    verdict show. ``picture`` is the display copy; boxes are in the source's pixels."""

    path: Path
    picture: PILImage.Image | None = None
    source_width: int = 0
    photo: PhotoResult | None = None
    crops: dict[int, PILImage.Image] | None = None  # face number -> crop (photos)
    video: VideoResult | None = None
    chosen: str = ALL


class SceneJudged(Message):
    def __init__(self, scene: Scene) -> None:
        super().__init__()
        self.scene = scene


class VideoProgress(Message):
    def __init__(self, path: Path, done: int, planned: int) -> None:
        super().__init__()
        self.path = path
        self.done = done
        self.planned = planned


class CamReady(Message):
    def __init__(self, path: Path, key: str, image: PILImage.Image | None, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.key = key
        self.image = image
        self.error = error


class FolderRows(Message):
    """Rows of (prediction, truth, note) for the folder table."""

    def __init__(self, folder: Path, rows: list[tuple[Prediction, str, str]], done: int, total: int) -> None:
        super().__init__()
        self.folder = folder
        self.rows = rows
        self.done = done
        self.total = total


class FolderFinished(Message):
    def __init__(self, folder: Path, total: int, error: str = "", cancelled: bool = False) -> None:
        super().__init__()
        self.folder = folder
        self.total = total
        self.error = error
        self.cancelled = cancelled


# -- widgets ----------------------------------------------------------------------------------
class ImageTree(DirectoryTree):
    """A directory tree that lists folders, images and videos only (no hidden entries)."""

    def filter_paths(self, paths: Any) -> Any:
        return [
            p for p in paths
            if not p.name.startswith(".") and (p.is_dir() or is_image(p))
        ]


class ExportScreen(ModalScreen[Path | None]):
    """Asks where to write the CSV; an existing file needs a second Enter to be replaced."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="classify.export_cancel")]

    def __init__(self, default: Path, count: int) -> None:
        super().__init__()
        self._default = default
        self._count = count
        self._confirmed: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="export-csv"):
            yield Label(f"Export {self._count} rows as CSV to:")
            yield Input(str(self._default), id="export-path")
            yield Static("Enter to save, Escape to cancel", id="export-note")

    @on(Input.Submitted, "#export-path")
    def _submit(self, event: Input.Submitted) -> None:
        note = self.query_one("#export-note", Static)
        text = event.value.strip()
        if not text:
            note.update("Type a file path (Escape to cancel)")
            note.add_class("-warning")
            return
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / self._default.name
        if path.exists() and self._confirmed != path:
            self._confirmed = path
            note.update(Text(f"{path} exists: Enter again to replace it, or change the path"))
            note.add_class("-warning")
            return
        if not path.parent.is_dir():
            note.update(Text(f"folder {path.parent} does not exist"))
            note.add_class("-warning")
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass
class _Row:
    prediction: Prediction
    truth: str
    note: str = ""  # faces found in a photo, frames of a video


class _FolderStop:
    """The folder worker's stop flag for a video's decoder: Textual cancelled the worker
    (a new folder, the screen closing) or the user pressed x."""

    def __init__(self, flag: threading.Event, worker: Any) -> None:
        self.flag, self.worker = flag, worker

    def is_set(self) -> bool:
        return self.flag.is_set() or bool(self.worker.is_cancelled)


def photo_row(result: PhotoResult) -> tuple[Prediction, str]:
    """One table row per photo: its most suspicious face decides (``PhotoResult.p_fake``, the
    rule ``dftui predict`` prints too); the note says how many faces and which one."""
    from dftui.core.predict import Prediction

    if not result.ok:
        return Prediction(result.path, None, math.nan, math.nan, result.latency_ms, result.error), ""
    if not result.faces:
        return Prediction(result.path, None, math.nan, math.nan, result.latency_ms,
                          result.note or "no face found"), ""
    top = max(result.faces, key=lambda f: f.p_fake)
    if top.kind == "crop":
        note = "judged whole (looks like a face crop)"
    elif top.kind == "whole":
        note = "no face: whole picture scored"
    else:
        n = len(result.faces)
        note = f"{n} face{'s' if n > 1 else ''}" + (f", face {top.index} decides" if n > 1 else "")
    if result.note and top.kind == "face":
        note += f"; {result.note}"
    return Prediction(result.path, top.label, 1.0 - top.p_fake, top.p_fake, result.latency_ms), note


def video_row(result: VideoResult) -> tuple[Prediction, str]:
    """One table row per video: its aggregated verdict under the screen's video rule."""
    from dftui.core.predict import Prediction

    ms = result.seconds * 1000
    if not result.ok or result.label is None:
        why = result.error or "no face in any judged frame"
        return Prediction(result.path, None, math.nan, math.nan, ms, why), ""
    note = f"video: {len(result.frames)} frames, {result.frames_with_face} with a face, rule {result.rule}"
    if result.stopped:
        note += " (stopped early)"
    return Prediction(result.path, result.label, 1.0 - result.p_fake, result.p_fake, ms), note


SORT_COLUMNS = ("file", "verdict", "p_fake", "truth", "ms")
SORT_TITLES = {"file": "file", "verdict": "verdict", "p_fake": "P(fake)", "ms": "latency", "truth": "truth"}


def _sort_key(column: str) -> Any:
    def key(cell: Any) -> Any:
        text = cell.plain if isinstance(cell, Text) else str(cell)
        if column in ("p_fake", "ms"):
            try:
                return float(text)
            except ValueError:
                return math.inf  # unreadable images last
        return text.lower()

    return key


# -- the screen -------------------------------------------------------------------------------
class ClassifyScreen(Screen[None]):
    TITLE = "Classify"
    # Below 120 columns the side pane narrows so the image and the table keep their room.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("n", "next_image", "Next", id="classify.next"),
        Binding("p", "previous_image", "Prev", id="classify.previous"),
        Binding("f", "classify_folder", "Folder", id="classify.folder",
                tooltip="Classify every image and video in the chosen folder into a table"),
        Binding("e", "export_csv", "Export CSV", id="classify.export"),
        Binding("s", "sort", "Sort", id="classify.sort", tooltip="Sort the table by the next column"),
        Binding("w", "focus_weights", "Weights", show=False, id="classify.focus_weights"),
        Binding("o", "focus_images", "Images", show=False, id="classify.focus_images"),
        Binding("i", "show_tab('tab-image')", "Image view", show=False, id="classify.image_tab"),
        Binding("escape", "leave_input", "Leave the path field", show=False, id="classify.leave_input",
                tooltip="Back to the image tree, where n, p, f and the other keys act"),
        Binding("t", "show_tab('tab-folder')", "Table view", show=False, id="classify.table_tab"),
        Binding("x", "stop_video", "Stop", show=False, id="classify.stop_video",
                tooltip="Stop decoding the video (the frames judged so far are kept)"),
        Binding("a", "switch_rule", "Video rule", show=False, id="classify.video_rule",
                tooltip="Switch how frame scores become the video's score"),
        Binding("z", "whole_picture", "Whole picture", show=False, id="classify.whole_picture",
                tooltip="Score the whole picture as one face crop (a weak guess)"),
        Binding("c", "cycle_faces", "Faces", show=False, id="classify.faces",
                tooltip="Faces: auto (search unless the picture looks like a face crop), on, off"),
    ]

    def __init__(
        self,
        weights: Path | str | None = None,
        *,
        weights_dir: Path | str | None = None,
        image_root: Path | str | None = None,
        device: str = "auto",
    ) -> None:
        super().__init__()
        self._initial_weights = Path(weights).expanduser() if weights else None
        self._weights_dir = Path(weights_dir) if weights_dir else DEFAULT_WEIGHTS_DIR
        if image_root is not None:
            self._image_root = Path(image_root)
        elif DEFAULT_IMAGE_ROOT.is_dir():
            self._image_root = DEFAULT_IMAGE_ROOT
        else:
            self._image_root = Path.cwd()  # shown by name, where "." would show nothing
        self._device = device
        self.predictor: Predictor | None = None
        self.weights_path: Path | None = None  # of the loaded model
        self._loading: Path | None = None
        self.current_image: Path | None = None
        self._folder: Path | None = None  # chosen folder for "classify folder"
        self.table_folder: Path | None = None  # folder whose results the table holds
        self.rows: dict[str, _Row] = {}
        self._folder_running = False
        self._sort_column: str | None = None
        self._sort_reverse = False
        self.last_export: Path | None = None
        self._ui_ready = False
        self.scene: Scene | None = None
        self.rule = DEFAULT_AGGREGATE
        # The face rule of ``dftui predict --faces``: auto searches a picture for faces unless
        # it already looks like a crop; on always searches; off judges the whole picture.
        self.face_mode = "auto"
        self._folder_stop = threading.Event()
        self._video_stop = threading.Event()
        self._detector: Any = None

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield NavBar("classify")
        with Horizontal(id="classify-body"):
            with Vertical(id="classify-side"):
                yield Label("Weights (w)", classes="section")
                yield WeightsPicker(self._weights_dir, id="weights-list")
                yield Input(placeholder="or a weights path, Enter", id="weights-path", compact=True)
                yield Label("Images (o)", classes="section")
                yield ImageTree(self._image_root, id="image-tree")
                yield Input(placeholder="or an image / folder path, Enter", id="image-path",
                            compact=True)
            with Vertical(id="classify-main"):
                yield Static("", id="model-status")
                with TabbedContent(id="classify-tabs"):
                    with TabPane("Image (i)", id="tab-image"):  # the keys, shown where they act
                        with Horizontal(id="image-row"):
                            yield ImageView("Choose an image or video (o); n / p walk",
                                            id="image-view")
                            yield ScenePanel(id="scene-panel")
                        yield ProbBars(id="verdict")
                    with TabPane("Folder (t)", id="tab-folder"):
                        yield Static("f classifies the chosen folder", id="folder-status")
                        yield DataTable(id="folder-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_weights()
        if self._initial_weights is not None:
            self.load_weights(self._initial_weights)
        else:
            self._set_status("No model: choose weights (w)", error=False)
        self.query_one("#weights-list" if self._initial_weights is None else "#image-tree").focus()
        self._ui_ready = True

    def on_screen_resume(self) -> None:
        if self._ui_ready:  # the first resume can come before compose
            self.refresh_weights()  # training may have written new weights meanwhile

    # -- weights --------------------------------------------------------------------------
    def refresh_weights(self) -> None:
        picker = self.query_one("#weights-list", WeightsPicker)
        marks = {self.weights_path: "● "} if self.weights_path else {}
        picker.refresh_entries(extra=[self._initial_weights, self.weights_path], marks=marks,
                               prefer=self.weights_path or self._initial_weights)

    @on(OptionList.OptionSelected, "#weights-list")
    def _weights_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.load_weights(Path(event.option.id))

    @on(Input.Submitted, "#weights-path")
    def _weights_typed(self, event: Input.Submitted) -> None:
        typed = self.query_one("#weights-list", WeightsPicker).take_typed(event.value)
        if typed.error:
            self._set_status(typed.error, error=True)
        elif typed.folder:
            self._set_status(f"Listing the .pth files in {typed.folder}", error=False)
        elif typed.file:
            self.load_weights(typed.file)

    def load_weights(self, path: Path) -> None:
        """Load ``path`` in a worker; the current model stays in use until it is ready."""
        self._loading = path
        first = "torch and " if "torch" not in sys.modules else ""
        self._set_status(f"Loading {first}{path.name}…", error=False)
        self._load_model(path)

    @work(thread=True, exclusive=True, group="classify-model", exit_on_error=False)
    def _load_model(self, path: Path) -> None:
        try:
            from dftui.core.backbones import WeightsError
            from dftui.core.predict import Predictor

            try:
                predictor = Predictor(path, device=self._device)
            except WeightsError as exc:
                self.post_message(ModelFailed(path, str(exc)))
                return
        except Exception as exc:  # noqa: BLE001 - any failure becomes a message, not a crash
            self.post_message(
                ModelFailed(path, f"{path} could not be loaded: {unexpected_error(exc)}")
            )
            return
        if not get_current_worker().is_cancelled:
            self.post_message(ModelReady(path, predictor))

    def on_model_ready(self, message: ModelReady) -> None:
        if message.path != self._loading:
            return  # a later choice superseded this one
        self._loading = None
        self.predictor = message.predictor
        self.weights_path = message.path
        self._set_status(self._model_line(), error=False)
        if message.predictor.calibration_warning:
            self.notify(message.predictor.calibration_warning, title="Calibration ignored",
                        severity="warning", timeout=10)
        self.refresh_weights()
        if self.current_image is not None:
            self.show_image(self.current_image)

    def on_model_failed(self, message: ModelFailed) -> None:
        if message.path != self._loading:
            return
        self._loading = None
        still = f" (still using {self.weights_path.name})" if self.weights_path else ""
        self._set_status(f"{message.error}{still}", error=True)
        self.notify(message.error, title="Weights not loaded", severity="error", timeout=10)

    def _model_line(self) -> str:
        p = self.predictor
        if p is None or self.weights_path is None:
            return "No model yet"
        meta = p.metadata
        parts = [p.spec.name]
        if p.reference_format:
            parts.append("reference format")
        acc = meta.get("best_val_accuracy")
        if isinstance(acc, (int, float)):
            parts.append(f"val acc {acc:.1%}")
        if p.temperature:  # the probabilities shown are divided by it
            parts.append(p.calibration_label)
        parts += [str(p.device), self.weights_path.name]
        return " · ".join(parts)

    def _set_status(self, text: str, error: bool) -> None:
        status = self.query_one("#model-status", Static)
        # Errors wrap (up to 4 lines) so the whole reason shows; a model line stays one line.
        status.update(Text(text, overflow="ellipsis", no_wrap=not error))
        status.set_class(error, "-error")

    # -- one image ------------------------------------------------------------------------
    @on(DirectoryTree.FileSelected, "#image-tree")
    def _file_chosen(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.show_image(Path(event.path))

    @on(DirectoryTree.DirectorySelected, "#image-tree")
    def _dir_chosen(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        self._folder = Path(event.path)

    @on(Input.Submitted, "#image-path")
    def _image_typed(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        path = Path(text).expanduser()
        if path.is_dir():
            tree = self.query_one("#image-tree", ImageTree)
            tree.path = path
            self._folder = path
            images = images_in(path)
            tree.focus()
            if images:
                self.show_image(images[0])
            else:
                self.notify(f"{path} has no images directly inside; f classifies its subfolders",
                            timeout=6)
            return
        if not path.exists():
            self._show_problem(path, f"{path} does not exist")
            return
        self.show_image(path)
        self.query_one("#image-tree").focus()  # so n / p walk on at once

    def show_image(self, path: Path) -> None:
        """Draw ``path`` and classify it (when a model is loaded)."""
        self.current_image = path
        self._folder = path.parent
        self.query_one("#classify-tabs", TabbedContent).active = "tab-image"
        self._video_stop.set()  # a video still decoding stops: its result is no longer wanted
        self._video_stop = threading.Event()
        self.scene = None
        self.query_one("#scene-panel", ScenePanel).clear()
        verdict = self.query_one("#verdict", ProbBars)
        if self.predictor is None:
            verdict.show_message(
                "Loading the model…" if self._loading else "Choose weights (w) to classify"
            )
        elif is_video(path):
            verdict.show_message(f"Opening {path.name}…")
        else:
            verdict.show_message("Classifying…")
        if is_video(path):
            self.query_one("#image-view", ImageView).clear(f"{path.name}: video", caption=path.name)
            if self.predictor is not None:
                self._judge_video(path, self.predictor, self._video_stop)
            return
        self._classify_image(path, self.predictor)

    @work(thread=True, exclusive=True, group="classify-image", exit_on_error=False)
    def _classify_image(self, path: Path, predictor: Predictor | None) -> None:
        worker = get_current_worker()
        try:
            image = load_rgb(path)
        except Exception as exc:  # noqa: BLE001 - unreadable or not an image
            self.post_message(ImageDecoded(path, None, describe_error(exc)))
            return
        thumb = fit_for_display(image)  # shrunk here, off the UI thread
        self.post_message(ImageDecoded(path, thumb))
        if predictor is None or worker.is_cancelled:
            return
        from dftui.core.photo import should_search

        if should_search(image, self.face_mode):  # a scene: find the faces and judge each
            self._judge_photo(path, image, thumb, predictor)
            return
        try:
            prediction = predictor.predict_image(image)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: report, keep going
            self.post_message(ImageDecoded(path, thumb, f"classification failed: {describe_error(exc)}"))
            return
        if not worker.is_cancelled:
            self.post_message(ImageClassified(path, prediction))

    # -- photos with faces, videos (core/photo.py, core/clip.py) ---------------------------
    def _face_detector(self) -> Any:
        if self._detector is None:
            from dftui.core.faces import FaceDetector

            self._detector = FaceDetector()
        return self._detector

    def _judge_photo(self, path: Path, image: PILImage.Image, thumb: PILImage.Image,
                     predictor: Predictor) -> None:
        """Worker thread: faces found, cut and judged; one message with everything."""
        from dftui.core.faces import Face, crop_face
        from dftui.core.photo import PhotoJudge

        worker = get_current_worker()
        try:
            judge = PhotoJudge(predictor, self._face_detector(), mode="on")
            result = judge.judge_image(image, str(path))
            crops = {}
            for f in result.faces:
                if f.box is not None:
                    crop = crop_face(image, Face(f.box), judge.margin)
                    crop.thumbnail((CROP_VIEW_SIDE, CROP_VIEW_SIDE))
                    crops[f.index] = crop
        except Exception as exc:  # noqa: BLE001 - no detector, out of memory: say so, keep going
            self.post_message(ImageDecoded(path, thumb, f"face search failed: {describe_error(exc)}"))
            return
        if not worker.is_cancelled:
            self.post_message(SceneJudged(Scene(path, thumb, image.width, photo=result, crops=crops)))

    @work(thread=True, exclusive=True, group="classify-image", exit_on_error=False)
    def _judge_video(self, path: Path, predictor: Predictor, stop: threading.Event) -> None:
        from dftui.core.clip import judge_video
        from dftui.core.photo import PhotoJudge
        from dftui.core.video import Sampling

        try:
            judge = PhotoJudge(predictor, self._face_detector(), mode="on")
            result = judge_video(
                judge, path, Sampling(count=VIDEO_FRAMES), self.rule, stop=stop,
                progress=lambda done, planned, info: self.post_message(VideoProgress(path, done, planned)),
                keep_pictures=True,
            )
        except Exception as exc:  # noqa: BLE001 - the screen must stay usable
            self.post_message(ImageDecoded(path, None, f"video failed: {describe_error(exc)}"))
            return
        self.post_message(SceneJudged(Scene(path, video=result)))

    def on_video_progress(self, message: VideoProgress) -> None:
        if message.path != self.current_image:
            return
        total = f"/{message.planned}" if message.planned else ""
        self.query_one("#verdict", ProbBars).show_message(
            f"Decoding {message.path.name}: {message.done}{total} frames judged · x stops")

    def on_scene_judged(self, message: SceneJudged) -> None:
        scene = message.scene
        if scene.path != self.current_image:
            return
        self.scene = scene
        panel = self.query_one("#scene-panel", ScenePanel)
        bars = self.query_one("#verdict", ProbBars)
        if scene.video is not None:
            video = scene.video
            video.rule = self.rule
            if not video.ok:
                self.query_one("#image-view", ImageView).clear(f"{scene.path.name}: {video.error}",
                                                               caption=scene.path.name)
                bars.show_message(f"{scene.path.name}: {video.error}", error=True)
                return
            panel.show_video(video)
        else:
            assert scene.photo is not None
            panel.show_photo(scene.photo.faces, scene.photo.note)
        self._show_chosen(ALL)

    @on(ScenePanel.Chosen)
    def _scene_chosen(self, event: ScenePanel.Chosen) -> None:
        if self.scene is not None and event.key != self.scene.chosen:
            self._show_chosen(event.key)

    def _view_width(self) -> int:
        view = self.query_one("#image-view", ImageView)
        return max(8, view.size.width)

    def _show_chosen(self, key: str) -> None:
        """Draw the whole picture (numbered boxes), one face (crop + Grad-CAM) or one frame."""
        scene = self.scene
        if scene is None:
            return
        scene.chosen = key
        from dftui.core.faces import draw_boxes, verdict_colour

        view = self.query_one("#image-view", ImageView)
        bars = self.query_one("#verdict", ProbBars)
        threshold = self.predictor.threshold if self.predictor else 0.5
        if scene.photo is not None:
            photo = scene.photo
            if key == ALL and scene.picture is not None:
                scale = scene.picture.width / max(1, scene.source_width)
                faces = [f for f in photo.faces if f.box is not None]
                boxes = [tuple(round(v * scale) for v in f.box) for f in faces]
                drawn = draw_boxes(scene.picture, boxes, [verdict_colour(f.p_fake, threshold) for f in faces],
                                   target_width=self._view_width())
                counts = f"{len(faces)} face(s)" if faces else "no face found · z scores the whole picture"
                view.show_image(drawn, f"{scene.path.name}  {counts}  ({self._position(scene.path)})")
                if photo.faces:
                    worst = max(photo.faces, key=lambda f: f.p_fake)
                    bars.show(Verdict(worst.label, 1 - worst.p_fake, worst.p_fake, None, threshold))
                else:
                    bars.show_message(f"No face found in {scene.path.name}. z scores the whole picture "
                                      "(a face-crop model on a scene: a weak guess)")
                return
            number = int(key.split(":")[1]) if key.startswith("face:") else 0
            face = next((f for f in photo.faces if f.index == number), None)
            if face is None:
                return
            bars.show(Verdict(face.label, 1 - face.p_fake, face.p_fake, None, threshold))
            crop = (scene.crops or {}).get(number)
            if crop is None:  # the whole picture was scored
                if scene.picture is not None:
                    view.show_image(scene.picture, f"{scene.path.name}  whole picture scored (no face found)")
                return
            view.show_image(crop, f"face {number} of {scene.path.name}  · Grad-CAM…")
            if self.predictor is not None:
                self._face_cam(scene.path, key, crop, self.predictor)
            return
        video = scene.video
        if video is None:
            return
        info = video.info
        length = f"{info.duration_s:.1f} s, " if info and info.duration_s else ""
        if key == ALL:
            worst = video.suspicious(1)
            frame = worst[0] if worst else (video.frames[0] if video.frames else None)
            p = video.p_fake
            head = (f"{length}{len(video.frames)} frames, {video.frames_with_face} with a face, "
                    f"rule {video.rule} (a switches)")
            if video.label is None:
                bars.show_message(f"{scene.path.name}: {video.note() or 'no face found'} · {head}")
            else:
                bars.show(Verdict(video.label, 1 - p, p, None, threshold))
        else:
            index = int(key.split(":")[1])
            frame = next((f for f in video.frames if f.index == index), None)
            if frame is not None and frame.faces:
                bars.show(Verdict("fake" if frame.p_fake >= threshold else "real",
                                  1 - frame.p_fake, frame.p_fake, None, threshold))
            elif frame is not None:
                bars.show_message(f"frame {frame.index} at {frame.time_s:.1f} s: no face found")
            head = "frame"
        if frame is None or frame.index not in video.pictures:
            view.clear(f"{scene.path.name}: no frame to show", caption=scene.path.name)
            return
        picture = video.pictures[frame.index]
        scale = picture.width / max(1, info.width if info else picture.width)
        boxes = [tuple(round(v * scale) for v in f.box) for f in frame.faces if f.box is not None]
        drawn = draw_boxes(picture, boxes, [verdict_colour(f.p_fake, threshold) for f in frame.faces],
                           target_width=self._view_width())
        what = "most suspicious frame" if key == ALL else head
        view.show_image(drawn, f"{scene.path.name}  {what} {frame.index} at {frame.time_s:.1f} s")

    @work(thread=True, exclusive=True, group="classify-cam", exit_on_error=False)
    def _face_cam(self, path: Path, key: str, crop: PILImage.Image, predictor: Predictor) -> None:
        try:
            from PIL import Image

            from dftui.core.gradcam import grad_cam

            cam = grad_cam(predictor, crop)
            side = Image.new("RGB", (crop.width * 2 + 4, crop.height), (0, 0, 0))
            side.paste(crop, (0, 0))
            side.paste(cam.overlay.resize(crop.size), (crop.width + 4, 0))
            self.post_message(CamReady(path, key, side))
        except Exception as exc:  # noqa: BLE001 - Grad-CAM is an extra: say why it is missing
            self.post_message(CamReady(path, key, None, describe_error(exc)))

    def on_cam_ready(self, message: CamReady) -> None:
        scene = self.scene
        if scene is None or scene.path != message.path or scene.chosen != message.key:
            return
        view = self.query_one("#image-view", ImageView)
        number = message.key.split(":")[1]
        if message.image is None:
            view.show_image((scene.crops or {})[int(number)],
                            f"face {number}  · no Grad-CAM: {message.error}")
            return
        view.show_image(message.image, f"face {number}: crop | Grad-CAM (where the evidence lies)")

    def action_stop_video(self) -> None:
        if self._folder_running:
            self._folder_stop.set()
            self.notify("Stopping the folder: the rows so far are kept", timeout=3)
        elif self.current_image is not None and is_video(self.current_image) and self.scene is None:
            self._video_stop.set()
            self.notify("Stopping: the frames judged so far give the verdict", timeout=3)
        else:
            self.notify("No video is being decoded", timeout=2)

    def action_cycle_faces(self) -> None:
        modes = ("auto", "on", "off")
        self.face_mode = modes[(modes.index(self.face_mode) + 1) % len(modes)]
        what = {"auto": "search each picture unless it looks like a face crop",
                "on": "search every picture for faces", "off": "judge every picture whole"}[self.face_mode]
        self.notify(f"faces {self.face_mode}: {what} (next image or f)", timeout=4)

    def action_switch_rule(self) -> None:
        self.rule = AGGREGATES[(AGGREGATES.index(self.rule) + 1) % len(AGGREGATES)]
        if self.scene is not None and self.scene.video is not None and self.scene.video.ok:
            self.scene.video.rule = self.rule
            self.query_one("#scene-panel", ScenePanel).show_video(self.scene.video)
            self._show_chosen(ALL)
        self.notify(f"video rule: {self.rule}", timeout=3)

    def action_whole_picture(self) -> None:
        scene = self.scene
        if scene is None or scene.photo is None or scene.picture is None or self.predictor is None:
            self.notify("z scores a photo's whole picture: choose a photo first", timeout=3)
            return
        self._score_whole(scene.path, self.predictor)

    @work(thread=True, exclusive=True, group="classify-image", exit_on_error=False)
    def _score_whole(self, path: Path, predictor: Predictor) -> None:
        from dftui.core.photo import PhotoJudge

        try:
            image = load_rgb(path)
            result = PhotoJudge(predictor, mode="off").judge_image(image, str(path))
        except Exception as exc:  # noqa: BLE001
            self.post_message(ImageDecoded(path, None, describe_error(exc)))
            return
        face = result.faces[0]
        self.post_message(ImageClassified(path, _whole_prediction(path, face.p_fake, face.label, result.latency_ms)))

    def _position(self, path: Path) -> str:
        images = images_in(path.parent)
        if path in images:
            return f"{images.index(path) + 1}/{len(images)} in {path.parent.name or path.parent}"
        return str(path.parent)

    def on_image_decoded(self, message: ImageDecoded) -> None:
        if message.path != self.current_image:
            return
        view = self.query_one("#image-view", ImageView)
        caption = f"{message.path.name}  ({self._position(message.path)})"
        if message.image is None:
            view.clear(f"Cannot read {message.path.name}: {message.error}", caption=caption)
            self.query_one("#verdict", ProbBars).show_message(
                f"{message.path.name} could not be read: {message.error}", error=True
            )
            return
        view.show_image(message.image, caption)
        if message.error:
            self.query_one("#verdict", ProbBars).show_message(message.error, error=True)

    def on_image_classified(self, message: ImageClassified) -> None:
        if message.path != self.current_image:
            return
        pred = message.prediction
        bars = self.query_one("#verdict", ProbBars)
        if pred.label is None:
            bars.show_message(f"{message.path.name}: {pred.error}", error=True)
            return
        threshold = self.predictor.threshold if self.predictor else 0.5
        bars.show(Verdict(pred.label, pred.p_real, pred.p_fake, pred.latency_ms, threshold))
        scene = self.scene
        if scene is not None and scene.photo is not None and scene.picture is not None:
            # z on a photo: say plainly that this is not a face's verdict.
            scene.chosen = "whole"
            self.query_one("#image-view", ImageView).show_image(
                scene.picture, f"{message.path.name}  WHOLE PICTURE scored as one face (weak guess)")

    def _show_problem(self, path: Path, text: str) -> None:
        self.current_image = path
        self.query_one("#image-view", ImageView).clear(text)
        self.query_one("#verdict", ProbBars).show_message(text, error=True)

    def _walk(self, step: int) -> None:
        current = self.current_image
        if current is None:
            images = images_in(self._folder or self.query_one("#image-tree", ImageTree).path)
            if images:
                self.show_image(images[0] if step > 0 else images[-1])
            else:
                self.notify("Choose an image first (o)", timeout=4)
            return
        images = images_in(current.parent)
        if not images:
            self.notify(f"no images left in {current.parent}", severity="warning")
            return
        if current in images:
            index = images.index(current) + step
        else:  # the file vanished: continue from where it would sort
            index = sum(1 for p in images if p.name < current.name) + (step if step < 0 else 0)
        if index < 0:
            self.notify("first image in this folder", timeout=2)
            return
        if index >= len(images):
            self.notify("last image in this folder", timeout=2)
            return
        self.show_image(images[index])

    def action_next_image(self) -> None:
        self._walk(+1)

    def action_previous_image(self) -> None:
        self._walk(-1)

    # -- a whole folder -------------------------------------------------------------------
    def action_classify_folder(self) -> None:
        folder = self._folder or self.query_one("#image-tree", ImageTree).path
        folder = Path(folder)
        if self.predictor is None:
            self.notify("Choose weights first (w)", severity="warning", timeout=4)
            return
        if not folder.is_dir():
            self.notify(f"{folder} is not a folder", severity="error")
            return
        self.table_folder = folder
        self.rows = {}
        self._sort_column, self._sort_reverse = None, False
        table = self.query_one("#folder-table", DataTable)
        table.clear(columns=True)
        # The file name comes after the short columns (as in ``ls -l``): on a narrow screen
        # the verdict and the truth stay in view and a long name is what scrolls.
        table.add_column("Verdict", key="verdict")
        table.add_column("P(fake)", key="p_fake")
        table.add_column("Truth", key="truth")
        table.add_column("ms", key="ms")
        table.add_column("File", key="file")
        table.add_column("Note", key="note")
        self.query_one("#classify-tabs", TabbedContent).active = "tab-folder"
        self._folder_status(f"Listing images and videos in {folder}… (faces {self.face_mode}; x stops)")
        self._folder_running = True
        self._folder_stop = threading.Event()
        self._classify_folder(folder, self.predictor, self.face_mode, self.rule, self._folder_stop)
        table.focus()

    @work(thread=True, exclusive=True, group="classify-folder", exit_on_error=False)
    def _classify_folder(self, folder: Path, predictor: Predictor, face_mode: str = "auto",
                         rule: str = DEFAULT_AGGREGATE, flag: threading.Event | None = None) -> None:
        """Every image and video under ``folder``, as ``dftui predict --faces MODE`` judges
        them: pictures that are judged whole go through the batched path; a scene photo is
        searched for faces (one row, its most suspicious face); a video is sampled and
        aggregated (one row). Cancellable between pictures and inside a video."""
        from dftui.core.clip import judge_video
        from dftui.core.media import expand_media
        from dftui.core.photo import PhotoJudge, judged_whole
        from dftui.core.video import Sampling

        worker = get_current_worker()
        stop = _FolderStop(flag or threading.Event(), worker)
        try:
            paths = expand_media([str(folder)])
            if not paths:
                self.post_message(FolderFinished(
                    folder, 0, f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) or videos in {folder}"))
                return
            # Its own detector: the image view's may be busy in the other worker at the same time.
            judge = PhotoJudge(predictor, None, mode=face_mode)
            chunk: list[tuple[Prediction, str, str]] = []
            pending: list[Path] = []  # pictures judged whole, batched
            done = 0

            def add(pred: Prediction, note: str = "") -> None:
                nonlocal done, chunk
                chunk.append((pred, truth_of(Path(pred.path), folder), note))
                done += 1
                if len(chunk) >= FOLDER_BATCH:
                    self.post_message(FolderRows(folder, chunk, done, len(paths)))
                    chunk = []

            def flush() -> bool:
                """Judge the pending pictures; False when stopped."""
                whole = "judged whole (faces off)" if face_mode == "off" else "judged whole (looks like a face crop)"
                for pred in predictor.predict_paths(list(pending), batch_size=FOLDER_BATCH):
                    if stop.is_set():
                        return False
                    add(pred, whole if pred.label is not None else "")
                pending.clear()
                return True

            def send() -> None:
                nonlocal chunk
                if chunk:
                    self.post_message(FolderRows(folder, chunk, done, len(paths)))
                    chunk = []

            for path in paths:
                if stop.is_set():
                    break
                if is_video(path) or not judged_whole(path, face_mode):
                    if not flush():
                        break
                    send()  # the rows so far reach the table before a slow video
                    if is_video(path):
                        result = judge_video(judge, path, Sampling(count=VIDEO_FRAMES), rule, stop=stop)  # type: ignore[arg-type]
                        if result.stopped and stop.is_set():
                            break  # stopped by the user: the partial video is not a verdict
                        add(*video_row(result))
                    else:
                        add(*photo_row(judge.judge_path(path)))
                else:
                    pending.append(path)
                    if len(pending) >= FOLDER_BATCH and not flush():
                        break
            else:
                if flush():
                    send()
                    self.post_message(FolderFinished(folder, done))
                    return
            send()
            self.post_message(FolderFinished(folder, done, cancelled=True))
        except Exception as exc:  # noqa: BLE001 - the screen must stay usable
            self.post_message(FolderFinished(folder, 0, unexpected_error(exc)))

    def on_folder_rows(self, message: FolderRows) -> None:
        if message.folder != self.table_folder:
            return
        table = self.query_one("#folder-table", DataTable)
        for pred, truth, note in message.rows:
            key = pred.path
            if key in self.rows:  # the same file named twice: keep the first row
                continue
            self.rows[key] = _Row(pred, truth, note)
            table.add_row(*self._cells(pred, truth, message.folder, note), key=key)
        self._folder_status(f"Classifying {message.folder}: {message.done}/{message.total}")

    def _cells(self, pred: Prediction, truth: str, folder: Path, note: str = "") -> list[Any]:
        try:
            name = str(Path(pred.path).relative_to(folder))
        except ValueError:
            name = pred.path
        if pred.label is None:
            # No face found is not a broken file: say which it is.
            no_face = pred.error.lower().startswith("no face")
            verdict = Text("no face" if no_face else "unreadable", style="yellow")
            p_fake = Text("—", justify="right")
            ms = Text("—", justify="right")
        else:
            verdict = Text(pred.label.upper(), style="bold red" if pred.label == "fake" else "bold green")
            p_fake = Text(f"{pred.p_fake:.3f}", justify="right")
            ms = Text(f"{pred.latency_ms:.1f}", justify="right")
        if truth and pred.label is not None:
            mark = Text(f"{truth} {'✓' if truth == pred.label else '✗'}",
                        style="green" if truth == pred.label else "red")
        else:
            mark = Text(truth)
        return [verdict, p_fake, mark, ms, Text(name),
                Text(pred.error, style="yellow") if pred.error else Text(note, style="dim")]

    def on_folder_finished(self, message: FolderFinished) -> None:
        if message.folder != self.table_folder:
            return
        self._folder_running = False
        if message.error:
            self._folder_status(message.error, error=True)
            self.notify(message.error, severity="error", timeout=8)
            return
        if message.cancelled:
            self._folder_status(f"Stopped after {message.total} files (x) · {self._summary()}")
            return
        self._folder_status(self._summary())

    def _summary(self) -> str:
        preds = [r.prediction for r in self.rows.values()]
        fake = sum(1 for p in preds if p.label == "fake")
        real = sum(1 for p in preds if p.label == "real")
        bad = sum(1 for p in preds if p.label is None)
        text = f"{len(preds)} files: {real} real, {fake} fake"
        if bad:
            text += f", {bad} without a verdict (see Note)"
        judged = [r for r in self.rows.values() if r.truth and r.prediction.label]
        if judged:
            right = sum(1 for r in judged if r.truth == r.prediction.label)
            text += f" · accuracy vs folders {right / len(judged):.1%}"
        return text + " · s sort, e export"

    def _folder_status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#folder-status", Static)
        status.update(Text(text))  # wraps: the accuracy at its end must stay readable
        status.styles.color = "red" if error else None

    def action_sort(self) -> None:
        if not self.rows:
            self.notify("Nothing to sort: classify a folder first (f)", timeout=3)
            return
        index = SORT_COLUMNS.index(self._sort_column) + 1 if self._sort_column in SORT_COLUMNS else 0
        column = SORT_COLUMNS[index % len(SORT_COLUMNS)]
        # Probabilities read best from the most suspicious down.
        self.sort_table(column, reverse=column == "p_fake")

    @on(DataTable.HeaderSelected, "#folder-table")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if column not in SORT_COLUMNS:
            return
        reverse = not self._sort_reverse if column == self._sort_column else False
        self.sort_table(column, reverse)

    def sort_table(self, column: str, reverse: bool = False) -> None:
        table = self.query_one("#folder-table", DataTable)
        table.sort(column, key=_sort_key(column), reverse=reverse)
        self._sort_column, self._sort_reverse = column, reverse
        self.query_one("#classify-tabs", TabbedContent).active = "tab-folder"
        arrow = "↓" if reverse else "↑"
        base = self._summary() if not self._folder_running else "Classifying…"
        self._folder_status(f"sorted by {SORT_TITLES[column]} {arrow} · {base}")

    def ordered_rows(self) -> list[_Row]:
        """The table's rows in the order shown."""
        table = self.query_one("#folder-table", DataTable)
        return [self.rows[str(row.key.value)] for row in table.ordered_rows]

    def action_export_csv(self) -> None:
        if not self.rows or self.table_folder is None:
            self.notify("Nothing to export: classify a folder first (f)", timeout=3)
            return
        if self._folder_running:
            self.notify("Still classifying; export when the table is complete", timeout=3)
            return

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.export_csv(path)

        self.app.push_screen(ExportScreen(default_csv_path(self.table_folder), len(self.rows)), chosen)

    def export_csv(self, path: Path) -> None:
        rows = [(r.prediction, r.truth) for r in self.ordered_rows()]
        try:
            write_predictions_csv(path, rows)
        except OSError as exc:
            self.notify(f"could not write {path}: {describe_error(exc)}", severity="error", timeout=8)
            return
        self.last_export = path
        self.notify(f"wrote {len(rows)} rows to {path}", title="CSV exported", timeout=6)

    # -- focus / tabs ---------------------------------------------------------------------
    def action_focus_weights(self) -> None:
        self.query_one("#weights-list").focus()

    def action_leave_input(self) -> None:
        if isinstance(self.focused, Input):
            self.query_one("#image-tree").focus()

    def action_focus_images(self) -> None:
        self.query_one("#image-tree").focus()

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#classify-tabs", TabbedContent).active = tab
