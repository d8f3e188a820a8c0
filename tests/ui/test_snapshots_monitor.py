"""SVG snapshots of the training-monitor features at 80x24 and 120x40: the run comparison,
the run dialogs (name/tags/note, delete), the run status header over another screen, and a
maximised chart. Fixed records and events; update with --snapshot-update and look at them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftui.ui.app import DftuiApp
from tests.ui.helpers import wait_for
from tests.ui.test_runs_manage import home  # noqa: F401 - a fixture, used by name
from tests.ui.test_snapshots_ui_a import _events, _show_training

SIZES = [(80, 24), (120, 40)]
IDS = ["80x24", "120x40"]


def _app(tmp: Path) -> DftuiApp:
    return DftuiApp(initial="runs", load_torch=False, settings_path=tmp / "settings.json")


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_snapshot_compare(snap_compare, home, tmp_path, size) -> None:  # noqa: F811
    app = _app(tmp_path)

    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.press("space", "space", "space", "v")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), 5, "compare")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("key", ["n", "delete"])
def test_snapshot_run_dialogs(snap_compare, home, tmp_path, key) -> None:  # noqa: F811
    app = _app(tmp_path)

    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.press(key)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_snapshot_run_status_header(snap_compare, home, tmp_path, size) -> None:  # noqa: F811
    app = _app(tmp_path)

    async def run_before(pilot) -> None:
        training = await pilot.app.open_screen("training")
        training.running = True
        for event in _events(finished=False):
            training.show_event(event)
        await pilot.app.open_screen("runs")
        await wait_for(pilot, lambda: pilot.app.screen.query_one("NavBar").status is not None,
                       5, "the header line")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_snapshot_maximised_chart(snap_compare) -> None:
    app = DftuiApp(load_torch=False)

    async def run_before(pilot) -> None:
        await _show_training(pilot, _events(True), running=False)
        pilot.app.screen.query_one("#epoch-table").focus()
        await pilot.press("f", "f")  # the accuracy chart, full screen
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_snapshot_hardware_panel(snap_compare, monkeypatch, size) -> None:
    from dftui.ui.widgets import hardware
    from dftui.ui.widgets.hardware import HardwarePanel
    from tests.ui.test_hardware_panel import FakeSampler

    monkeypatch.setattr(HardwarePanel, "sampler_factory", staticmethod(FakeSampler))
    monkeypatch.setattr(hardware, "SAMPLE_EVERY_S", 0.05)
    app = DftuiApp(load_torch=False)

    async def run_before(pilot) -> None:
        await _show_training(pilot, _events(False), running=True)
        panel = pilot.app.screen.query_one(HardwarePanel)
        await wait_for(pilot, lambda: panel.samples >= 20, 10, "full sparklines")
        panel.styles.display = "block"
        pilot.app.screen.query_one(HardwarePanel).tick = lambda: None  # hold still
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
