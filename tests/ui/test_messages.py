"""Issue 16: in the dashboard an engine failure names the field or key to use, never a CLI
flag, and the header stops saying "starting … (loading the engine…)" once a start failed."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from dftui.ui.app import DftuiApp
from dftui.ui.screens.training import TrainingScreen
from tests.ui.helpers import run_config, wait_for


async def test_a_failed_start_names_setup_fields_not_flags(dataset, standin_weights, tmp_path: Path,
                                                           monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # Offline with nothing cached (the test home): ImageNet weights cannot be had.
    config = run_config(dataset, standin_weights, tmp_path / "weights", pretrained="imagenet")
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(100, 30)) as pilot:
        assert await app.start_training(config, detach=False)
        screen = app.screen
        assert isinstance(screen, TrainingScreen)
        await wait_for(pilot, lambda: screen.final is not None, what="the failure")
        await pilot.pause()
        outcome = str(screen.query_one("#outcome", Static).render())
        assert "not cached" in outcome
        assert "Pretrained (Setup)" in outcome and "--" not in outcome, outcome
        title = str(screen.query_one("#run-title", Static).render())
        assert "loading the engine" not in title and "failed" in title, title
