"""The Prepare screen driven through the real app with the Pilot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image
from textual.widgets import Button, Checkbox, Input, Static

from dftui.core.demo import make_openforensics_sample
from dftui.core.prepare import PrepareFinished
from dftui.ui.app import DftuiApp
from dftui.ui.screens.prepare import DemoDataOffer, PrepareScreen, maybe_offer_demo_data
from tests.ui.helpers import wait_for

SIZE = (130, 45)


def make_app(tmp_path: Path, initial: str = "prepare", **kwargs) -> DftuiApp:
    return DftuiApp(initial=initial, load_torch=False, settings_path=tmp_path / "settings.json",
                    **kwargs)




@pytest.fixture
def archive(tmp_path: Path):
    root = tmp_path / "arch"
    return root, make_openforensics_sample(root, "distributed", splits=("Train", "Val"))


async def test_looking_at_the_same_archive_again_keeps_the_ticked_splits(tmp_path: Path, archive) -> None:
    """Enter in the archive field looks the folder up again; a split the user unticked
    stays unticked (it was ticked again, and prepared against the user's choice)."""
    root, _ = archive
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#root", Input).value = str(root)
        await wait_for(pilot, lambda: screen.query_one("#split-Val", Checkbox).value)
        await pilot.click("#split-Val")
        await pilot.pause()
        assert not screen.query_one("#split-Val", Checkbox).value
        screen.query_one("#root", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert not screen.query_one("#split-Val", Checkbox).value
        assert screen.query_one("#split-Train", Checkbox).value
        screen.query_one("#root", Input).value = str(tmp_path)  # another folder: ticks reset
        await wait_for(pilot, lambda: screen.query_one("#split-Train", Checkbox).disabled)
        screen.query_one("#root", Input).value = str(root)
        await wait_for(pilot, lambda: screen.query_one("#split-Val", Checkbox).value)


async def test_prepare_job_runs_and_hands_folders_to_setup(tmp_path: Path, archive) -> None:
    root, expected = archive
    out = tmp_path / "crops"
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, PrepareScreen)
        screen.query_one("#root", Input).value = str(root)
        await wait_for(pilot, lambda: screen.query_one("#split-Train", Checkbox).value)
        assert screen.query_one("#split-Val", Checkbox).value
        assert screen.query_one("#split-Test-Dev", Checkbox).disabled  # not in this archive
        assert "found Train" in str(screen.query_one("#root-note", Static).render())
        screen.query_one("#out", Input).value = str(out)
        await pilot.click("#split-Val")  # untick Val: only Train is prepared
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.final is not None)
        assert [s.split for s in screen.final.summaries] == ["Train"]
        assert not (out / "val_cropped").exists()
        assert screen.query_one("#use", Button).disabled  # no validation folder yet
        await pilot.click("#split-Val")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.final is not None and not screen.running)
        final = screen.final
        assert isinstance(final, PrepareFinished) and final.status == "finished"
        assert [s.split for s in final.summaries] == ["Train", "Val"]
        assert final.summaries[0].written == 0  # done by the first job
        n_valid = sum(1 for e in expected if e.expected in ("real", "fake"))
        assert sum(s.written + s.existing for s in final.summaries) == n_valid
        assert len(list(out.glob("*_cropped/*/*.jpg"))) == n_valid
        summary = str(screen.query_one("#prepare-summary", Static).render())
        assert "Train: 6/6 images" in summary and "prepare_report.json" in summary
        assert "Setup now trains on" in summary
        assert not screen.query_one("#use", Button).disabled
        assert not screen.running and not screen.query_one("#start", Button).disabled
        setup = app.settings.data["setup"]
        assert Path(setup["train_dir"]) == out / "train_cropped"
        assert Path(setup["val_dir"]) == out / "val_cropped"
        # the form is remembered
        assert app.settings.data["prepare"]["root"] == str(root)
        await pilot.click("#use")  # the button, as a mouse user would: Setup opens
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SetupScreen", what="Setup")
    saved = json.loads((tmp_path / "settings.json").read_text())
    assert Path(saved["setup"]["val_dir"]) == out / "val_cropped"


async def test_stop_button_stops_and_start_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "arch"
    make_openforensics_sample(root, "relative", splits=("Train",), images_per_split=20, defects=False)
    save = Image.Image.save

    def slow_save(self, *a, **k):
        time.sleep(0.1)
        return save(self, *a, **k)

    monkeypatch.setattr(Image.Image, "save", slow_save)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#root", Input).value = str(root)
        screen.query_one("#out", Input).value = str(tmp_path / "out")
        screen.query_one("#workers", Input).value = "1"
        await pilot.pause()
        await pilot.click("#start")
        await wait_for(pilot, lambda: len(list((tmp_path / "out").glob("*/*/*.jpg"))) >= 3)
        assert screen.running
        await pilot.click("#stop")
        assert screen._stop.is_set()
        await wait_for(pilot, lambda: screen.final is not None)
        assert screen.final.status == "stopped"
        first = screen.final.summaries[0].written
        assert first < 60
        assert "Start again to resume" in str(screen.query_one("#prepare-summary", Static).render())
        await pilot.click("#start")
        await wait_for(pilot, lambda: screen.final is not None and not screen.running)
        assert screen.final.status == "finished"
        s = screen.final.summaries[0]
        assert s.existing == first and s.written + s.existing == 60


