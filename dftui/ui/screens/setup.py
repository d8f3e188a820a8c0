"""Setup: choose a backbone, the data, the hyperparameters and the output, then start.

Fields are validated as they are typed; folders are scanned in a thread as soon as they are
chosen; the choices are remembered between launches. Nothing here imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static
from textual.worker import get_current_worker

from dftui.core.backbones import BACKBONES, offline
from dftui.core.checkpoint import preview_weights_path
from dftui.core.config import ConfigError, TrainConfig, img_size_problem, weights_name_problem
from dftui.core.data import DataError, DatasetScan, scan_folder
from dftui.core.options import Option, options
from dftui.ui import option_fields
from dftui.ui.messages import DataFoldersReady, TorchReady
from dftui.ui.screens.base import DftuiScreen
from dftui.ui.widgets.folder_picker import FolderPicker, shown_path
from dftui.ui.widgets.navbar import NavBar
from dftui.ui.widgets.tickbox import TickBox

DEFAULTS = TrainConfig()
PRETRAINED_FILE = "file"
DEVICE_LOADING = "auto-loading"  # a placeholder value, so filling the list changes the value
DDP_PREFIX = "ddp:"  # a Device choice "ddp:N": N GPUs, one training process each
SCAN_DELAY_S = 0.3  # typing a path rescans once the user pauses
SAVE_DELAY_S = 1.0

# The options this form lays out by hand (rows, notes, browsing); every other option of
# TrainConfig with form=True gets a derived row (ui/option_fields.py) after them. Checks and
# choices of all of them come from the option table.
HAND_LAID = frozenset({
    "backbone", "train_dir", "val_dir", "epochs", "batch_size", "lr", "img_size", "pretrained",
    "device", "precision", "workers", "seed", "augment", "out_dir", "weights_name", "overwrite",
})
# The one hand-laid widget that holds two options: the weights path (folder + file name).
WEIGHTS_OPTIONS = ("out_dir", "weights_name")


def option_table() -> dict[str, Option]:
    return {opt.name: opt for opt in options(TrainConfig)}


def _default_text(name: str) -> str:
    return option_fields.text_default(option_table()[name])


# Text fields laid out by hand: id -> default text (from the declared defaults).
TEXT_FIELDS: dict[str, str] = {
    **{name: _default_text(name) for name in
       ("train_dir", "val_dir", "epochs", "batch_size", "lr", "img_size")},
    "pretrained_path": "",
    **{name: _default_text(name) for name in ("workers", "seed")},
    "weights": "",
}


def default_weights(backbone: str) -> str:
    return str(DEFAULTS.out_dir / f"{backbone}_deepfake.pth")


# -- validation (pure functions, so tests can call them directly) -------------------------
def validate_field(field: str, text: str, backbone: str) -> str | None:
    """The message for a bad value of ``field``, or None when it is fine. An option's text
    is checked by its declaration (Option.from_text and Option.problem: the engine's rules,
    worded with the option's label), so the form has no rules of its own."""
    if field == "weights":
        if not text.strip():
            return "weights path: enter a file name such as weights/model.pth"
        if Path(text.strip()).expanduser().is_dir():
            return "weights path: this is a folder; give a file name ending in .pth"
        # The same rule as the engine's (TrainConfig.validate), shown on the field.
        problem = weights_name_problem(Path(text.strip()).name)
        return f"weights path: {problem}" if problem else None
    if field in ("train_dir", "val_dir"):
        return None if text.strip() else "enter a folder that holds real/ and fake/"
    opt = option_table().get(field)
    if opt is None:
        return None
    try:
        value = opt.from_text(text)
    except ValueError as exc:
        return str(exc)
    problem = opt.problem(value)
    if problem is None and field == "img_size":
        problem = img_size_problem(value, backbone)  # the rule tying it to the backbone
    return problem


def weights_note(path_text: str, overwrite: bool) -> tuple[str, str]:
    """(css class, text) describing what saving to ``path_text`` would do."""
    path = Path(path_text.strip()).expanduser()
    if not path_text.strip():
        return "hint", ""
    if path.exists():
        if overwrite:
            return "warning", f"⚠ {path} exists and will be REPLACED by this run's best weights"
        return "warning", (
            f"⚠ {path} exists and is kept: this run saves to {preview_weights_path(path).name} "
            "(tick Overwrite to replace it)"
        )
    return "hint", f"best weights are saved to {path} (metadata beside it as .json)"


def backbone_note(name: str) -> tuple[str, str]:
    spec = BACKBONES[name]
    base = f"{spec.params_2class:,} params · {spec.input_size}×{spec.input_size} px"
    if not spec.weights_file:
        return "warning", f"{base} · no ImageNet weights: set Pretrained to none or file…"
    if spec.cached_weights.is_file():
        return "ok", f"{base} · ImageNet weights cached ✓"
    where = f"put {spec.weights_file} in {spec.cached_weights.parent}"
    if offline():
        return "warning", (
            f"{base} · ImageNet weights not cached and offline (DFTUI_OFFLINE): {where}, "
            "or set Pretrained to file… / none"
        )
    return "warning", (
        f"{base} · ImageNet weights not cached: downloaded on start ({where} to skip that)"
    )


def scan_text(scan: DatasetScan) -> tuple[str, str]:
    parts = [f"{scan.counts['real']:,} real", f"{scan.counts['fake']:,} fake"]
    if scan.unreadable:
        parts.append(f"{len(scan.unreadable):,} unreadable (skipped)")
    text = "✓ " + ", ".join(parts)
    imbalance = [w for w in scan.warnings if "imbalanced" in w]
    if imbalance:
        return "warning", text + "\n⚠ " + imbalance[0]
    if scan.unreadable:
        first, reason = scan.unreadable[0]
        return "warning", text + f"\n⚠ e.g. {Path(first).name}: {reason}"
    return "ok", text


@dataclass
class FolderScanned(Message):
    field: str
    path: str
    css: str
    text: str
    scan: DatasetScan | None = None


class SetupScreen(DftuiScreen[None]):
    TITLE = "Setup"
    BINDINGS = [
        Binding("ctrl+s", "start", "Start training", priority=True, id="setup.start"),
        Binding("ctrl+o", "browse", "Browse folder", id="setup.browse"),
        Binding("ctrl+r", "reset", "Defaults", id="setup.reset"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.errors: dict[str, str] = {}
        self.scans: dict[str, DatasetScan | None] = {"train_dir": None, "val_dir": None}
        self._scan_timers: dict[str, Timer] = {}
        self._save_timer: Timer | None = None
        self._restoring = False
        # The options with no hand-laid row, each shown by a derived widget (id = its name).
        self.generic = [opt for opt in options(TrainConfig)
                        if opt.form and opt.name not in HAND_LAID]

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield NavBar("setup")
        saved = self._saved()
        table = option_table()
        backbones = table["backbone"].all_choices()
        backbone = saved.get("backbone") if saved.get("backbone") in backbones else DEFAULTS.backbone
        with VerticalScroll(id="setup-form"):
            with Horizontal(classes="row"):
                yield Label("Backbone", classes="field-label")
                yield Select(
                    [(BACKBONES[name].title, name) for name in backbones],
                    value=backbone, allow_blank=False, id="backbone", compact=True,
                )
            yield Static("", id="backbone-note", classes="note")
            for field, title in (("train_dir", "Train data"), ("val_dir", "Validation")):
                with Horizontal(classes="row"):
                    yield Label(title, classes="field-label")
                    yield Input(self._text(saved, field), id=field, compact=True,
                                placeholder="folder with real/ and fake/")
                    yield Button("Browse", id=f"browse-{field}", compact=True, classes="browse")
                yield Static("", id=f"{field}-note", classes="note")
            with Horizontal(classes="row"):
                yield Label("Epochs", classes="field-label")
                yield Input(self._text(saved, "epochs"), id="epochs", compact=True, classes="short")
                yield Label("Batch size", classes="field-label2")
                yield Input(self._text(saved, "batch_size"), id="batch_size", compact=True,
                            classes="short")
            with Horizontal(classes="row"):
                yield Label("Learning rate", classes="field-label")
                yield Input(self._text(saved, "lr"), id="lr", compact=True, classes="short")
                yield Label("Image size", classes="field-label2")
                yield Input(self._text(saved, "img_size"), id="img_size", compact=True,
                            classes="short", placeholder="auto")
            with Horizontal(classes="row"):
                yield Label("Pretrained", classes="field-label")
                pretrained = saved.get("pretrained", "imagenet")
                if pretrained not in ("imagenet", "none", PRETRAINED_FILE):
                    pretrained = "imagenet"
                yield Select(
                    [("ImageNet", "imagenet"), ("none (random)", "none"), ("file…", PRETRAINED_FILE)],
                    value=pretrained, allow_blank=False, id="pretrained", compact=True,
                )
                yield Input(self._text(saved, "pretrained_path"), id="pretrained_path",
                            compact=True, placeholder="path to an ImageNet state_dict .pth")
            with Horizontal(classes="row"):
                yield Label("Device", classes="field-label")
                yield Select([("auto (loading…)", DEVICE_LOADING)], value=DEVICE_LOADING,
                             allow_blank=False, id="device", compact=True)
                yield Label("Precision", classes="field-label2")
                yield option_fields.widget_for(table["precision"], saved.get("precision"))
            with Horizontal(classes="row"):
                yield Label("Workers", classes="field-label")
                yield Input(self._text(saved, "workers"), id="workers", compact=True,
                            classes="short", placeholder="auto")
                yield Label("Seed", classes="field-label2")
                yield Input(self._text(saved, "seed"), id="seed", compact=True, classes="short")
            with Horizontal(classes="row"):
                yield Label("Augment", classes="field-label")
                yield option_fields.widget_for(table["augment"], saved.get("augment"))
            yield from option_fields.rows(self.generic, saved)
            with Horizontal(classes="row"):
                yield Label("Weights file", classes="field-label")
                weights = saved.get("weights") or default_weights(backbone)
                yield Input(str(weights), id="weights", compact=True)
                yield TickBox("Overwrite", bool(saved.get("overwrite", False)), id="overwrite",
                               compact=True)
            yield Static("", id="weights-note", classes="note")
            yield Static("", id="field-errors", classes="note error")
            with Horizontal(classes="row", id="start-row"):
                yield Button("Start training", variant="primary", id="start", compact=True)
                # A background run (its own process) survives a dropped SSH connection.
                detach = saved.get("detach", True)
                yield TickBox("Keep running if I disconnect",
                               detach if isinstance(detach, bool) else True, id="detach",
                               compact=True)
                yield Static("", id="start-note", classes="hint")
        yield Footer()

    def _saved(self) -> dict[str, Any]:
        data = self.app.settings.data.get("setup")
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _text(saved: dict[str, Any], field: str) -> str:
        value = saved.get(field)
        return str(value) if isinstance(value, (str, int, float)) else TEXT_FIELDS[field]

    def on_mount(self) -> None:
        self._update_backbone_note()
        self._update_pretrained()
        self._update_weights_note()
        for field in self.text_fields():
            self._check(field)
        # Scans start after the first frame is on screen, not before.
        self.call_after_refresh(lambda: [self._scan_now(f) for f in ("train_dir", "val_dir")])
        devices = self.app.devices
        if devices is not None:
            self._fill_devices(devices)
        elif self.app.torch_error:
            self._devices_failed(self.app.torch_error)
        self._update_start_note()
        # -- demo-data offer (issue #4, PREP): only when launch() asks for it, so tests are unaffected
        if self.app.offer_demo_data:
            from dftui.ui.screens.prepare import maybe_offer_demo_data

            self.call_after_refresh(maybe_offer_demo_data, self.app)

    # -- values ------------------------------------------------------------------------
    def value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value

    def select(self, field: str) -> Any:
        return self.query_one(f"#{field}", Select).value

    @property
    def backbone(self) -> str:
        return str(self.select("backbone"))

    def form_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {field: self.value(field) for field in TEXT_FIELDS}
        values.update(
            backbone=self.backbone,
            pretrained=self.select("pretrained"),
            device=self._device_value(),
            precision=self.select("precision"),
            augment=self.select("augment"),
            overwrite=self.query_one("#overwrite", Checkbox).value,
            detach=self.query_one("#detach", Checkbox).value,
        )
        for opt in self.generic:
            values[opt.name] = option_fields.saved_value(self.query_one(f"#{opt.name}"))
        return values

    def text_fields(self) -> list[str]:
        """Every Input checked as it is typed: the hand-laid ones and the derived ones."""
        return [*TEXT_FIELDS, *(opt.name for opt in self.generic if option_fields.is_text(opt))]

    def _device_value(self) -> str:
        value = self.select("device")
        if value == DEVICE_LOADING:
            # The list is not filled yet: keep the remembered choice (fit checks it exists).
            saved = self._saved().get("device", "auto")
            value = saved if isinstance(saved, str) and saved else "auto"
        return "cuda" if str(value).startswith(DDP_PREFIX) else str(value)

    def processes(self) -> int:
        """Training processes: 1, or one per GPU for a "N GPUs" device choice."""
        value = str(self.select("device"))
        count = value[len(DDP_PREFIX):] if value.startswith(DDP_PREFIX) else ""
        return int(count) if count.isdigit() else 1

    def build_config(self) -> TrainConfig:
        """A validated TrainConfig from the form; raises ConfigError with the first problem."""
        for field in self.text_fields():
            self._check(field)
        if self.errors:
            field, message = next(iter(self.errors.items()))
            raise ConfigError(message)
        v = self.form_values()
        pretrained = v["pretrained"]
        if pretrained == PRETRAINED_FILE:
            path = v["pretrained_path"].strip()
            if not path:
                raise ConfigError("pretrained: give the path of an ImageNet state_dict file")
            if not Path(path).expanduser().is_file():
                raise ConfigError(f"pretrained: {path} is not a file")
            pretrained = str(Path(path).expanduser())
        weights = Path(v["weights"].strip()).expanduser()
        table = option_table()
        typed = {name: table[name].from_text(v[name]) for name in
                 ("train_dir", "val_dir", "epochs", "batch_size", "lr", "img_size", "workers", "seed")}
        for opt in self.generic:
            typed[opt.name] = option_fields.read_value(opt, self.query_one(f"#{opt.name}"))
        config = TrainConfig(
            **typed,
            backbone=v["backbone"],
            device=str(v["device"]),
            precision=str(v["precision"]),
            augment=str(v["augment"]),
            pretrained=pretrained,
            out_dir=weights.parent,
            weights_name=weights.name,
            overwrite=bool(v["overwrite"]),
        )
        config.validate()
        return config

    # -- reacting to edits ---------------------------------------------------------------
    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        field = event.input.id or ""
        if field not in self.text_fields():
            return
        self._check(field)
        if field in ("train_dir", "val_dir"):
            self._schedule_scan(field)
        elif field == "weights":
            self._update_weights_note()
        elif field == "pretrained_path":
            self._update_pretrained()
        self._schedule_save()

    @on(Input.Submitted)
    def _input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("train_dir", "val_dir"):
            self._scan_now(event.input.id)
        self.focus_next()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "backbone":
            self._backbone_changed()
        elif event.select.id == "pretrained":
            self._update_pretrained()
        self._schedule_save()

    @on(Checkbox.Changed, "#overwrite")
    def _overwrite_changed(self) -> None:
        self._update_weights_note()
        self._schedule_save()

    @on(Checkbox.Changed, "#detach")
    def _detach_changed(self) -> None:
        self._schedule_save()

    @on(Checkbox.Changed, f".{option_fields.OPTION_CLASS}")
    def _option_ticked(self) -> None:
        self._schedule_save()

    def _backbone_changed(self) -> None:
        self._update_backbone_note()
        # Follow the backbone in the weights name unless the user typed their own.
        weights = self.query_one("#weights", Input)
        if weights.value.strip() in {default_weights(n) for n in BACKBONES}:
            weights.value = default_weights(self.backbone)
        self._check("img_size")

    def _check(self, field: str) -> None:
        message = validate_field(field, self.value(field), self.backbone)
        widget = self.query_one(f"#{field}", Input)
        if message:
            self.errors[field] = message
            widget.add_class("invalid-field")
        else:
            self.errors.pop(field, None)
            widget.remove_class("invalid-field")
        shown = [m for f, m in self.errors.items() if f not in ("train_dir", "val_dir")]
        self.query_one("#field-errors", Static).update("\n".join(shown))
        self._update_start_note()

    def _note(self, widget_id: str, css: str, text: str) -> None:
        note = self.query_one(f"#{widget_id}", Static)
        note.set_classes(f"note {css}")
        note.update(text)

    def _update_backbone_note(self) -> None:
        self._note("backbone-note", *backbone_note(self.backbone))

    def _update_pretrained(self) -> None:
        source = self.select("pretrained")
        path_input = self.query_one("#pretrained_path", Input)
        path_input.display = source == PRETRAINED_FILE

    def _update_weights_note(self) -> None:
        css, text = weights_note(self.value("weights"), self.query_one("#overwrite", Checkbox).value)
        self._note("weights-note", css, text)

    def _update_start_note(self) -> None:
        if not self.is_mounted:
            return
        problems = len(self.errors) + sum(
            1 for f in ("train_dir", "val_dir") if self.scans.get(f) is None
        )
        if self.app.devices is None and not self.app.torch_error:
            text = "loading torch in the background…"
        elif problems:
            text = "fix the fields marked above to start"
        else:
            text = "ready: ctrl+s starts"
        self.query_one("#start-note", Static).update(text)

    # -- devices -------------------------------------------------------------------------
    def on_torch_ready(self, message: TorchReady) -> None:
        if message.devices is not None:
            self._fill_devices(message.devices)
        else:
            self._devices_failed(message.error or "unknown error")
        self._update_start_note()

    def _fill_devices(self, devices: list[Any]) -> None:
        select = self.query_one("#device", Select)
        options = [("auto (" + devices[0].label + ")", "auto")]
        options += [(d.label, d.id) for d in devices]
        # Several CUDA GPUs: train on k of them, one process each (dftui train
        # --nproc-per-node k), as a background run.
        gpus = sum(1 for d in devices if str(d.id).startswith("cuda:"))
        options += [(f"devices: {k} GPUs (one process each)", f"{DDP_PREFIX}{k}") for k in range(2, gpus + 1)]
        wanted = self._saved().get("device", "auto")
        select.set_options(options)
        ids = {"auto", *(d.id for d in devices), *(v for _, v in options)}
        select.value = wanted if wanted in ids else "auto"

    def _devices_failed(self, error: str) -> None:
        select = self.query_one("#device", Select)
        select.set_options([("auto (torch failed to load)", "auto")])

    # -- folder scans ------------------------------------------------------------------
    def _schedule_scan(self, field: str) -> None:
        timer = self._scan_timers.pop(field, None)
        if timer is not None:
            timer.stop()
        self.scans[field] = None
        self._note(f"{field}-note", "hint", "…")
        self._scan_timers[field] = self.set_timer(SCAN_DELAY_S, lambda: self._scan_now(field))

    def _scan_now(self, field: str) -> None:
        text = self.value(field).strip()
        self.scans[field] = None
        if not text:
            self._note(f"{field}-note", "error", "enter a folder that holds real/ and fake/")
            return
        self._note(f"{field}-note", "hint", "scanning…")
        self.scan_folder_worker(field, text)

    @work(thread=True, exit_on_error=False, group="scan")
    def scan_folder_worker(self, field: str, text: str) -> None:
        # Not exclusive (that would cancel the other folder's scan): a result for a path
        # the user has since changed is dropped in on_folder_scanned.
        worker = get_current_worker()
        try:
            scan = scan_folder(Path(text).expanduser())
        except DataError as exc:
            if not worker.is_cancelled:
                self.post_message(FolderScanned(field, text, "error", f"✗ {exc}"))
            return
        except OSError as exc:
            if not worker.is_cancelled:
                self.post_message(FolderScanned(field, text, "error", f"✗ {text}: {exc}"))
            return
        if not worker.is_cancelled:
            css, message = scan_text(scan)
            self.post_message(FolderScanned(field, text, css, message, scan))

    def on_data_folders_ready(self, message: DataFoldersReady) -> None:
        """Prepare or the demo data wrote crops: train on those folders (and at the image
        size that came with them). Often they are the very folders already shown, where no
        field changes: rescan them anyway."""
        values = {"train_dir": shown_path(message.train_dir), "val_dir": shown_path(message.val_dir)}
        if message.img_size is not None:
            values["img_size"] = str(message.img_size)
        for field, value in values.items():
            self.query_one(f"#{field}", Input).value = value
        for field in ("train_dir", "val_dir"):
            timer = self._scan_timers.pop(field, None)
            if timer is not None:
                timer.stop()
            self._scan_now(field)

    def on_folder_scanned(self, message: FolderScanned) -> None:
        if self.value(message.field).strip() != message.path:
            return  # an older scan of a path the user has since changed
        self.scans[message.field] = message.scan
        self._note(f"{message.field}-note", message.css, message.text)
        self._update_start_note()

    # -- folder picker -----------------------------------------------------------------
    @on(Button.Pressed, ".browse")
    def _browse_pressed(self, event: Button.Pressed) -> None:
        field = (event.button.id or "").removeprefix("browse-")
        self.browse(field)

    def action_browse(self) -> None:
        focused = self.focused
        field = "val_dir" if focused is not None and "val_dir" in (focused.id or "") else "train_dir"
        self.browse(field)

    def browse(self, field: str) -> None:
        current = Path(self.value(field).strip() or ".").expanduser()
        title = "Training data folder" if field == "train_dir" else "Validation data folder"

        def chosen(path: Path | None) -> None:
            if path is None:
                return
            self.query_one(f"#{field}", Input).value = shown_path(path)
            self._scan_now(field)

        self.app.push_screen(FolderPicker(title, current), chosen)

    # -- settings ------------------------------------------------------------------------
    def _schedule_save(self) -> None:
        if self._save_timer is not None:
            self._save_timer.stop()
        self._save_timer = self.set_timer(SAVE_DELAY_S, self.remember)

    def remember(self) -> None:
        if not self.is_mounted:
            return
        self.app.settings.update(setup=self.form_values())

    def on_screen_suspend(self) -> None:
        self.remember()

    def save_before_exit(self) -> None:
        if self._save_timer is not None:
            self._save_timer.stop()  # a save was due within a second: make it now
            self._save_timer = None
        self.remember()

    def action_reset(self) -> None:
        for field, default in TEXT_FIELDS.items():
            self.query_one(f"#{field}", Input).value = default
        self.query_one("#backbone", Select).value = DEFAULTS.backbone
        self.query_one("#pretrained", Select).value = "imagenet"
        device = self.query_one("#device", Select)
        if device.value != DEVICE_LOADING:
            device.value = "auto"
        table = option_table()
        for name in ("precision", "augment"):
            option_fields.reset(table[name], self.query_one(f"#{name}"))
        for opt in self.generic:
            option_fields.reset(opt, self.query_one(f"#{opt.name}"))
        self.query_one("#overwrite", Checkbox).value = False
        self.query_one("#detach", Checkbox).value = True
        self.query_one("#weights", Input).value = default_weights(DEFAULTS.backbone)

    # -- start ---------------------------------------------------------------------------
    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        self.recheck_files()  # what the notes say must be true now, not when they were typed
        # A worker, because asking before an overwrite waits on a modal screen.
        self.run_worker(self._start(), exclusive=True, group="start")

    def recheck_files(self) -> None:
        """Files change behind the form's back: the ImageNet weights get downloaded or copied
        into the cache, a run saves the weights file the note named. Recheck both (cheap: a
        stat or two) whenever Setup is shown again and before a start."""
        if self.is_mounted:
            self._update_backbone_note()
            self._update_weights_note()

    def on_screen_resume(self) -> None:
        self.recheck_files()

    async def _start(self) -> None:
        try:
            config = self.build_config()
        except (ConfigError, ValueError) as exc:
            self.notify(str(exc), title="Cannot start", severity="error", timeout=8)
            return
        for field, title in (("train_dir", "training"), ("val_dir", "validation")):
            if self.scans.get(field) is None:
                note = str(self.query_one(f"#{field}-note", Static).render())
                if note.startswith("✗"):
                    self.notify(f"{title} data: {note[2:]}", title="Cannot start",
                                severity="error", timeout=8)
                    return
        self.remember()
        target = config.weights_path
        if config.overwrite and target.exists():
            from dftui.ui.screens.confirm import ConfirmScreen

            yes = await self.app.push_screen_wait(
                ConfirmScreen(f"{target} exists.\nReplace it with this run's best weights?",
                              yes="Replace", no="Cancel")
            )
            if not yes:
                return
        detach = self.query_one("#detach", Checkbox).value
        nproc = self.processes()
        if nproc > 1:
            if config.batch_size % nproc:
                self.notify(f"Batch size {config.batch_size} is the global batch and must split "
                            f"evenly over {nproc} GPUs: use a multiple of {nproc}",
                            title="Cannot start", severity="error", timeout=8)
                return
            detach = True  # a distributed run is a background run
        await self.app.start_training(config, detach=detach, nproc=nproc)
