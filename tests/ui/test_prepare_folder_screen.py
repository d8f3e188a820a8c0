"""The Prepare screen's second source: labelled photos/videos (real/, fake/) -> face crops
with ``core.prepare_folder``, driven through the real app with the Pilot."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import Button, Input, Select, Static

from dftui.core import prepare_folder as pf
from dftui.ui.app import DftuiApp
from dftui.ui.screens.prepare import PrepareScreen
from tests.media import head, write_video
from tests.ui.helpers import wait_for

SMALL = (80, 24)


def make_app(tmp_path: Path) -> DftuiApp:
    return DftuiApp(initial="prepare", load_torch=False, settings_path=tmp_path / "settings.json")


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """Two photos and one tiny video per class, every one with the astronaut's face."""
    root = tmp_path / "lab"
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            head().save(root / label / f"p{i}.jpg")
        write_video(root / label / "clip.mp4", frames=4, size=96)
    return root


async def _folder_source(pilot, screen: PrepareScreen, root: Path, out: Path, **fields: str) -> None:
    screen.query_one("#source", Select).value = "folder"
    await pilot.pause()
    screen.query_one("#root", Input).value = str(root)
    screen.query_one("#out", Input).value = str(out)
    for name, value in fields.items():
        screen.query_one(f"#{name}", Input).value = value
    screen._discover()
    await pilot.pause()


def _text(screen: PrepareScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def test_folder_source_writes_crops_reports_and_hands_to_setup(tmp_path: Path, labelled: Path) -> None:
    out = tmp_path / "crops"
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = app.screen
        assert isinstance(screen, PrepareScreen)
        await _folder_source(pilot, screen, labelled, out, frames="2", val_fraction="0.5")
        assert "found fake/, real/" in _text(screen, "#root-note")
        assert screen.query_one("#frames").display and not screen.query_one("#workers").display
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.final is not None and not screen.running)
        final = screen.final
        assert isinstance(final, pf.FolderFinished), final
        s = final.summary
        assert s.status == "finished" and s.photos == 4 and s.videos == 2, s.line()
        for split in ("train", "val"):
            for label in ("real", "fake"):
                assert list((out / f"{split}_cropped" / label).iterdir()), (split, label)
        assert (out / pf.REPORT).is_file()
        summary = _text(screen, "#prepare-summary")
        assert "report:" in summary and "Setup now trains on" in summary
        assert not screen.query_one("#use", Button).disabled
        assert "100%" in str(screen.query_one("#bar-folder").render()) or s.sources_done == 6
        # Remembered for the next visit, Source included.
        saved = app.settings.data["prepare"]
        assert saved["source"] == "folder" and saved["frames"] == "2"


async def test_folder_source_refuses_foreign_output_on_the_field(tmp_path: Path, labelled: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = app.screen
        await _folder_source(pilot, screen, labelled, out)
        await pilot.press("ctrl+s")
        await pilot.pause()
        note = _text(screen, "#out-note")
        assert "already holds files" in note and "notes.txt" in note, note
        assert screen.query_one("#out-note").display
        assert app.focused is screen.query_one("#out", Input)
        assert not screen.running and screen.final is None
        assert (out / "notes.txt").read_text() == "keep me" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]
        # A bad number names its field.
        screen.query_one("#out", Input).value = str(tmp_path / "new")
        screen.query_one("#frames", Input).value = "many"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "Frames/video" in _text(screen, "#form-error") and not screen.running


async def test_folder_source_stop_then_resume(tmp_path: Path, labelled: Path, monkeypatch) -> None:
    out = tmp_path / "crops"
    started = threading.Event()
    original = pf._crop_source

    def held(src, config, detector, stop):  # the first source waits for the Stop key
        started.set()
        while not stop.is_set():
            threading.Event().wait(0.01)
        return original(src, config, detector, stop)

    monkeypatch.setattr(pf, "_crop_source", held)
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = app.screen
        await _folder_source(pilot, screen, labelled, out, frames="2")
        await pilot.press("ctrl+s")
        await wait_for(pilot, started.is_set)
        assert screen.running and screen.query_one("#source", Select).disabled
        screen.query_one("#stop", Button).press()
        await wait_for(pilot, lambda: screen.final is not None and not screen.running)
        s = screen.final.summary
        assert s.status == "stopped" and s.sources_done <= 1, s.line()
        assert "Start again to resume" in _text(screen, "#prepare-summary")
        monkeypatch.setattr(pf, "_crop_source", original)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.final is not None and not screen.running)
        resumed = screen.final.summary
        assert resumed.status == "finished" and resumed.sources_done == 6, resumed.line()
        assert resumed.skipped_done_before == s.sources_done  # what the stopped job finished is not redone
