"""The Setup screen: inline validation, data set summaries as soon as a folder is chosen
(typed or picked), the overwrite warning, the config it builds and remembered choices."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Checkbox, Input, Static

from dftui.core.config import ConfigError
from dftui.core.synthetic import SyntheticSpec, make_dataset
from dftui.ui.app import DftuiApp
from dftui.ui.screens.setup import SetupScreen, validate_field, weights_note
from dftui.ui.widgets.folder_picker import FolderPicker
from tests.ui.helpers import wait_for


def note(screen: SetupScreen, widget_id: str) -> str:
    return str(screen.query_one(f"#{widget_id}", Static).render())


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("epochs", "0", "at least 1"),
        ("epochs", "ten", "not a whole number"),
        ("batch_size", "", "enter a whole number"),
        ("lr", "abc", "not a number"),
        ("lr", "0", "greater than 0"),
        ("img_size", "16", "at least 32"),
        ("workers", "-1", "at least 0"),
        ("weights", "", "enter a file name"),
    ],
)
def test_validation_messages(field: str, text: str, message: str) -> None:
    assert message in (validate_field(field, text, "mobilenet_v2") or "")


@pytest.mark.parametrize(
    ("field", "text"),
    # lr 5: the engine takes it, so the form does too (it once had a rule of its own, < 1)
    [("epochs", "15"), ("lr", "1e-4"), ("lr", "5"), ("img_size", ""), ("img_size", "64"), ("workers", ""),
     ("seed", "0"), ("weights", "weights/x.pth")],
)
def test_validation_accepts(field: str, text: str) -> None:
    assert validate_field(field, text, "mobilenet_v2") is None


def test_weights_note(tmp_path: Path) -> None:
    target = tmp_path / "m.pth"
    assert "saved to" in weights_note(str(target), False)[1]
    target.write_bytes(b"x")
    css, text = weights_note(str(target), False)
    assert css == "warning" and "is kept" in text and "m-<date>-<time>.pth" in text
    assert "REPLACED" in weights_note(str(target), True)[1]


async def test_summary_and_errors_while_typing(dataset, tmp_path: Path) -> None:
    no_fake = tmp_path / "nofake"
    (no_fake / "real").mkdir(parents=True)
    imbalanced = tmp_path / "imb"
    make_dataset(imbalanced, SyntheticSpec(n_per_class=4, size=32, seed=5))
    for p in sorted((imbalanced / "fake").iterdir())[:2]:
        p.unlink()
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        # Defaults from the reference project.
        assert screen.query_one("#train_dir", Input).value == "processed_data/train_cropped"
        assert screen.query_one("#val_dir", Input).value == "processed_data/val_cropped"
        assert screen.query_one("#epochs", Input).value == "15"
        assert screen.query_one("#batch_size", Input).value == "32"
        assert screen.query_one("#lr", Input).value == "1e-4"
        screen.query_one("#train_dir", Input).value = str(dataset["train"])
        await wait_for(pilot, lambda: screen.scans["train_dir"] is not None, what="scan")
        assert "20 real, 20 fake" in note(screen, "train_dir-note")
        screen.query_one("#val_dir", Input).value = str(no_fake)
        await wait_for(pilot, lambda: "has no fake/ folder" in note(screen, "val_dir-note"),
                       what="scan error")
        assert note(screen, "val_dir-note").startswith("✗")
        screen.query_one("#val_dir", Input).value = str(imbalanced)
        await wait_for(pilot, lambda: "imbalanced" in note(screen, "val_dir-note"), what="scan")
        assert "4 real, 2 fake" in note(screen, "val_dir-note")
        # Inline validation of a typed number.
        screen.query_one("#epochs", Input).value = "0"
        await pilot.pause()
        assert "epochs must be at least 1 (got 0)" in note(screen, "field-errors")
        assert screen.query_one("#epochs", Input).has_class("invalid-field")
        with pytest.raises(ConfigError, match="epochs"):
            screen.build_config()
        screen.query_one("#epochs", Input).value = "3"
        await pilot.pause()
        assert note(screen, "field-errors") == ""
        # Start refuses a data folder that cannot work, with its message.
        screen.query_one("#val_dir", Input).value = str(no_fake)
        await wait_for(pilot, lambda: "has no fake/" in note(screen, "val_dir-note"), what="error")
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert isinstance(app.screen, SetupScreen)
        assert any("has no fake/ folder" in str(n.message) for n in app._notifications)


async def test_folder_picker_chooses_folder(dataset) -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.query_one("#val_dir", Input).focus()
        await pilot.press("ctrl+o")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, FolderPicker)
        path_input = picker.query_one("#picker-path", Input)
        path_input.value = str(dataset["val"] / "nope")
        path_input.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, FolderPicker)  # not a folder: stays, says so
        assert "is not a folder" in str(picker.query_one("#picker-error", Static).render())
        path_input.value = str(dataset["val"])
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert Path(screen.query_one("#val_dir", Input).value).resolve() == dataset["val"].resolve()
        await wait_for(pilot, lambda: screen.scans["val_dir"] is not None, what="scan")
        assert "10 real, 10 fake" in note(screen, "val_dir-note")
        # The tree moves up with backspace and escape cancels.
        await pilot.press("ctrl+o")
        await pilot.pause()
        picker = app.screen
        picker.query_one("#picker-tree").focus()
        before = Path(picker.query_one("#picker-tree").path)
        await pilot.press("backspace")
        await pilot.pause()
        assert Path(picker.query_one("#picker-tree").path) == before.parent
        await pilot.press("escape")
        assert app.screen is screen


async def test_config_and_overwrite_confirmation(dataset, standin_weights, tmp_path: Path) -> None:
    existing = tmp_path / "w" / "old.pth"
    existing.parent.mkdir()
    existing.write_bytes(b"keep me")
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        values = {"train_dir": dataset["train"], "val_dir": dataset["val"], "epochs": "1",
                  "batch_size": "8", "img_size": "32", "workers": "0", "seed": "7",
                  "lr": "3e-4", "weights": existing}
        for key, value in values.items():
            screen.query_one(f"#{key}", Input).value = str(value)
        screen.query_one("#pretrained").value = "file"
        screen.query_one("#pretrained_path", Input).value = str(standin_weights)
        await pilot.pause()
        assert "is kept" in note(screen, "weights-note")
        config = screen.build_config()
        assert (config.epochs, config.batch_size, config.img_size, config.workers) == (1, 8, 32, 0)
        assert config.lr == pytest.approx(3e-4) and config.seed == 7
        assert config.pretrained == str(standin_weights)
        assert config.weights_path == existing and not config.overwrite
        assert config.augment == "none"  # off by default, as the reference
        screen.query_one("#augment").value = "robust"
        await pilot.pause()
        assert screen.build_config().augment == "robust"
        screen.query_one("#overwrite", Checkbox).value = True
        await pilot.pause()
        assert "REPLACED" in note(screen, "weights-note")
        await wait_for(pilot, lambda: all(screen.scans.values()), what="scans")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="confirm")
        await pilot.press("n")  # declined: nothing starts, nothing is overwritten
        await pilot.pause()
        assert app.screen is screen and not app.run_active
        assert existing.read_bytes() == b"keep me"


async def test_choices_remembered_between_launches(dataset) -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.query_one("#epochs", Input).value = "4"
        screen.query_one("#train_dir", Input).value = str(dataset["train"])
        screen.query_one("#backbone").value = "xception"
        screen.query_one("#augment").value = "light"
        await pilot.pause()
        assert screen.query_one("#weights", Input).value == "weights/xception_deepfake.pth"
        screen.remember()
    again = DftuiApp(load_torch=False)
    async with again.run_test(size=(80, 24)):
        screen = again.screen
        assert screen.query_one("#epochs", Input).value == "4"
        assert screen.query_one("#train_dir", Input).value == str(dataset["train"])
        assert screen.query_one("#backbone").value == "xception"
        assert screen.query_one("#augment").value == "light"


async def test_several_gpus_offer_a_distributed_background_run(dataset, tmp_path: Path) -> None:
    """With two or more CUDA devices the Device list offers "devices: N GPUs"; starting
    with it asks for a background run of N processes on CUDA, and a batch size that does
    not split over them is refused naming the field."""
    from textual.widgets import Select

    from dftui.core.devices import DeviceInfo

    app = DftuiApp(load_torch=False)
    started: list[tuple] = []

    async def fake_start(config, resume=None, detach=None, nproc=1):
        started.append((config, detach, nproc))
        return True

    app.start_training = fake_start  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        for key, value in {"train_dir": dataset["train"], "val_dir": dataset["val"],
                           "epochs": "1", "batch_size": "7", "weights": tmp_path / "m.pth"}.items():
            screen.query_one(f"#{key}", Input).value = str(value)
        screen._fill_devices([DeviceInfo("cuda:0", "cuda:0 GPU A"), DeviceInfo("cuda:1", "cuda:1 GPU B"),
                              DeviceInfo("cpu", "cpu")])
        select = screen.query_one("#device", Select)
        assert ("devices: 2 GPUs (one process each)", "ddp:2") in [
            (str(label), value) for label, value in select._options]
        select.value = "ddp:2"
        screen.query_one("#detach", Checkbox).value = False
        await wait_for(pilot, lambda: all(screen.scans.values()), what="scans")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not started  # 7 does not split over 2 GPUs
        screen.query_one("#batch_size", Input).value = "8"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: bool(started), what="start")
        config, detach, nproc = started[0]
        assert (config.device, detach, nproc) == ("cuda", True, 2)


async def test_one_gpu_machine_offers_no_distributed_choice() -> None:
    from textual.widgets import Select

    from dftui.core.devices import DeviceInfo

    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)):
        screen = app.screen
        screen._fill_devices([DeviceInfo("cuda:0", "cuda:0 GPU A"), DeviceInfo("cpu", "cpu")])
        values = [value for _, value in screen.query_one("#device", Select)._options]
        assert not any(str(v).startswith("ddp:") for v in values)
        assert screen.processes() == 1


async def test_notes_recheck_files_when_setup_is_shown_again(tmp_path: Path, monkeypatch,
                                                            isolated_home: Path) -> None:
    """Issue 16: "ImageNet weights not cached" and "best weights are saved to X" stayed after
    the cache file appeared and X was written by a run; they are rechecked on return."""
    from dftui.core.backbones import BACKBONES

    monkeypatch.chdir(tmp_path)
    app = DftuiApp(initial="setup", load_torch=False, settings_path=tmp_path / "s.json")
    async with app.run_test(size=(100, 40)) as pilot:
        setup = app.screen
        await pilot.pause()

        def note(name: str) -> str:
            return str(setup.query_one(f"#{name}", Static).render())

        assert "not cached" in note("backbone-note")
        assert "best weights are saved to" in note("weights-note")
        cached = BACKBONES["mobilenet_v2"].cached_weights
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(b"downloaded meanwhile")
        weights = Path(setup.query_one("#weights", Input).value)
        weights.parent.mkdir(parents=True, exist_ok=True)
        weights.write_bytes(b"a run saved it")
        await app.open_screen("runs")
        await app.open_screen("setup")
        await pilot.pause()
        assert "cached ✓" in note("backbone-note")
        assert "exists and is kept" in note("weights-note")
