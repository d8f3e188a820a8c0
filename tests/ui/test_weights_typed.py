"""The weights path field reads the same on Classify and Evaluate (weights_picker.read_typed):
a folder is listed in the picker, a file is used, a missing path is refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftui.ui.app import DftuiApp
from dftui.ui.widgets.weights_picker import WeightsPicker, read_typed
from tests.ui.helpers import pin_cell_size


def test_read_typed(tmp_path: Path) -> None:
    (tmp_path / "a.pth").write_bytes(b"")
    assert read_typed("  ") == read_typed("")
    assert read_typed("").file is None and read_typed("").folder is None and not read_typed("").error
    assert read_typed(f" {tmp_path} ").folder == tmp_path
    assert read_typed(str(tmp_path / "a.pth")).file == tmp_path / "a.pth"
    refused = read_typed(str(tmp_path / "missing.pth"))
    assert refused.file is None and "does not exist" in (refused.error or "")


@pytest.mark.parametrize("screen_name, field, picker_id", [
    ("classify", "#weights-path", "#weights-list"),
    ("evaluate", "#eval-weights-path", "#eval-weights"),
])
async def test_a_typed_folder_is_listed_and_a_missing_file_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, screen_name: str, field: str, picker_id: str
) -> None:
    pin_cell_size()
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "x_deepfake.pth").write_bytes(b"not loaded here")
    app = DftuiApp(initial="runs", load_torch=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(140, 48)) as pilot:
        screen = await app.open_screen(screen_name)
        await pilot.pause()
        picker = screen.query_one(picker_id, WeightsPicker)
        assert [e.path for e in picker.entries] == []  # weights/ does not exist here
        box = screen.query_one(field)
        box.focus()
        box.value = str(other)
        await pilot.press("enter")
        await pilot.pause()
        assert picker.weights_dir == other
        assert [e.path.name for e in picker.entries] == ["x_deepfake.pth"]
        assert picker.has_focus
        box.focus()
        box.value = str(tmp_path / "missing.pth")
        await pilot.press("enter")
        await pilot.pause()
        shown = "\n".join(str(s.content) for s in screen.query("#model-status, #eval-status"))
        assert "missing.pth does not exist; give a .pth file or a folder" in shown
