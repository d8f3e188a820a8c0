"""The Evaluate screen reports video-level AUC/EER beside frame-level ones for crops named
by `dftui prepare folder` (<video>__<frame>-<face>)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from dftui.ui.app import DftuiApp
from dftui.ui.screens.evaluate import EvaluateScreen
from tests.core.test_predict import reference_weights
from tests.ui.helpers import pin_cell_size, wait_for


async def test_per_video_line_for_grouped_crops(tmp_path: Path, monkeypatch) -> None:
    pin_cell_size()
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "videos_cropped"
    for label, shade in (("real", 60), ("fake", 200)):
        (folder / label).mkdir(parents=True)
        for video in range(2):
            for frame in range(3):
                Image.new("RGB", (32, 32), (shade, shade, shade)).save(
                    folder / label / f"clip{video}.mp4__{frame:06d}-1.png")
    weights = reference_weights(tmp_path / "ref.pth", fake_bias=1.0)
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await app.open_screen("evaluate")
        assert isinstance(screen, EvaluateScreen)
        await pilot.pause()
        screen.choose_weights(weights)
        assert screen.add_folder(folder)
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running and len(screen.results) == 1, what="the evaluation")
        text = str(screen.query_one("#eval-confusion").content)
        assert "per video (4): AUC" in text
