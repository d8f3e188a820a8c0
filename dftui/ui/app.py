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
from typing import TYPE_CHECKING, Any, NamedTuple

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.worker import get_current_worker

from dftui.core.errors import unexpected_error
from dftui.ui import settings as settings_mod
from dftui.ui.messages import TorchReady

if TYPE_CHECKING:  # the screens are imported when first opened, not with the app
    from dftui.ui.screens.training import TrainingScreen


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

    def __init__(self, *, initial: str = "setup", load_torch: bool = True, settings_path: Any = None,
                 announce_runs: bool = False, offer_demo_data: bool = False):
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
        # On start, offer to attach to runs in progress (launch() asks for it; tests opt in).
        self.announce_runs = announce_runs
        # Setup offers demo data when the default folders are empty (issue #4): launch() asks
        # for it; tests and embedders get no question unless they ask too.
        self.offer_demo_data = offer_demo_data
        self.demo_offered = False  # asked at most once per session
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
        self._install_hangup_handlers()

    def _install_hangup_handlers(self) -> None:
        """SIGHUP (the terminal or SSH connection is gone) and SIGTERM end the app; a run in
        this process is stopped as "interrupted" first, so its record says so (and it
        resumes) instead of "running" with a dead pid. Background runs are not touched."""
        import asyncio
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for name in ("SIGHUP", "SIGTERM"):
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                loop.add_signal_handler(signum, self._hang_up)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def _hang_up(self) -> None:
        training = self.training_screen()
        flag = training.stop_flag if training is not None else None
        if flag is not None and self.in_process_run:
            flag.request("interrupted")  # at once: the app may not get much further
        self.stop_run_and_exit()

    def on_unmount(self) -> None:
        import asyncio
        import signal

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for name in ("SIGHUP", "SIGTERM"):
            signum = getattr(signal, name, None)
            if signum is not None:
                try:
                    loop.remove_signal_handler(signum)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass

    def _after_first_frame(self) -> None:
        self.first_frame_at = time.monotonic()
        # Checked by the tests and the benchmark: the first frame must not wait for these.
        self.heavy_at_first_frame = [m for m in HEAVY_MODULES if m in sys.modules]
        if self._load_torch:
            self.load_torch()
        if self.announce_runs:
            self.announce_live_runs()

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

    def training_screen(self) -> TrainingScreen | None:
        """The Training screen if it was opened (it follows the run, when there is one)."""
        screen = self._screens.get("training")
        if screen is None:
            return None
        from dftui.ui.screens.training import TrainingScreen  # imported already: it was opened

        assert isinstance(screen, TrainingScreen), screen
        return screen

    async def open_training(self) -> TrainingScreen | None:
        """Make the Training screen current (None when it cannot open: said already)."""
        screen = await self.open_screen("training")
        if screen is None:
            return None
        return self.training_screen()

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
                f"the {SCREENS[name].title} screen cannot open: {unexpected_error(exc)}",
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
        """The Training screen follows a run that has not ended (in-process or background)."""
        training = self.training_screen()
        return training is not None and training.running

    @property
    def in_process_run(self) -> bool:
        """A run in this process's thread: quitting (or a hang-up) would end it."""
        training = self.training_screen()
        return training is not None and training.in_process

    def keep_running_default(self) -> bool:
        """Setup's "keep running if I disconnect", remembered; on unless turned off."""
        setup = self.settings.data.get("setup")
        value = setup.get("detach", True) if isinstance(setup, dict) else True
        return value if isinstance(value, bool) else True

    async def start_training(
        self, config: Any, resume: Any = None, detach: bool | None = None, nproc: int = 1
    ) -> bool:
        """Open the Training screen and start ``config`` there (False when a run is active);
        ``resume``: a run folder to continue from its resume.pt (Runs screen); ``detach``: a
        background run (default: Setup's remembered choice); ``nproc`` > 1: a distributed
        run on that many GPUs (always in the background)."""
        if self.run_active:
            self.notify("a run is already in progress; stop it first (Training screen, s)",
                        severity="warning")
            return False
        screen = await self.open_training()
        if screen is None:
            return False
        if detach is None:
            detach = self.keep_running_default()
        return screen.start_run(config, resume=resume, detach=detach, nproc=nproc)

    async def attach_run(self, run_dir: Path) -> bool:
        """Follow a run started elsewhere on the Training screen, history first."""
        training = self.training_screen()
        if training is not None and training.run_dir == Path(run_dir) and training.running:
            await self.open_screen("training")
            return True
        if self.run_active:
            self.notify("the Training screen is following another run, which is still going",
                        severity="warning")
            return False
        screen = await self.open_training()
        if screen is None:
            return False
        screen.attach(Path(run_dir))
        return True

    def announce_live_runs(self) -> None:
        """On start: say which runs are in progress, and attach to one with one key."""
        from dftui.core.runs import list_runs

        try:
            live = [r for r in list_runs() if r.live]
        except OSError:
            return
        if not live or self.run_active:
            return
        if isinstance(self.screen, ModalScreen):
            # Another question is up (the demo-data offer): ask once it is answered.
            self.set_timer(0.5, self.announce_live_runs)
            return
        run = live[0]
        from dftui.ui.screens.confirm import ConfirmScreen

        where = f" on {run.host}" if run.host else ""
        others = f"\n({len(live) - 1} more in progress: see Runs, F5)" if len(live) > 1 else ""
        question = (
            f"Run {run.run_id} ({run.backbone}, epoch {run.epochs_completed}/{run.epochs or '?'}) "
            f"is {run.status}{where}.\nFollow it on the Training screen?{others}"
        )

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.attach_run(run.run_dir)

        self.push_screen(ConfirmScreen(question, yes="Attach", no="Not now"), answered)

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
            error = unexpected_error(exc)
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

    def on_app_focus(self) -> None:
        # The terminal window is back in front: a screen that shows files (Setup's ImageNet
        # cache and weights notes) rechecks them; the user may have changed them meanwhile.
        recheck = getattr(self.screen, "recheck_files", None)
        if recheck is not None:
            recheck()

    def exit(self, *args: Any, **kwargs: Any) -> None:
        # Whatever a screen still holds back (Setup saves a second after the last key) is
        # written now: the process may end right after the app (see ui.launch.leave_now).
        for screen in list(self._screens.values()):
            save = getattr(screen, "save_before_exit", None)
            if save is not None and screen.is_mounted:
                try:
                    save()
                except Exception as exc:  # noqa: BLE001 - quitting must not fail on it
                    self.log.error(f"saving {type(screen).__name__} before exit: {exc}")
        super().exit(*args, **kwargs)

    async def action_quit(self) -> None:
        if not self.in_process_run:
            training = self.training_screen()
            if self.run_active and training is not None and training.run_dir is not None:
                name = training.run_dir.name
                # Quitting never stops a background run: say so where it stays readable.
                self.exit(message=f"run {name} goes on in the background; follow it with "
                                  f"`dftui attach {name}` or open dftui again")
                return
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
                still_asks=lambda: self.in_process_run,
                otherwise=("The training run has ended.\nQuit dftui?", "Quit", "Stay"),
            ),
            answered,
        )

    @work(exclusive=True, group="quit")
    async def stop_run_and_exit(self) -> None:
        training = self.training_screen()
        if training is not None and self.in_process_run:
            self.notify("stopping the run...", timeout=30)
            await training.stop_and_wait("interrupted")
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
