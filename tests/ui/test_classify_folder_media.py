"""The Classify screen's folder table (f) on photos with faces and on videos: one row per
photo (its most suspicious face decides), one row per video (its aggregated verdict), the
auto/on/off face rule of ``dftui predict --faces`` (c), and x stopping the worker."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from dftui.ui.app import DftuiApp
from tests.media import head, write_video
from tests.ui.helpers import pin_cell_size, wait_for
from tests.ui.test_classify_scene import _open, make_media_home


@pytest.fixture(scope="module")
def folder_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_media_home(tmp_path_factory.mktemp("folder-media"))


@pytest.fixture
def at_home(folder_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(folder_home)
    pin_cell_size()
    return folder_home


@pytest.fixture
def mixed(at_home: Path, tmp_path: Path) -> Path:
    """mixed/fake: the three-face photo, a face crop, a clip; mixed/real: a landscape (no face).
    Outside the shared home, whose tree other tests' snapshots show."""
    root = tmp_path / "mixed"
    (root / "fake").mkdir(parents=True)
    (root / "real").mkdir()
    shutil.copy(at_home / "media" / "group.png", root / "fake" / "group.png")
    head().resize((64, 80)).save(root / "fake" / "crop.png")
    shutil.copy(at_home / "media" / "clip.mp4", root / "fake" / "clip.mp4")
    shutil.copy(at_home / "media" / "landscape.png", root / "real" / "landscape.png")
    return root


def _rows(screen) -> dict[str, object]:
    return {Path(k).name: r for k, r in screen.rows.items()}


async def _folder(pilot, screen, folder: Path) -> None:
    screen._folder = folder
    await pilot.press("f")
    await wait_for(pilot, lambda: not screen._folder_running, what="the folder table")


async def test_folder_table_photos_by_face_and_videos_by_aggregate(mixed: Path, tmp_path: Path) -> None:
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        assert screen.face_mode == "auto"
        await _folder(pilot, screen, mixed)
        rows = _rows(screen)
        assert sorted(rows) == ["clip.mp4", "crop.png", "group.png", "landscape.png"]
        group = rows["group.png"]
        assert group.prediction.label == "fake" and group.note.startswith("3 faces, face ")
        assert group.prediction.p_fake == pytest.approx(0.8, abs=0.02)  # the constant model
        assert rows["crop.png"].note == "judged whole (looks like a face crop)"  # auto: a crop is not searched
        clip = rows["clip.mp4"]
        assert clip.prediction.label == "fake" and clip.note.startswith("video: 8 frames, 8 with a face")
        assert f"rule {screen.rule}" in clip.note
        landscape = rows["landscape.png"]
        assert landscape.prediction.label is None and "no face found" in landscape.prediction.error.lower()
        assert landscape.truth == "real" and group.truth == "fake"
        status = str(screen.query_one("#folder-status").content)
        assert status.startswith("4 files: 0 real, 3 fake, 1 without a verdict")
        # The table shows the note beside the file.
        table = screen.query_one("#folder-table")
        assert any("3 faces" in str(c) for c in table.get_row(str(mixed / "fake" / "group.png")))
        assert str(table.get_row(str(mixed / "real" / "landscape.png"))[0]) == "no face"

        # c: auto -> on -> off. Off judges every picture whole, as `dftui predict --faces off`.
        await pilot.press("c", "c")
        assert screen.face_mode == "off"
        await _folder(pilot, screen, mixed)
        rows = _rows(screen)
        assert rows["group.png"].note == "judged whole (faces off)"
        assert rows["landscape.png"].prediction.label == "fake"  # scored whole, no face needed
        assert rows["clip.mp4"].prediction.label is not None


async def test_folder_table_x_stops_inside_a_video_and_ui_stays_live(at_home: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    import dftui.core.clip as clip

    folder = tmp_path / "stopdir"
    (folder / "fake").mkdir(parents=True)
    head().resize((64, 80)).save(folder / "fake" / "a.png")
    write_video(folder / "fake" / "b.mp4", frames=4, size=96)

    entered = threading.Event()
    original = clip.judge_video

    def held(judge, path, sampling, rule, stop=None, **kw):  # noqa: ANN001, ANN202
        entered.set()
        while not stop.is_set():  # the decoder waits for x, as a long video would
            threading.Event().wait(0.01)
        return original(judge, path, sampling, rule, stop=stop, **kw)

    monkeypatch.setattr(clip, "judge_video", held)
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        screen._folder = folder
        await pilot.press("f")
        await wait_for(pilot, entered.is_set, what="the video's turn")
        # The UI answers while the worker is inside the video.
        await pilot.press("c")
        assert screen.face_mode == "on" and screen._folder_running
        await pilot.press("x")
        await wait_for(pilot, lambda: not screen._folder_running, what="the stop")
        status = str(screen.query_one("#folder-status").content)
        assert status.startswith("Stopped after"), status
        # The photo judged before the video is kept; a video cut short is not a verdict.
        assert sorted(_rows(screen)) == ["a.png"]
