"""The dashboard app: a screen registry, global bindings, settings and the torch loader.

Nothing here imports torch: the first frame must appear before torch, torchvision and timm
load. They are imported by a thread worker after the first frame; screens that need them
listen for ``TorchReady`` (posted to every installed screen) or read ``app.devices``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.worker import get_current_worker

from dftui.ui import settings as settings_mod
from dftui.ui.messages import TorchReady


class ScreenSpec(NamedTuple):
    target: str  # "module:Class", imported only when the screen is first opened
    title: str  # shown in the navigation bar, the help screen and the command palette
    key: str | None  # global key that opens it (remappable through the keymap by id)


# The screen registry. Add a screen with ONE line: name -> ScreenSpec("module:Class", title, key).
# A screen class takes keyword arguments passed to ``app.open_screen(name, **kwargs)``.
SCREENS: dict[str, ScreenSpec] = {
    "setup": ScreenSpec("dftui.ui.screens.setup:SetupScreen", "Setup", "f2"),
    "training": ScreenSpec("dftui.ui.screens.training:TrainingScreen", "Training", "f3"),
    "classify": ScreenSpec("dftui.ui.screens.classify:ClassifyScreen", "Classify", "f4"),
    "runs": ScreenSpec("dftui.ui.screens.runs:RunsScreen", "Runs", "f5"),
    "prepare": ScreenSpec("dftui.ui.screens.prepare:PrepareScreen", "Prepare", "f6"),
    "evaluate": ScreenSpec("dftui.ui.screens.evaluate:EvaluateScreen", "Evaluate", "f7"),
}

THEMES = ("textual-dark", "textual-light")
HEAVY_MODULES = ("torch", "torchvision", "timm")


def screen_available(name: str) -> bool:
    """True when the screen's module exists (found without importing it)."""
    spec = SCREENS.get(name)
    if spec is None:
        return False
    module = spec.target.split(":", 1)[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _screen_bindings() -> list[Binding]:
    return [
        Binding(
            spec.key,
            f"open_screen('{name}')",
            spec.title,
            show=False,
            priority=True,  # F-keys work even while an input has focus
            id=f"screen.{name}",
        )
        for name, spec in SCREENS.items()
        if spec.key
    ]


class DftuiApp(App[None]):
    TITLE = "dftui"
    SUB_TITLE = "fine-tune DeepFake detectors"
    # Absolute, so subclasses defined elsewhere (tests, benchmarks) find it too.
    CSS_PATH = str(Path(__file__).with_name("app.tcss"))
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True, id="app.quit"),
        Binding("f1", "help", "Help", priority=True, id="app.help"),
        Binding("question_mark", "help", "Help", show=False, id="app.help_question"),
        Binding("ctrl+t", "toggle_theme", "Light/dark", show=False, priority=True, id="app.theme"),
        *_screen_bindings(),
    ]

    def __init__(self, *, initial: str = "setup", load_torch: bool = True, settings_path: Any = None):
        super().__init__()
        self.settings = settings_mod.Settings.load(settings_path)
        self._initial = initial
        self._load_torch = load_torch
        self._screens: dict[str, Screen] = {}
        self.devices: list[Any] | None = None  # DeviceInfo list once torch has loaded
        self.torch_error: str | None = None
        self.torch_seconds: float | None = None
        self.first_frame_at: float | None = None  # time.monotonic() at the first paint
        self.heavy_at_first_frame: list[str] | None = None
        theme = self.settings.data.get("theme")
        if theme in THEMES:
            self.theme = theme
        keymap = self.settings.data.get("keymap")
        if isinstance(keymap, dict) and keymap:
            self.set_keymap({str(k): str(v) for k, v in keymap.items()})

    # -- screens -----------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        return self._get_or_create(self._initial, {})

    def on_mount(self) -> None:
        self.call_after_refresh(self._after_first_frame)
        if self.settings.error:  # a damaged settings file: say what was left out
            self.notify(self.settings.error, title="Settings", severity="warning", timeout=10)

    def _after_first_frame(self) -> None:
        self.first_frame_at = time.monotonic()
        # Checked by the tests and the benchmark: the first frame must not wait for these.
        self.heavy_at_first_frame = [m for m in HEAVY_MODULES if m in sys.modules]
        if self._load_torch:
            self.load_torch()

    def _create(self, name: str, kwargs: dict[str, Any]) -> Screen:
        spec = SCREENS[name]
        module_name, _, cls_name = spec.target.partition(":")
        module = importlib.import_module(module_name)
        screen: Screen = getattr(module, cls_name)(**kwargs)
        return screen

    def _get_or_create(self, name: str, kwargs: dict[str, Any]) -> Screen:
        screen = self._screens.get(name)
        if screen is None:
            screen = self._create(name, kwargs)
            self._screens[name] = screen
            self.install_screen(screen, f"dftui-{name}")
        return screen

    def get_open_screen(self, name: str) -> Screen | None:
        """The screen instance for ``name`` if it was opened before."""
        return self._screens.get(name)

    async def open_screen(self, name: str, **kwargs: Any) -> Screen | None:
        """Make screen ``name`` current. Keyword arguments create a fresh instance with them
        (for example ``open_screen("classify", weights=path)``); without them an earlier
        instance is reused, so a screen keeps its state while the user looks elsewhere."""
        if name not in SCREENS:
            self.notify(f"no screen called {name!r}", severity="error")
            return None
        while isinstance(self.screen, ModalScreen):
            self.pop_screen()
        base = self.screen_stack[0]
        old = self._screens.get(name)
        try:
            if (kwargs and old is not base) or old is None:
                screen = self._create(name, kwargs)
            else:
                screen = old
        except Exception as exc:  # noqa: BLE001 - a broken screen must not take the app down
            self.notify(
                f"the {SCREENS[name].title} screen cannot open: {type(exc).__name__}: {exc}",
                severity="error",
                timeout=8,
            )
            return None
        if screen is not old:
            self._screens[name] = screen
            # A fresh install name: the replaced instance is dropped once it is off the stack.
            self.install_screen(screen, f"dftui-{name}-{id(screen)}")
        # The first screen is the app's default screen and stays at the bottom of the stack;
        # the others are pushed over it and switched between.
        if screen is self.screen:
            pass
        elif screen is base:
            while len(self.screen_stack) > 1:
                await self.pop_screen()
        elif len(self.screen_stack) == 1:
            await self.push_screen(screen)
        else:
            await self.switch_screen(screen)
        if old is not None and screen is not old:
            self.uninstall_screen(old)
            await old.remove()
        return screen

    async def action_open_screen(self, name: str) -> None:
        await self.open_screen(name)

    def key_display_for(self, binding_id: str, default: str) -> str:
        """How the key bound to ``binding_id`` is shown, after any user keymap."""
        keys = getattr(self, "_keymap", {}).get(binding_id, default)
        first = keys.split(",")[0].strip() or default
        return self.get_key_display(Binding(first, ""))

    def current_screen_name(self) -> str | None:
        for name, screen in self._screens.items():
            if screen is self.screen:
                return name
        return None

    # -- runs --------------------------------------------------------------------------
    @property
    def run_active(self) -> bool:
        training = self._screens.get("training")
        return bool(training is not None and getattr(training, "running", False))

    async def start_training(self, config: Any, resume: Any = None) -> bool:
        """Open the Training screen and start ``config`` there (False when a run is active);
        ``resume``: a run folder to continue from its resume.pt (Runs screen)."""
        if self.run_active:
            self.notify("a run is already in progress; stop it first (Training screen, s)",
                        severity="warning")
            return False
        screen = await self.open_screen("training")
        if screen is None:
            return False
        screen.start_run(config, resume=resume)  # type: ignore[attr-defined]
        return True

    # -- torch in the background ---------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="torch-import", exclusive=True)
    def load_torch(self) -> None:
        t0 = time.monotonic()
        error = None
        devices = None
        try:
            for name in HEAVY_MODULES:
                importlib.import_module(name)
                if get_current_worker().is_cancelled:
                    return
            from dftui.core.devices import list_devices

            devices = list_devices()
        except Exception as exc:  # noqa: BLE001 - a broken install is reported, not fatal
            error = f"{type(exc).__name__}: {exc}"
        self.post_message(TorchReady(devices, error, time.monotonic() - t0))

    def on_torch_ready(self, message: TorchReady) -> None:
        self.devices = message.devices
        self.torch_error = message.error
        self.torch_seconds = message.seconds
        if message.error:
            self.notify(f"torch could not be loaded: {message.error}", severity="error", timeout=10)
        for screen in self._screens.values():
            screen.post_message(TorchReady(message.devices, message.error, message.seconds))

    # -- actions -----------------------------------------------------------------------
    def action_help(self) -> None:
        from dftui.ui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(self.screen))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def watch_theme(self, theme: str) -> None:
        if theme in THEMES and self.settings.data.get("theme") != theme:
            self.settings.update(theme=theme)

    async def action_quit(self) -> None:
        if not self.run_active:
            self.exit()
            return
        from dftui.ui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.stop_run_and_exit()

        self.push_screen(
            ConfirmScreen(
                "A training run is in progress.\nStop it and quit? The best weights so far are kept.",
                yes="Stop and quit",
                no="Keep training",
            ),
            answered,
        )

    @work(exclusive=True, group="quit")
    async def stop_run_and_exit(self) -> None:
        training = self._screens.get("training")
        if training is not None:
            self.notify("stopping the run...", timeout=30)
            await training.stop_and_wait("interrupted")  # type: ignore[attr-defined]
        self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Toggle light/dark theme", "Switch between Textual's light and dark themes",
                            self.action_toggle_theme)
        yield SystemCommand("Help", "Show every key binding", self.action_help)
        for name, spec in SCREENS.items():
            if not screen_available(name):
                continue
            key = f" ({spec.key.upper()})" if spec.key else ""

            async def go(name: str = name) -> None:
                await self.open_screen(name)

            yield SystemCommand(f"Open {spec.title}", f"Go to the {spec.title} screen{key}", go)
        # The current screen's own actions, by their binding descriptions.
        for binding in _screen_actions(screen):
            yield SystemCommand(
                f"{_screen_title(screen)}: {binding.description}",
                f"key {binding.key}" + (f" - {binding.tooltip}" if binding.tooltip else ""),
                lambda b=binding: screen.run_action(b.action),
            )


def _screen_title(screen: Screen) -> str:
    return getattr(screen, "TITLE", None) or type(screen).__name__.replace("Screen", "")


def _screen_actions(screen: Screen) -> list[Binding]:
    out = []
    seen = set()
    for item in getattr(screen, "BINDINGS", []):
        binding = item if isinstance(item, Binding) else Binding(*item)
        if binding.description and binding.action not in seen:
            seen.add(binding.action)
            out.append(binding)
    return out
