"""The hardware panel of the Training screen with a fake sampler: shown while a run goes
(CPU, memory, GPU with sparklines), hidden when it ends, no repaint when nothing changed."""

from __future__ import annotations

from collections import deque

import pytest

from dftui.core.events import RunFinished
from dftui.core.hardware import GpuSample, HardwareSample
from dftui.ui.app import DftuiApp
from dftui.ui.widgets import hardware as hw
from dftui.ui.widgets.hardware import HardwarePanel, sparkline
from tests.ui.helpers import wait_for
from tests.ui.scenes import training_events


class FakeSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.gpu_note = ""
        self.history: dict[str, deque] = {}
        self.calls = 0
        self.values = [(50.0, 800.0, 40.0), (150.0, 900.0, 90.0)]

    def sample(self) -> HardwareSample:
        cpu, rss, util = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        s = HardwareSample(self.pid, True, cpu, rss,
                           (GpuSample(0, "H200", util, 10240.0, 81920.0, 64.0),))
        for key, value in (("cpu", cpu), ("rss", rss), ("gpu0.util", util)):
            self.history.setdefault(key, deque(maxlen=40)).append(value)
        return s


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[FakeSampler]:
    made: list[FakeSampler] = []

    def factory(pid: int) -> FakeSampler:
        made.append(FakeSampler(pid))
        return made[-1]

    monkeypatch.setattr(HardwarePanel, "sampler_factory", staticmethod(factory))
    monkeypatch.setattr(hw, "SAMPLE_EVERY_S", 0.1)
    return made


async def test_panel_shows_while_a_run_goes(fake: list[FakeSampler]) -> None:
    import os

    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        training = await app.open_screen("training")
        panel = training.query_one(HardwarePanel)
        await pilot.pause(0.3)
        assert not panel.display and not fake  # no run: no sampling at all
        training.running = True
        for event in training_events(finished=False):
            training.show_event(event)
        await wait_for(pilot, lambda: panel.samples >= 2, 5, "two samples")
        assert fake[0].pid == os.getpid()  # a run in the dashboard's own thread
        line = str(panel.render())
        assert panel.display
        assert "CPU 150%" in line and "mem 900 MiB" in line
        assert "GPU0 90%" in line and "10.0/80 GiB" in line and "64°C" in line
        # Once the sparklines are full (16 samples at this width), steady figures make the
        # same line: no repaint.
        await wait_for(pilot, lambda: panel.samples >= 18, 10, "full sparklines")
        shown = panel.shown
        updates = []
        original = panel.update
        panel.update = lambda *a, **k: (updates.append(a), original(*a, **k))  # type: ignore
        await wait_for(pilot, lambda: panel.samples >= 22, 5, "more samples")
        assert updates == [] and panel.shown == shown
        training.show_event(
            RunFinished(
                status="finished",
                epochs_completed=3,
                best_epoch=3,
                best_val_accuracy=0.9,
                weights_path="w.pth",
                metadata_path="w.json",
                run_dir="r",
                seconds=9.0,
            )
        )
        await pilot.pause(0.3)
        assert not panel.display and panel.sampler is None


def test_sparkline() -> None:
    assert sparkline([0, 50, 100], 8, top=100) == "▁▅█"
    assert sparkline([800, 800, 800], 8) == "▁▁▁"  # flat memory
    assert sparkline([100, 200], 8) == "▁█"
    assert sparkline(range(100), 5, top=100)[-1] == "█"
    assert sparkline([], 8) == ""


def test_the_run_process_is_the_background_runs_own(tmp_path) -> None:
    import json
    import os
    from types import SimpleNamespace

    from dftui.ui.widgets.hardware import run_pid

    (tmp_path / "run.json").write_text(json.dumps({"pid": 4242, "status": "running"}))
    assert run_pid(SimpleNamespace(background=True, run_dir=tmp_path)) == 4242
    assert run_pid(SimpleNamespace(background=False, run_dir=tmp_path)) == os.getpid()
    (tmp_path / "run.json").write_text("{damaged")
    assert run_pid(SimpleNamespace(background=True, run_dir=tmp_path)) is None
    assert run_pid(SimpleNamespace(background=True, run_dir=None)) is None
