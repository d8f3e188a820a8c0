"""The app shell: first frame without torch, the screen registry and its keys, help, the
command palette, themes and settings remembered between launches, a user keymap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from textual.binding import Binding

from dftui.ui.app import SCREENS, DftuiApp, screen_available
from dftui.ui.screens.help import HelpScreen
from dftui.ui.screens.setup import SetupScreen
from dftui.ui.screens.training import TrainingScreen
from dftui.ui.settings import Settings, settings_path
from tests.ui.helpers import wait_for


def test_first_frame_comes_before_torch() -> None:
    """In a fresh interpreter: the app paints its first frame with torch, torchvision and
    timm not imported; they arrive afterwards from the background loader."""
    code = textwrap.dedent(
        """
        import asyncio, sys, time
        from dftui.ui.app import DftuiApp
        heavy = ("torch", "torchvision", "timm")

        async def main():
            app = DftuiApp()
            async with app.run_test(size=(80, 24)) as pilot:
                while app.first_frame_at is None:
                    await pilot.pause(0.01)
                at_first_frame = app.heavy_at_first_frame
                t0 = time.monotonic()
                while app.devices is None and time.monotonic() - t0 < 120:
                    await pilot.pause(0.05)
                print("AT_FIRST_FRAME", at_first_frame)
                print("DEVICES", [d.id for d in app.devices or []])
                print("LOADED", all(m in sys.modules for m in heavy))

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=180, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["AT_FIRST_FRAME"] == "[]"
    assert "cpu" in lines["DEVICES"]
    assert lines["LOADED"] == "True"


def test_ui_modules_import_without_torch() -> None:
    code = (
        "import sys, dftui.ui.app, dftui.ui.screens.setup, dftui.ui.screens.training, "
        "dftui.ui.widgets.run_view, dftui.ui.launch; "
        "print(sorted(m for m in ('torch','torchvision','timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


async def test_screen_keys_and_registry() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, SetupScreen)
        await pilot.press("f3")
        assert isinstance(app.screen, TrainingScreen)
        training = app.screen
        await pilot.press("f2")
        assert isinstance(app.screen, SetupScreen)
        await pilot.press("f3")
        assert app.screen is training  # screens keep their state
        for name, spec in SCREENS.items():
            if not screen_available(name):
                continue
            await pilot.press(spec.key)
            await pilot.pause()
            assert app.current_screen_name() == name, name
        # open_screen with arguments creates a fresh instance; unknown names are reported.
        assert await app.open_screen("nonexistent") is None


async def test_help_lists_bindings_and_closes() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-keys").render())
        assert "Start training" in text and "Help" in text
        await pilot.press("escape")
        assert isinstance(app.screen, SetupScreen)
        # "?" opens help when no text field has focus.
        app.screen.set_focus(None)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)


async def test_command_palette_lists_screens_and_actions() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Open Training" in titles and "Open Setup" in titles
        assert "Setup: Start training" in titles
        assert "Toggle light/dark theme" in titles
        # A screen action run from the palette: "Setup: Defaults" resets the form.
        app.screen.query_one("#epochs").value = "7"
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "CommandPalette"
        await pilot.press(*"Setup: Defaults")
        await pilot.pause(0.4)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen), what="palette closed")
        await wait_for(pilot, lambda: app.screen.query_one("#epochs").value == "15",
                       what="defaults restored")
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Open Training")
        await pilot.pause(0.4)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="training")


async def test_theme_toggle_is_remembered() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        first = app.theme
        await pilot.press("ctrl+t")
        assert app.theme != first
        toggled = app.theme
    saved = json.loads(settings_path().read_text())
    assert saved["theme"] == toggled
    again = DftuiApp(load_torch=False)
    async with again.run_test(size=(80, 24)):
        assert again.theme == toggled


async def test_keymap_from_settings() -> None:
    Settings(settings_path(), {"keymap": {"screen.training": "f9"}}).save()
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f9")
        assert isinstance(app.screen, TrainingScreen)
        assert app.key_display_for("screen.training", "f3") == app.get_key_display(Binding("f9", ""))


def test_broken_settings_file_is_set_aside() -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    settings = Settings.load()
    assert settings.data == {} and "not valid settings JSON" in (settings.error or "")
    assert path.with_name(path.name + ".bad").is_file()


async def test_torch_ready_reaches_setup() -> None:
    app = DftuiApp()
    async with app.run_test(size=(80, 24)) as pilot:
        select = app.screen.query_one("#device")
        await wait_for(pilot, lambda: "cpu" in [v for _, v in select._options], what="devices")
        values = [value for _, value in select._options]
        assert values[0] == "auto" and "auto-loading" not in values
        assert select.value == "auto"
