"""Evaluate screen: weights on one or more real/fake test folders side by side, with metric
cards, the confusion matrix, a ROC curve, keys that move the decision threshold, and a table
of misclassified images (most confident first) whose Enter opens the image with its Grad-CAM.

torch loads inside the thread workers (``dftui.core.predict`` imports it), never when this
module is imported. Each finished evaluation is saved as a record (``dftui.core.evaluate``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, Vertical
from textual.coordinate import Coordinate
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    OptionList,
    ProgressBar,
    Static,
)
from textual.widgets.option_list import Option

from dftui.core.errors import unexpected_error
from dftui.core.evaluate import EvaluationResult
from dftui.core.events import EvalFinished, EvalProgress, EvalStarted, LogMessage
from dftui.core.metrics import DEFAULT_THRESHOLD, Metrics
from dftui.core.video_eval import video_level
from dftui.ui.messages import EngineEvent, engine_poster
from dftui.ui.widgets.image_view import ImageView
from dftui.ui.widgets.navbar import NavBar
from dftui.ui.widgets.reliability import ReliabilityChart
from dftui.ui.widgets.roc import RocChart
from dftui.ui.widgets.weights_picker import WeightsPicker, read_typed

if TYPE_CHECKING:
    from dftui.core.gradcam import CamResult
    from dftui.core.predict import Predictor

DEFAULT_WEIGHTS_DIR = Path("weights")
DEFAULT_DATA_ROOT = Path("processed_data")
STEP_SMALL = 0.01
STEP_LARGE = 0.05
MAX_ERROR_ROWS = 500  # the table shows the most confident errors; the CSV record has all


def has_class_folders(folder: Path) -> bool:
    """Cheap check that ``folder`` holds real/ and fake/ (any case)."""
    try:
        names = {p.name.lower() for p in folder.iterdir() if p.is_dir()}
    except OSError:
        return False
    return {"real", "fake"} <= names


def default_test_folders(root: Path = DEFAULT_DATA_ROOT) -> list[Path]:
    """``processed_data/test*_cropped`` (Test-Dev, Test-Challenge) when they exist."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("test*") if p.is_dir() and has_class_folders(p))


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if pct else f"{value:.3f}"


def _delta(value: float, pct: bool) -> Text:
    text = f"{value:+.1%}" if pct else f"{value:+.3f}"
    return Text(text, style="green" if value > 0 else "red" if value < 0 else "")


# -- messages from the workers ----------------------------------------------------------------
class EvalResultReady(Message):
    def __init__(self, result: EvaluationResult) -> None:
        super().__init__()
        self.result = result


class EvalEnded(Message):
    def __init__(self, error: str = "", stopped: bool = False) -> None:
        super().__init__()
        self.error = error
        self.stopped = stopped


class RobustnessReady(Message):
    def __init__(self, robust: Any, error: str = "") -> None:
        super().__init__()
        self.robust = robust
        self.error = error