async def test_bad_form_shows_the_problem(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#root", Input).value = str(tmp_path / "nowhere")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not screen.running
        assert "is not a folder" in str(screen.query_one("#root-note", Static).render())
        assert "choose the folder" in str(screen.query_one("#form-error", Static).render()) or \
            "no split" in str(screen.query_one("#form-error", Static).render())


async def test_empty_default_folders_offer_demo_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default folders are relative: processed_data/...
    app = make_app(tmp_path, initial="prepare")
    async with app.run_test(size=SIZE) as pilot:
        app.settings.data["setup"] = {"train_dir": "elsewhere/train", "val_dir": "processed_data/val_cropped"}
        assert not maybe_offer_demo_data(app)  # Setup points at the user's own folders
        app.settings.data["setup"] = {"train_dir": "processed_data/train_cropped"}
        assert maybe_offer_demo_data(app)
        await pilot.pause()
        assert isinstance(app.screen, DemoDataOffer)
        await pilot.press("d")
        # Written, then on to Setup (the next step), with an image size fit for 64 px pictures.
        await wait_for(pilot, lambda: (tmp_path / "processed_data" / "val_cropped" / "fake").is_dir()
                       and app.current_screen_name() == "setup", what="Setup after the demo data")
        assert app.settings.data["setup"]["img_size"] == "64"
        screen = app.get_open_screen("prepare")
        summary = str(screen.query_one("#prepare-summary", Static).render())
        assert "SYNTHETIC" in summary
        assert len(list((tmp_path / "processed_data" / "train_cropped").glob("*/*.png"))) == 64
        assert app.settings.data["setup"]["train_dir"] == "processed_data/train_cropped"
        assert not maybe_offer_demo_data(app)  # data is there now (and it was asked once)
        # a second write refuses to overwrite, naming this screen's way out (not --force) ...
        screen.write_demo_data()
        await wait_for(pilot, lambda: not screen.running)
        refused = str(screen.query_one("#prepare-summary", Static).render())
        assert "already hold files" in refused and "ctrl+d" in refused and "--" not in refused
        # ... and asking again moves the old folders aside (renamed, not deleted)
        screen.write_demo_data()
        await wait_for(pilot, lambda: not screen.running)
        assert list((tmp_path / "processed_data").glob("train_cropped.old-*"))


async def test_demo_folders_reach_an_open_setup_screen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path, initial="setup")
    async with app.run_test(size=SIZE) as pilot:
        setup = app.screen
        screen = await app.open_screen("prepare", out=str(tmp_path / "demo"))
        assert isinstance(screen, PrepareScreen)
        await pilot.pause()
        screen.write_demo_data()
        await wait_for(pilot, lambda: screen.ready is not None and not screen.running)
        await wait_for(pilot, lambda: setup.query_one("#val_dir", Input).value == "demo/val_cropped",
                       what="Setup to take the folders")  # Setup handles a message, in its turn
        assert setup.query_one("#train_dir", Input).value == "demo/train_cropped"
        await pilot.press("ctrl+u")  # Use in Setup: opens it
        await wait_for(pilot, lambda: app.screen is setup)


async def test_setup_offers_demo_data_when_launched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """launch() asks for ``offer_demo_data``; the Setup screen then asks once, after its first frame."""
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path, initial="setup", offer_demo_data=True)  # as dftui.ui.launch.launch()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DemoDataOffer))
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(app.screen, DemoDataOffer)
        assert app.current_screen_name() == "setup"
    plain = make_app(tmp_path, initial="setup")  # tests and embedders: no question
    async with plain.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        assert not isinstance(plain.screen, DemoDataOffer)


async def test_setup_rescans_its_folders_after_demo_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo data goes into the folders Setup already shows (processed_data/...): no input
    changes, so Setup must rescan on DataFoldersReady instead of keeping "does not exist"."""
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path, initial="setup", offer_demo_data=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DemoDataOffer))
        setup = app.get_open_screen("setup")
        assert setup.scans.get("train_dir") is None  # the folders do not exist yet
        await pilot.press("d")
        prepare = app.get_open_screen("prepare")
        await wait_for(pilot, lambda: prepare is not None and prepare.ready is not None
                       and not prepare.running)
        await wait_for(pilot, lambda: all(setup.scans.get(f) is not None for f in ("train_dir", "val_dir")))
        assert app.screen is setup  # back on Setup, the next step
        assert setup.query_one("#img_size").value == "64"
        assert setup.scans["train_dir"].total == 64 and setup.scans["val_dir"].total == 32


async def test_setup_takes_prepared_folders_from_the_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepare hands its folders to Setup as a DataFoldersReady message and Setup fills its own
    fields from it (Prepare does not type into Setup's inputs): the message alone points
    Setup at the folders, at the image size that came with them, and scans them."""
    from dftui.core.synthetic import SyntheticSpec, make_dataset
    from dftui.ui.messages import DataFoldersReady

    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path / "mine" / "train", SyntheticSpec(3, 32, seed=1))
    make_dataset(tmp_path / "mine" / "val", SyntheticSpec(2, 32, seed=2))
    app = make_app(tmp_path, initial="setup")
    async with app.run_test(size=SIZE) as pilot:
        setup = app.screen
        await pilot.pause()
        before = setup.query_one("#img_size", Input).value
        setup.post_message(DataFoldersReady(tmp_path / "mine" / "train", tmp_path / "mine" / "val"))
        await wait_for(pilot, lambda: setup.scans.get("val_dir") is not None
                       and setup.scans.get("train_dir") is not None, what="the scans")
        assert setup.query_one("#train_dir", Input).value == "mine/train"  # relative to cwd
        assert setup.query_one("#val_dir", Input).value == "mine/val"
        assert setup.query_one("#img_size", Input).value == before  # none came with them
        assert setup.scans["train_dir"].total == 6 and setup.scans["val_dir"].total == 4
        setup.post_message(DataFoldersReady(tmp_path / "mine" / "train", tmp_path / "mine" / "val",
                                            img_size=64))
        await wait_for(pilot, lambda: setup.query_one("#img_size", Input).value == "64",
                       what="the image size")

