"""Every screen at 80×24: its key results are on screen and every part is reachable by
keyboard; the weights lists (Classify, Evaluate) are one shared widget, newest first, with
the newest highlighted so Enter works at once."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from dftui.ui.app import DftuiApp
from dftui.ui.screens.classify import ClassifyScreen
from dftui.ui.screens.evaluate import CARDS, EvaluateScreen
from dftui.ui.widgets.weights_picker import WeightsPicker, describe, weights_entries
from tests.ui.helpers import pin_cell_size, screen_lines, wait_for
from tests.ui.test_classify import make_constant_weights

SMALL = (80, 24)


def _meta(created: str, acc: float, size: int = 32) -> dict:
    return {
        "format": 1, "backbone": "mobilenet_v2", "classes": {"real": 0, "fake": 1},
        "preprocessing": {"input_size": size, "mean": [0.485, 0.456, 0.406],
                          "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"},
        "created": created, "best_val_accuracy": acc,
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, dataset) -> Path:
    return make_weights_home(tmp_path_factory.mktemp("small"), dataset["val"])


def make_weights_home(home: Path, images: Path) -> Path:
    """Three weights whose names sort opposite to their age, and test / val folders of
    ``images`` (the snapshot tests build theirs with it too)."""
    weights = home / "weights"
    weights.mkdir()
    make_constant_weights(weights / "a_old.pth", 0.8)
    (weights / "a_old.json").write_text(json.dumps(_meta("2026-01-01T10:00:00+00:00", 0.6)))
    shutil.copy(weights / "a_old.pth", weights / "z_new.pth")
    (weights / "z_new.json").write_text(json.dumps(_meta("2026-03-01T10:00:00+00:00", 0.9)))
    shutil.copy(weights / "a_old.pth", weights / "m_mid.pth")
    (weights / "m_mid.json").write_text(json.dumps(_meta("2026-02-01T10:00:00+00:00", 0.7)))
    shutil.copytree(images, home / "processed_data" / "test_dev_cropped")
    shutil.copytree(images, home / "processed_data" / "val_cropped")
    return home


@pytest.fixture
def in_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(home)
    pin_cell_size()
    return home


def make_app(tmp: Path) -> DftuiApp:
    return DftuiApp(initial="runs", load_torch=False, settings_path=tmp / "settings.json")


def test_weights_entries_newest_first_and_bad_metadata(tmp_path: Path) -> None:
    (tmp_path / "b.pth").write_bytes(b"x")
    (tmp_path / "b.json").write_text(json.dumps(_meta("2026-05-01T00:00:00+00:00", 0.5, 64)))
    (tmp_path / "a.pth").write_bytes(b"x")
    (tmp_path / "a.json").write_text(json.dumps(_meta("2026-06-01T00:00:00+00:00", 0.75)))
    # Written by someone else: every field of the wrong type or out of range.
    (tmp_path / "c.pth").write_bytes(b"x")
    (tmp_path / "c.json").write_text(json.dumps({
        "backbone": 3, "preprocessing": {"input_size": "big"}, "best_val_accuracy": 7,
        "created": "yesterday"}))
    os.utime(tmp_path / "c.pth", (0, 0))  # its date falls back to the file's: 1970
    (tmp_path / "ref.pth").write_bytes(b"x")  # no metadata: reference format
    os.utime(tmp_path / "ref.pth", (86400 * 365 * 40, 86400 * 365 * 40))  # 2009
    entries = weights_entries(tmp_path, extra=[tmp_path / "a.pth", None])
    assert [e.path.name for e in entries] == ["a.pth", "b.pth", "ref.pth", "c.pth"]
    assert describe(entries[0]) == "mobilenet_v2 32px 75.0% 2026-06-01"
    assert describe(entries[1]).startswith("mobilenet_v2 64px 50.0%")
    assert describe(entries[2]).startswith("reference format")
    assert describe(entries[3]).startswith("?")  # no crash, nothing made up
    assert "%" not in describe(entries[3]) and "px" not in describe(entries[3])


async def test_classify_weights_list_preselects_the_newest(in_home: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = await app.open_screen("classify", device="cpu")
        assert isinstance(screen, ClassifyScreen)
        await pilot.pause()
        picker = screen.query_one("#weights-list", WeightsPicker)
        assert [e.path.name for e in picker.entries] == ["z_new.pth", "m_mid.pth", "a_old.pth"]
        assert picker.has_focus and picker.highlighted == 0
        await pilot.press("enter")  # no arrow key first
        await wait_for(pilot, lambda: screen.weights_path is not None, what="the model")
        assert screen.weights_path.name == "z_new.pth"


async def test_classify_80x24_folder_summary_and_truth_visible(in_home: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = await app.open_screen("classify", weights=Path("weights/z_new.pth"), device="cpu")
        await wait_for(pilot, lambda: screen.predictor is not None, what="the model")
        screen._folder = Path("processed_data/val_cropped")
        await pilot.press("f")
        await wait_for(pilot, lambda: not screen._folder_running, what="the folder")
        await pilot.pause()
        text = "\n".join(screen_lines(app))
        real = sum(1 for r in screen.rows.values() if r.truth == "real")
        # Every image is called fake (p 0.8): accuracy = the share of fakes, shown in full.
        accuracy = f"{1 - real / len(screen.rows):.1%}"
        assert "accuracy" in text and accuracy in text, text
        assert "Truth" in text and "fake ✓" in text and "real ✗" in text, text


async def test_evaluate_80x24_shows_results_and_reaches_the_errors(in_home: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = await app.open_screen("evaluate", device="cpu")
        assert isinstance(screen, EvaluateScreen)
        await pilot.pause()
        assert screen.has_class("-narrow")
        picker = screen.query_one("#eval-weights", WeightsPicker)
        assert picker.highlighted == 0 and picker.entries[0].path.name == "z_new.pth"
        await pilot.press("w", "enter", "r")
        await wait_for(pilot, lambda: not screen.running and screen.results, what="the evaluation")
        await pilot.pause()
        assert Path(screen.results[0].weights).name == "z_new.pth"
        text = "\n".join(screen_lines(app))
        m = screen.current_metrics()
        # All nine cards at once, one line each, and the ROC plot with room to draw.
        for _key, title in CARDS:
            assert title in text, (title, text)
        assert f"Accuracy {m.accuracy:.1%}" in text
        assert screen.query_one("#eval-roc").size.width >= 40
        # The misclassified list: m focuses it and it scrolls into view with its rows.
        await pilot.press("m")
        await pilot.pause()
        errors = screen.query_one("#eval-errors")
        assert errors.has_focus
        lines = screen_lines(app)
        # The score as the model computed it: 0.800 in fp32, 0.799 under bf16 (the automatic
        # precision depends on the CPU), so it is read from the result, not written here.
        shown = f"{screen.results[0].misclassified(screen.threshold)[0].p_fake:.3f}"
        assert any("fake" in line and "real" in line and shown in line for line in lines), "\n".join(lines)
        assert "Threshold" in lines[-1] and "Errors" in lines[-1]  # the footer fits


async def test_prepare_80x24_every_field_on_screen(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = await app.open_screen("prepare")
        await pilot.pause()
        for field in ("root", "out", "margin", "min_size", "fmt", "workers"):
            region = screen.query_one(f"#{field}").region
            assert region.width >= 4 and region.right <= SMALL[0], (field, region)
        status = screen.query_one("#prepare-status")
        assert status.region.width >= 40  # a line of its own, not a 4-column strip
