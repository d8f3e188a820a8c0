"""The Classify screen on whole photos (numbered boxes coloured by verdict, a face list,
a face's crop and Grad-CAM) and on videos (timeline, frames by suspicion, rule switch,
bad files), driven through the real app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dftui.core.faces import FAKE_COLOUR
from dftui.ui.app import DftuiApp
from dftui.ui.screens.classify import ClassifyScreen, ImageTree
from dftui.ui.widgets.image_view import ImageView
from dftui.ui.widgets.prob_bars import ProbBars
from dftui.ui.widgets.scene_panel import ScenePanel
from tests.media import background, group_photo, write_video
from tests.ui.helpers import pin_cell_size, wait_for
from tests.ui.test_classify import make_constant_weights, open_classify, wait_model


@pytest.fixture(scope="module")
def media_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """weights/ with a constant 0.8-fake model (fixed metadata), media/ with a three-face
    photo, a landscape without faces, a tiny clip and an empty 'video'; relative paths."""
    return make_media_home(tmp_path_factory.mktemp("scene"))


def make_media_home(home: Path) -> Path:
    """Fill ``home`` as ``media_home`` describes (other test modules build their own:
    the tree in the Classify snapshots shows the home's name)."""
    (home / "weights").mkdir()
    model = home / "weights" / "faces.pth"
    make_constant_weights(model, 0.8)
    model.with_suffix(".json").write_text(json.dumps({
        "format": 1, "backbone": "mobilenet_v2", "classes": {"real": 0, "fake": 1},
        "preprocessing": {"input_size": 32, "mean": [0.485, 0.456, 0.406],
                          "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"},
        "created": "2026-01-02T03:04:05+00:00", "best_val_accuracy": 0.975,
    }))
    media = home / "media"
    media.mkdir()
    group_photo(1280, 720)[0].save(media / "group.png")
    background(800, 600, seed=2).save(media / "landscape.png")
    write_video(media / "clip.mp4", frames=8, size=96)
    (media / "empty.mp4").write_bytes(b"")
    return home


@pytest.fixture
def at_home(media_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(media_home)
    pin_cell_size()
    return media_home


async def _open(app: DftuiApp, pilot) -> ClassifyScreen:
    screen = await open_classify(app, pilot, weights=Path("weights/faces.pth"), device="cpu")
    await wait_model(pilot, screen)
    assert screen.predictor is not None
    return screen


async def _judged(pilot, screen: ClassifyScreen, path: Path) -> None:
    screen.show_image(path)
    await wait_for(pilot, lambda: screen.scene is not None and screen.scene.path == path, what=f"{path}")
    await pilot.pause()


async def test_photo_faces_boxes_crop_and_gradcam(at_home: Path, tmp_path: Path) -> None:
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        await _judged(pilot, screen, Path("media/group.png"))
        panel = screen.query_one("#scene-panel", ScenePanel)
        assert panel.keys == ["all", "face:1", "face:2", "face:3"]
        view = screen.query_one("#image-view", ImageView)
        assert "3 face(s)" in view.caption
        face = screen.scene.photo.faces[0]
        scale = view.image.width / 1280
        x = round((face.box[0] + face.box[2]) / 2 * scale)
        assert view.image.getpixel((x, round(face.box[3] * scale) - 1)) == FAKE_COLOUR  # a drawn box edge
        assert screen.query_one("#verdict", ProbBars).verdict.label == "fake"
        screen.query_one("#scene-list").focus()
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: "Grad-CAM (where" in view.caption, what="the Grad-CAM")
        assert view.caption.startswith("face 2:")
        crop = screen.scene.crops[2]
        assert view.image.size == (crop.width * 2 + 4, crop.height)
        await pilot.press("home")
        await pilot.pause()
        assert "3 face(s)" in view.caption


async def test_tree_lists_videos_and_selecting_one_judges_it(at_home: Path, tmp_path: Path) -> None:
    """The file tree lists core's media extensions (videos too, not only images): a .mp4 is
    chosen in the tree with Enter, no need to type its path."""
    from dftui.core.media import MEDIA_EXTENSIONS
    from dftui.core.video import VIDEO_EXTENSIONS

    assert VIDEO_EXTENSIONS <= MEDIA_EXTENSIONS
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        tree = screen.query_one("#image-tree", ImageTree)
        await wait_for(pilot, lambda: len(tree.root.children) == 2, what="the tree")
        media = next(n for n in tree.root.children if n.data.path.name == "media")
        media.expand()
        await wait_for(pilot, lambda: len(media.children) == 4, what="media/ listed")
        names = [n.data.path.name for n in media.children]
        assert sorted(names) == ["clip.mp4", "empty.mp4", "group.png", "landscape.png"]
        clip = next(n for n in media.children if n.data.path.name == "clip.mp4")
        tree.focus()
        tree.move_cursor(clip)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.scene is not None and Path(screen.scene.path).resolve()
                       == (at_home / "media" / "clip.mp4").resolve(), what="the video judged")
        assert screen.query_one("#scene-panel", ScenePanel).keys[0] == "all"
        assert screen.query_one("#verdict", ProbBars).verdict is not None


async def test_no_face_then_whole_picture_on_request(at_home: Path, tmp_path: Path) -> None:
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        await _judged(pilot, screen, Path("media/landscape.png"))
        bars = screen.query_one("#verdict", ProbBars)
        assert bars.verdict is None and bars.message.startswith("No face found")
        await pilot.press("z")
        await wait_for(pilot, lambda: bars.verdict is not None, what="the whole-picture verdict")
        assert "WHOLE PICTURE" in screen.query_one("#image-view", ImageView).caption


async def test_video_timeline_frames_rule_and_bad_video(at_home: Path, tmp_path: Path) -> None:
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        await _judged(pilot, screen, Path("media/clip.mp4"))
        panel = screen.query_one("#scene-panel", ScenePanel)
        assert panel.keys[0] == "all" and len(panel.keys) == 9  # the whole video + 8 frames
        bars = screen.query_one("#verdict", ProbBars)
        assert bars.verdict is not None and bars.verdict.label == "fake"
        assert "most suspicious frame" in screen.query_one("#image-view", ImageView).caption
        timeline = str(screen.query_one("#scene-timeline").content)
        assert "▇" in timeline and "rule confident" in timeline
        await pilot.press("a")
        await pilot.pause()
        assert screen.rule == "mean-max" and "rule mean-max" in str(screen.query_one("#scene-timeline").content)
        screen.show_image(Path("media/empty.mp4"))
        await wait_for(pilot, lambda: bars.message.startswith("empty.mp4: empty file"), what="the message")
        assert bars.has_class("-error")
        await _judged(pilot, screen, Path("media/group.png"))  # still usable