class RobustnessScreen(ModalScreen[None]):
    """Accuracy and AUC per corruption and severity, against the clean images."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="evaluate.robust_close")]

    def __init__(self, robust: Any) -> None:
        super().__init__()
        self.robust = robust

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Robustness on {Path(self.robust.clean.folder).name}"
                              + (" (stopped early)" if self.robust.stopped else "")),
                         id="robust-title")
            yield DataTable(id="robust-table", cursor_type="row", zebra_stripes=True)
            yield Static("accuracy at the threshold of the evaluation; Escape closes",
                         classes="hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("corruption", "images", "accuracy", "Δ accuracy", "AUC", "EER")
        base = self.robust.rows[0].accuracy
        for row in self.robust.rows:
            delta = row.accuracy - base
            table.add_row(row.label, str(row.n), _fmt(row.accuracy),
                          Text(f"{delta:+.1%}", style="red" if delta < -0.02 else ""),
                          _fmt(row.roc_auc, pct=False), _fmt(row.eer))
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)


class CamReady(Message):
    def __init__(self, path: str, result: CamResult | None, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.result = result
        self.error = error


# -- small widgets ----------------------------------------------------------------------------
class MetricCard(Static):
    DEFAULT_CSS = """
    MetricCard {
        width: 1fr;
        height: 4;
        border: round $primary;
        content-align: center middle;
        text-align: center;
        min-width: 10;
    }
    MetricCard.-line {
        height: 1;
        border: none;
        content-align: left middle;
        text-align: left;
    }
    """

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.card_title = title
        self.value = "-"

    def set_value(self, value: str) -> None:
        self.value = value
        self._render_value()

    def _render_value(self) -> None:
        # A narrow screen shows each card as one line ("Accuracy 75.0%"), so all nine fit.
        line = self.has_class("-line")
        text = Text(self.card_title + (" " if line else "\n"), style="dim", overflow="ellipsis",
                    no_wrap=True)
        text.append(self.value, style="bold")
        self.update(text)

    def set_line(self, line: bool) -> None:
        if line != self.has_class("-line"):
            self.set_class(line, "-line")
            self._render_value()


CARDS = (
    ("accuracy", "Accuracy"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("roc_auc", "ROC AUC"),
    ("average_precision", "Avg prec"),
    ("eer", "EER"),
    ("real_accuracy", "Real acc"),
    ("fake_accuracy", "Fake acc"),
)


class CamScreen(ModalScreen[None]):
    """One misclassified image beside its Grad-CAM overlay; c explains the other class."""

    BINDINGS = [
        Binding("escape,q", "close", "Close", id="evaluate.cam_close"),
        Binding("c", "other_class", "Other class", id="evaluate.cam_class",
                tooltip="Show the evidence for the other class"),
    ]

    def __init__(self, owner: EvaluateScreen, path: str, truth: int, p_fake: float) -> None:
        super().__init__()
        self.owner = owner
        self.path = path
        self.truth = truth
        self.p_fake = p_fake
        self.target: int | None = None  # None: the predicted class
        self.result: CamResult | None = None
        self.error = ""

    def compose(self) -> ComposeResult:
        truth = "fake" if self.truth else "real"
        with Vertical():
            yield Static(Text(f"{Path(self.path).name}   truth {truth}   p_fake {self.p_fake:.3f}"),
                         id="cam-title")
            with Horizontal(id="cam-images"):
                yield ImageView("loading...", id="cam-original")
                yield ImageView("computing Grad-CAM...", id="cam-overlay")
            yield Static("Grad-CAM on the backbone's last convolutional block; red = strongest "
                         "evidence. c: other class, Escape: close", id="cam-note")

    def on_mount(self) -> None:
        self.compute()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gradcam")
    def compute(self) -> None:
        try:
            from dftui.core.gradcam import grad_cam

            predictor = self.owner.predictor_for_results()
            with self.owner.model_lock:
                result = grad_cam(predictor, self.path, target=self.target)
            self.post_message(CamReady(self.path, result))
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a traceback
            self.post_message(CamReady(self.path, None, unexpected_error(exc)))

    def on_cam_ready(self, message: CamReady) -> None:
        self.error = message.error
        if message.result is None:
            self.query_one("#cam-overlay", ImageView).clear(f"Grad-CAM failed: {message.error}")
            return
        res = message.result
        self.result = res
        self.query_one("#cam-original", ImageView).show_image(res.image, "image")
        self.query_one("#cam-overlay", ImageView).show_image(
            res.overlay, f"evidence for {res.target_name} ({res.layer})"
        )

    def action_other_class(self) -> None:
        current = self.result.target if self.result else (1 if self.p_fake >= 0.5 else 0)
        self.target = 1 - current
        self.query_one("#cam-overlay", ImageView).clear("computing Grad-CAM...")
        self.compute()

    def action_close(self) -> None:
        self.dismiss(None)


# -- the screen -------------------------------------------------------------------------------
NARROW_BELOW = 120  # columns: below this the panes stack and the body scrolls


# One footer entry for the two threshold keys, so the footer fits 80 columns.
_THRESHOLD_KEYS = Binding.Group("Threshold", compact=True)


class _Body(ScrollableContainer):
    """The screen body: a Tab stop only when there is something to scroll (narrow screens)."""

    def allow_focus(self) -> bool:
        return self.allow_vertical_scroll


class EvaluateScreen(Screen[None]):
    TITLE = "Evaluate"
    BINDINGS = [
        Binding("r", "run", "Evaluate", id="evaluate.run"),
        Binding("s", "stop", "Stop", id="evaluate.stop"),
        Binding("right_square_bracket,plus,equals_sign", "threshold(0.01)", "Threshold +",
                id="evaluate.threshold_up", group=_THRESHOLD_KEYS),
        Binding("left_square_bracket,minus", "threshold(-0.01)", "Threshold −",
                id="evaluate.threshold_down", group=_THRESHOLD_KEYS),
        Binding("right_curly_bracket", "threshold(0.05)", "Threshold +0.05", show=False,
                id="evaluate.threshold_up_large"),
        Binding("left_curly_bracket", "threshold(-0.05)", "Threshold −0.05", show=False,
                id="evaluate.threshold_down_large"),
        Binding("0", "reset_threshold", "Threshold 0.5", show=False, id="evaluate.threshold_reset"),
        Binding("E", "eer_threshold", "Threshold at EER", show=False, id="evaluate.threshold_eer"),
        Binding("n", "next_result", "Next folder", id="evaluate.next"),
        Binding("k", "robustness", "Robustness", id="evaluate.robustness",
                tooltip="Evaluate the shown folder under JPEG, blur, noise and rescaling"),
        Binding("x", "remove_folder", "Remove folder", show=False, id="evaluate.remove_folder"),
        Binding("b", "compare_highlighted", "Compare with", show=False, id="evaluate.compare",
                tooltip="Evaluate the highlighted weights too, as B beside A"),
        Binding("w", "focus('#eval-weights')", "Weights", show=False, id="evaluate.focus_weights"),
        Binding("o", "focus('#eval-folder-path')", "Add folder", show=False,
                id="evaluate.focus_folder"),
        Binding("m", "focus('#eval-errors')", "Errors", id="evaluate.focus_errors",
                tooltip="Focus the misclassified images (Enter: Grad-CAM)"),
    ]
    # Below 120 columns the side pane stacks above the results and the whole body scrolls
    # (focus scrolls a widget into view), so at 80x24 every part is reachable by keyboard.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]

    def __init__(
        self,
        weights: Path | str | None = None,
        folders: list[Path | str] | None = None,
        *,
        weights_dir: Path | str | None = None,
        device: str = "auto",
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        self._initial_weights = Path(weights).expanduser() if weights else None
        self._weights_dir = Path(weights_dir) if weights_dir else DEFAULT_WEIGHTS_DIR
        self.folders: list[Path] = [Path(f).expanduser() for f in folders] if folders else (
            default_test_folders()
        )
        self.device = device
        self.batch_size = batch_size
        self.weights_path: Path | None = self._initial_weights
        self.results: list[EvaluationResult] = []
        self.current = 0
        self.threshold = DEFAULT_THRESHOLD
        self._eval_running = False
        self.status_text = ""
        self._stop = threading.Event()
        self.compare_path: Path | None = None  # weights B, evaluated beside A when set
        # Loaded models by weights path, with the file's mtime when loaded.
        self._predictors: dict[str, tuple[float | None, Predictor]] = {}
        self._predictor_lock = threading.Lock()
        self.model_lock = threading.Lock()  # one forward pass at a time on the shared model
        self._errors_shown: list[Any] = []
        self.last_robustness: Any = None

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield NavBar("evaluate")
        with _Body(id="eval-body"):
            with Vertical(id="eval-side"):
                yield Label("Weights (w)", classes="section")
                yield WeightsPicker(self._weights_dir, id="eval-weights")
                yield Input(placeholder="or a weights path, Enter", id="eval-weights-path",
                            compact=True)
                yield Input(placeholder="compare with (B): a weights path, Enter; b: the "
                            "highlighted one", id="eval-compare-path", compact=True)
                yield Label("Test folders (x removes)", classes="section")
                yield OptionList(id="eval-folders")
                yield Input(placeholder="add a folder path, Enter (o)",
                            id="eval-folder-path", compact=True)
                yield Button("Evaluate (r)", id="eval-run", variant="primary")
            with Vertical(id="eval-main"):
                yield Static("", id="eval-status")
                # A known total: an indeterminate bar animates (redraws) while idle.
                yield ProgressBar(total=1, id="eval-progress", show_eta=False)
                yield DataTable(id="eval-summary", cursor_type="row", zebra_stripes=True)
                with Horizontal(id="eval-cards"):
                    for key, title in CARDS:
                        yield MetricCard(title, id=f"card-{key}")
                with Horizontal(id="eval-middle"):
                    yield Static("", id="eval-confusion")
                    yield RocChart(id="eval-roc")
                    yield ReliabilityChart(id="eval-reliability")
                yield Static("", id="eval-notes")
                yield DataTable(id="eval-errors", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        summary = self.query_one("#eval-summary", DataTable)
        summary.add_columns("folder", "weights", "images", "unreadable", "accuracy", "Δ acc",
                            "F1", "AUC", "Δ AUC", "EER")
        errors = self.query_one("#eval-errors", DataTable)
        errors.add_columns("file", "truth", "called", "p_fake", "confidence")
        errors.border_title = "Misclassified (Enter: Grad-CAM)"
        self.refresh_weights()
        self._refresh_folders()
        self.query_one("#eval-confusion", Static).border_title = "Confusion"
        self._show_current()
        if self.weights_path is None:
            self._set_status("Choose weights (w) and test folders, then r to evaluate")
        else:
            self._set_status(f"weights {self.weights_path}; r to evaluate")

    def on_screen_resume(self) -> None:
        self.refresh_weights()

    @property
    def running(self) -> bool:
        return self._eval_running

    @running.setter
    def running(self, value: bool) -> None:
        self._eval_running = value
        if self.is_mounted:
            self.refresh_bindings()  # the footer shows Stop only while something runs

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop" and not self.running:
            return False  # hidden from the footer while there is nothing to stop
        return True

    def on_resize(self) -> None:
        narrow = self.size.width < NARROW_BELOW
        for card in self.query(MetricCard):
            card.set_line(narrow)

    def on_unmount(self) -> None:
        self._stop.set()

    # -- weights and folders ---------------------------------------------------------------
    def refresh_weights(self) -> None:
        marks: dict[Path, str] = {}
        if self.weights_path:
            marks[self.weights_path] = "● "
        if self.compare_path:
            marks[self.compare_path] = "B "
        self.query_one("#eval-weights", WeightsPicker).refresh_entries(
            extra=[self.weights_path, self.compare_path], marks=marks, prefer=self.weights_path)

    @on(OptionList.OptionSelected, "#eval-weights")
    def _weights_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.choose_weights(Path(event.option.id))

    @on(Input.Submitted, "#eval-weights-path")
    def _weights_typed(self, event: Input.Submitted) -> None:
        typed = self.query_one("#eval-weights", WeightsPicker).take_typed(event.value)
        if typed.error:
            self._set_status(typed.error, error=True)
        elif typed.folder:
            self._set_status(f"Listing the .pth files in {typed.folder}")
        elif typed.file:
            self.choose_weights(typed.file)

    def choose_weights(self, path: Path) -> None:
        if self.weights_path != path:
            self.weights_path = path
        self.refresh_weights()
        self._set_status(f"weights {path}; r to evaluate")

    @on(Input.Submitted, "#eval-compare-path")
    def _compare_typed(self, event: Input.Submitted) -> None:
        typed = read_typed(event.value)
        if typed.folder:  # B is one file: a folder is listed on the left, to pick from (b)
            self.query_one("#eval-weights", WeightsPicker).take_typed(event.value)
            self._set_status(f"Listing the .pth files in {typed.folder}; b compares the highlighted one")
        elif typed.error:
            self._set_status(typed.error, error=True)
        else:
            self.set_compare(typed.file)  # None (an empty field): no comparison

    def action_compare_highlighted(self) -> None:
        path = self.query_one("#eval-weights", WeightsPicker).highlighted_path
        if path is not None:
            self.set_compare(path)

    def set_compare(self, path: Path | None) -> None:
        """Weights B: evaluated on the same folders, shown beside A with the difference."""
        self.compare_path = path
        self.refresh_weights()
        self._set_status(f"compare with {path.name} (B); r to evaluate" if path else
                         "no comparison")

    def _refresh_folders(self) -> None:
        options = self.query_one("#eval-folders", OptionList)
        options.clear_options()
        for folder in self.folders:
            options.add_option(Option(Text(str(folder)), id=str(folder)))
        if not self.folders:
            options.add_option(Option(Text("none yet: type a path below"), disabled=True))

    @on(Input.Submitted, "#eval-folder-path")
    def _folder_typed(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        path = Path(text).expanduser()
        if self.add_folder(path):
            event.input.value = ""

    def add_folder(self, path: Path) -> bool:
        if not path.is_dir():
            self._set_status(f"folder {path} does not exist", error=True)
            return False
        if not has_class_folders(path):
            self._set_status(f"{path} has no real/ and fake/ subfolders: a test folder needs "
                             "both", error=True)
            return False
        if path not in self.folders:
            self.folders.append(path)
            self._refresh_folders()
        self._set_status(f"{len(self.folders)} test folder(s); r to evaluate")
        return True

    def action_remove_folder(self) -> None:
        options = self.query_one("#eval-folders", OptionList)
        opt = options.highlighted_option
        if opt is None or not opt.id:
            return
        self.folders = [f for f in self.folders if str(f) != opt.id]
        self._refresh_folders()

    # -- running ------------------------------------------------------------------------------
    @on(Button.Pressed, "#eval-run")
    def _run_pressed(self) -> None:
        self.action_run()

    def action_run(self) -> None:
        if self.running:
            self._set_status("an evaluation is running; s stops it")
            return
        if self.weights_path is None:
            self._set_status("choose weights first (w)", error=True)
            return
        if not self.folders:
            self._set_status("add a test folder first (o)", error=True)
            return
        self.running = True
        self._stop = threading.Event()
        self.results = []
        self.current = 0
        self._show_current()
        self._set_status(f"loading {self.weights_path.name}...")
        self._evaluate(self.weights_path, self.compare_path, list(self.folders), self._stop)

    def action_stop(self) -> None:
        if self.running:
            self._stop.set()
            self._set_status("stopping after this batch...")

    def predictor(self, weights: Path) -> Predictor:
        """A loaded model for ``weights`` (call from a worker thread: loading takes time).
        A file changed on disk since it was loaded is loaded again."""
        from dftui.core.predict import Predictor

        key = str(weights)
        stamp = weights.stat().st_mtime if weights.exists() else None
        with self._predictor_lock:
            cached = self._predictors.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            predictor = Predictor(weights, self.device)
            self._predictors.pop(key, None)
            if len(self._predictors) >= 2:  # A and B; older models are dropped
                self._predictors.pop(next(iter(self._predictors)))
            self._predictors[key] = (stamp, predictor)
            return predictor

    def predictor_for_results(self) -> Predictor:
        """The model of the shown result."""
        weights = Path(self.results[self.current].weights) if self.results else self.weights_path
        if weights is None:
            raise RuntimeError("no weights chosen")
        return self.predictor(weights)

    @work(thread=True, exclusive=True, exit_on_error=False, group="evaluate")
    def _evaluate(self, weights: Path, compare: Path | None, folders: list[Path],
                  stop: threading.Event) -> None:
        try:
            import dftui.core.predict  # noqa: F401 - torch loads here, in the worker
            from dftui.core.backbones import WeightsError
            from dftui.core.data import DataError
            from dftui.core.devices import DeviceError
            from dftui.core.evaluate import EvaluationError, evaluate_folder, save_evaluation
        except Exception as exc:  # noqa: BLE001 - a broken torch install
            self.post_message(EvalEnded(f"cannot load the engine: {exc}"))
            return
        try:
            predictors = [self.predictor(weights)]
            if compare is not None:
                predictors.append(self.predictor(compare))
            for p in predictors:
                if p.calibration_warning:
                    self.post_message(EngineEvent(LogMessage(
                        "warning", f"{p.weights.name}: {p.calibration_warning}")))
            jobs = [(folder, p) for folder in folders for p in predictors]
            for i, (folder, predictor) in enumerate(jobs, 1):
                if stop.is_set():
                    self.post_message(EvalEnded(stopped=True))
                    return
                with self.model_lock:
                    result = evaluate_folder(
                        predictor, folder, batch_size=self.batch_size, stop=stop,
                        emit=engine_poster(self),
                        pass_index=i, passes=len(jobs),
                    )
                try:
                    save_evaluation(result)
                except OSError as exc:
                    self.post_message(EngineEvent(LogMessage("warning", f"record not saved: {exc}")))
                self.post_message(EvalResultReady(result))
                if result.stopped:
                    self.post_message(EvalEnded(stopped=True))
                    return
        except (WeightsError, DeviceError, DataError, EvaluationError) as exc:
            from dftui.core.advice import fixes_of
            from dftui.ui.advice import with_advice

            message = with_advice(str(exc), fixes_of(exc))  # fields, not flags
            self.post_message(EvalEnded(message, stopped=stop.is_set()))
            return
        except Exception as exc:  # noqa: BLE001 - shown, never a dead app
            self.post_message(EvalEnded(unexpected_error(exc)))
            return
        self.post_message(EvalEnded())

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event  # merged progress: the latest is all the bar needs
        bar = self.query_one("#eval-progress", ProgressBar)
        bar.add_class("-shown")
        if isinstance(event, (EvalStarted, EvalProgress)):
            done = event.done if isinstance(event, EvalProgress) else 0
            bar.update(total=max(1, event.total), progress=done)
            what = Path(event.folder).name + ("" if event.label == "clean" else f" {event.label}")
            speed = f", {event.images_per_s:.0f} img/s" if isinstance(event, EvalProgress) else ""
            self._set_status(f"scoring {what} ({event.pass_index}/{event.passes}): "
                             f"{done}/{event.total}{speed}")
        elif isinstance(event, EvalFinished):
            bar.update(total=max(1, event.n), progress=event.n)
        elif isinstance(event, LogMessage):
            self.notify(event.text, severity="error" if event.level == "error" else "warning")

    def on_eval_result_ready(self, message: EvalResultReady) -> None:
        self.results.append(message.result)
        self.current = len(self.results) - 1
        self._show_current()
        if len(self.results) == 1:
            # Stacked panes: bring the results into view (the form is above them).
            self.query_one("#eval-main").scroll_visible(top=True, animate=False)

    def on_eval_ended(self, message: EvalEnded) -> None:
        self.running = False
        if message.error:
            self._set_status(message.error, error=True)
        elif message.stopped:
            self._set_status(f"stopped; {len(self.results)} folder(s) evaluated")
        else:
            where = self.results[-1].record_dir if self.results else None
            self._set_status(
                f"done: {len(self.results)} folder(s) evaluated"
                + (f"; saved under {Path(where).parent}" if where else "")
            )

    # -- robustness ---------------------------------------------------------------------------
    def action_robustness(self) -> None:
        if self.running:
            self._set_status("an evaluation is running; s stops it")
            return
        if not self.results:
            self._set_status("evaluate first (r), then k measures robustness", error=True)
            return
        self.running = True
        self._stop = threading.Event()
        clean = self.results[self.current]
        self._set_status(f"robustness of {Path(clean.folder).name}: starting...")
        self._robustness(clean, self._stop)

    @work(thread=True, exclusive=True, exit_on_error=False, group="evaluate")
    def _robustness(self, clean: EvaluationResult, stop: threading.Event) -> None:
        try:
            from dftui.core.augment import CORRUPTIONS
            from dftui.core.evaluate import robustness, save_evaluation

            predictor = self.predictor_for_results()
            with self.model_lock:
                robust = robustness(predictor, clean.folder, list(CORRUPTIONS), clean=clean,
                                    threshold=clean.threshold, batch_size=self.batch_size,
                                    stop=stop, emit=engine_poster(self))
            try:
                save_evaluation(clean, robust)
            except OSError as exc:
                self.post_message(EngineEvent(LogMessage("warning", f"record not saved: {exc}")))
            self.post_message(RobustnessReady(robust))
        except Exception as exc:  # noqa: BLE001 - shown, never a dead app
            self.post_message(RobustnessReady(None, unexpected_error(exc)))

    def on_robustness_ready(self, message: RobustnessReady) -> None:
        self.running = False
        if message.robust is None:
            self._set_status(f"robustness failed: {message.error}", error=True)
            return
        self.last_robustness = message.robust
        self._set_status("robustness done" + (" (stopped early)" if message.robust.stopped else ""))
        self.app.push_screen(RobustnessScreen(message.robust))

    # -- threshold and results --------------------------------------------------------------
    def action_threshold(self, delta: float) -> None:
        self.set_threshold(self.threshold + float(delta))

    def action_reset_threshold(self) -> None:
        self.set_threshold(DEFAULT_THRESHOLD)

    def action_eer_threshold(self) -> None:
        if self.results and self.results[self.current].metrics.eer_threshold is not None:
            self.set_threshold(self.results[self.current].metrics.eer_threshold)

    def set_threshold(self, value: float) -> None:
        self.threshold = round(min(1.0, max(0.0, value)), 4)
        self._show_current()

    def action_next_result(self) -> None:
        if self.results:
            self.current = (self.current + 1) % len(self.results)
            self.query_one("#eval-summary", DataTable).move_cursor(row=self.current)
            self._show_details()

    @on(DataTable.RowHighlighted, "#eval-summary")
    def _summary_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Only _show_details here: rebuilding the table would move its cursor again.
        if 0 <= event.cursor_row < len(self.results) and event.cursor_row != self.current:
            self.current = event.cursor_row
            self._show_details()

    def current_metrics(self) -> Metrics | None:
        if not self.results:
            return None
        return self.results[self.current].metrics_at(self.threshold)

    def _show_current(self) -> None:
        """Everything: the folders table and the current folder's details."""
        self._fill_summary()
        self._show_details()

    def _show_details(self) -> None:
        m = self.current_metrics()
        roc = self.query_one("#eval-roc", RocChart)
        reliability = self.query_one("#eval-reliability", ReliabilityChart)
        confusion = self.query_one("#eval-confusion", Static)
        notes = self.query_one("#eval-notes", Static)
        errors = self.query_one("#eval-errors", DataTable)
        errors.clear()
        self._errors_shown = []
        if m is None:
            for key, _ in CARDS:
                self.query_one(f"#card-{key}", MetricCard).set_value("-")
            confusion.update(Text(f"threshold {self.threshold:.2f}", style="dim"))
            roc.clear_curve()
            reliability.clear_bins()
            notes.update("")
            return
        result = self.results[self.current]
        for key, _ in CARDS:
            value = getattr(m, key)
            self.query_one(f"#card-{key}", MetricCard).set_value(_fmt(value, key != "roc_auc"))
        c = m.confusion
        table = Text()
        table.append(f"threshold {self.threshold:.2f} on p_fake\n\n", style="bold")
        table.append(f"{'':>6} {'→ real':>8} {'→ fake':>8}\n", style="dim")
        table.append(f"{'real':>6} {c.tn:>8} ")
        table.append(f"{c.fp:>8}\n", style="red" if c.fp else "")
        table.append(f"{'fake':>6} ")
        table.append(f"{c.fn:>8}", style="red" if c.fn else "")
        table.append(f" {c.tp:>8}\n")
        table.append(f"\n{m.n} scored, {len(result.unreadable)} unreadable", style="dim")
        # Calibration does not depend on the threshold (confidence of the chosen class).
        ece = result.ece
        table.append(f"\n{result.calibration_label}\nECE {ece:.3f}  Brier {result.brier:.3f}")
        # Crops named by `prepare folder` (<video>__<frame>-<face>): the verdict per video too.
        per_video = video_level(result.images, self.threshold)
        if per_video is not None:
            auc = "n/a" if per_video.roc_auc is None else f"{per_video.roc_auc:.3f}"
            eer = "n/a" if per_video.eer is None else f"{per_video.eer:.1%}"
            table.append(f"\nper video ({len(per_video.videos)}): AUC {auc}, EER {eer}", style="bold")
        confusion.update(table)
        if m.roc_auc is not None:
            curve = result.roc()
            point = (
                c.fp / (c.fp + c.tn) if c.fp + c.tn else 0.0,
                c.tp / (c.tp + c.fn) if c.tp + c.fn else 0.0,
            )
            roc.show(curve.fpr.tolist(), curve.tpr.tolist(), point,
                     f"ROC {Path(result.folder).name}  AUC {m.roc_auc:.3f}")
        else:
            roc.clear_curve("ROC undefined: one class only")
        reliability.show(result.reliability(), f"Reliability  ECE {ece:.3f}")
        notes.update(Text("\n".join(m.notes)))
        wrong = result.misclassified(self.threshold)
        errors.border_title = (
            f"Misclassified: {len(wrong)} (Enter: Grad-CAM)"
            + (f", first {MAX_ERROR_ROWS} shown" if len(wrong) > MAX_ERROR_ROWS else "")
        )
        self._errors_shown = wrong[:MAX_ERROR_ROWS]
        for im in self._errors_shown:
            called = im.predicted(self.threshold)
            errors.add_row(
                Text(Path(im.path).name),
                "fake" if im.label else "real",
                "fake" if called else "real",
                f"{im.p_fake:.3f}",
                f"{max(im.p_fake, 1 - im.p_fake):.3f}",
            )

    def _baseline(self, res: EvaluationResult) -> EvaluationResult | None:
        """A's result on the same folder, when ``res`` is B's."""
        for other in self.results:
            if other.folder == res.folder:
                return None if other is res else other
        return None

    def _summary_cells(self, res: EvaluationResult) -> list[Any]:
        m = res.metrics_at(self.threshold)
        base = self._baseline(res)
        d_acc = d_auc = ""
        if base is not None:
            mb = base.metrics_at(self.threshold)
            d_acc = _delta(m.accuracy - mb.accuracy, pct=True)
            if m.roc_auc is not None and mb.roc_auc is not None:
                d_auc = _delta(m.roc_auc - mb.roc_auc, pct=False)
        return [
            Text(Path(res.folder).name + (" (stopped)" if res.stopped else "")),
            Text(("B " if base is not None else "") + Path(res.weights).name),
            str(m.n),
            str(len(res.unreadable)),
            _fmt(m.accuracy),
            d_acc,
            _fmt(m.f1),
            _fmt(m.roc_auc, pct=False),
            d_auc,
            _fmt(m.eer),
        ]

    def _fill_summary(self) -> None:
        """Rows are rebuilt only when the results change; a threshold change updates the
        cells in place, so the cursor (the folder shown) stays where it is."""
        summary = self.query_one("#eval-summary", DataTable)
        if summary.row_count != len(self.results):
            summary.clear()
            for res in self.results:
                summary.add_row(*self._summary_cells(res))
            if self.results:
                summary.move_cursor(row=self.current, animate=False)
            return
        for row, res in enumerate(self.results):
            for col, cell in enumerate(self._summary_cells(res)):
                summary.update_cell_at(Coordinate(row, col), cell)

    @on(DataTable.RowSelected, "#eval-errors")
    def _error_selected(self, event: DataTable.RowSelected) -> None:
        self.open_error(event.cursor_row)

    def open_error(self, index: int) -> None:
        if not 0 <= index < len(self._errors_shown):
            return
        im = self._errors_shown[index]
        self.app.push_screen(CamScreen(self, im.path, im.label, im.p_fake))

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_text = text
        status = self.query_one("#eval-status", Static)
        status.update(Text(text))
        status.set_class(error, "-error")
