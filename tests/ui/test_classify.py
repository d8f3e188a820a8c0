"""The Classify screen driven through the real app with the Pilot: weights from a real
(tiny) fit(), an image classified and walked with n / p, a folder into a sorted table and a
CSV, reference-format weights, and bad weights / images that must leave the app usable."""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dftui.core.config import TrainConfig
from dftui.core.events import RunFinished
from dftui.ui.app import DftuiApp
from dftui.ui.screens.classify import ClassifyScreen, ExportScreen, images_in
from dftui.ui.widgets.image_view import ImageView
from dftui.ui.widgets.prob_bars import ProbBars
from tests.ui.helpers import pin_cell_size, wait_for


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, dataset, standin_weights) -> dict[str, Path]:
    """A working folder laid out as a user has it: weights/ with a fit() result and a
    reference-format file, processed_data/val_cropped/{real,fake}, and broken files."""
    import torch
    import torchvision

    from dftui.core.train import fit

    ws = tmp_path_factory.mktemp("classify")
    config = TrainConfig(
        train_dir=dataset["train"], val_dir=dataset["val"], epochs=1, batch_size=8, img_size=32,
        pretrained=str(standin_weights), workers=0, out_dir=ws / "weights", weights_name="tiny.pth",
        runs_dir=ws / "runs", device="cpu",
    )
    final = fit(config)
    assert isinstance(final, RunFinished), final
    tiny = Path(final.weights_path)

    # The reference scripts' format: torchvision mobilenet_v2, classifier[1] = Linear(1280, 2),
    # torch.save(model.state_dict()), nothing beside it.
    model = torchvision.models.mobilenet_v2(weights=None)
    model.classifier[1] = torch.nn.Linear(1280, 2)
    model.load_state_dict(torch.load(tiny, weights_only=True))
    reference = ws / "weights" / "reference.pth"
    torch.save(model.state_dict(), reference)

    images = ws / "processed_data" / "val_cropped"
    shutil.copytree(dataset["val"], images)
    corrupt = ws / "corrupt.pth"  # a download cut short
    corrupt.write_bytes(tiny.read_bytes()[:5000])
    text = ws / "notes.pth"
    text.write_text("not weights at all\n")
    bad_image = ws / "broken.png"
    bad_image.write_bytes(b"\x89PNG but truncated")
    return {
        "root": ws, "tiny": tiny, "reference": reference, "images": images,
        "corrupt": corrupt, "text": text, "imagenet": standin_weights, "bad_image": bad_image,
    }


@pytest.fixture
def in_workspace(workspace, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.chdir(workspace["root"])
    pin_cell_size()
    return workspace


def make_app(tmp: Path) -> DftuiApp:
    return DftuiApp(initial="runs", load_torch=False, settings_path=tmp / "settings.json")


async def open_classify(app: DftuiApp, pilot, **kwargs) -> ClassifyScreen:
    screen = await app.open_screen("classify", **kwargs)
    assert isinstance(screen, ClassifyScreen)
    await pilot.pause()
    return screen


async def wait_model(pilot, screen: ClassifyScreen) -> None:
    await wait_for(pilot, lambda: screen.predictor is not None or screen._loading is None,
                   what="the model")


async def type_into(pilot, screen, selector: str, text: str) -> None:
    field = screen.query_one(selector)
    field.focus()
    field.value = text
    await pilot.press("enter")


def verdict_for(screen: ClassifyScreen, path: Path):
    bars = screen.query_one("#verdict", ProbBars)
    if screen.current_image == path and bars.verdict is not None:
        return bars.verdict
    return None


async def test_classify_an_image_and_walk_the_folder(in_workspace, tmp_path: Path) -> None:
    from dftui.core.predict import Predictor

    ws = in_workspace
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_classify(app, pilot, weights=Path("weights/tiny.pth"))
        await wait_model(pilot, screen)
        assert screen.predictor is not None, screen.query_one("#model-status").content
        status = str(screen.query_one("#model-status").content)
        assert "tiny.pth" in status and "mobilenet_v2" in status

        fakes = images_in(ws["images"] / "fake")
        first = Path("processed_data/val_cropped/fake") / fakes[0].name
        await type_into(pilot, screen, "#image-path", str(first))
        await wait_for(pilot, lambda: verdict_for(screen, first), what="the verdict")
        verdict = verdict_for(screen, first)
        expected = Predictor(ws["tiny"], device="cpu").predict_image(first)
        assert verdict.label == expected.label
        assert math.isclose(verdict.p_fake, expected.p_fake, abs_tol=1e-4)
        assert math.isclose(verdict.p_real + verdict.p_fake, 1.0, abs_tol=1e-6)
        assert verdict.latency_ms is not None and verdict.latency_ms > 0
        view = screen.query_one("#image-view", ImageView)
        assert view.image is not None
        assert fakes[0].name in view.caption and f"1/{len(fakes)}" in view.caption
        # Headless, the image is drawn with half blocks whatever the terminal.
        from textual_image.widget import HalfcellImage

        assert len(view.query(HalfcellImage)) == 1

        # Walk with single keys (the tree has focus, not a text field).
        screen.query_one("#image-tree").focus()
        await pilot.press("n")
        second = first.parent / fakes[1].name
        assert screen.current_image == second
        await wait_for(pilot, lambda: verdict_for(screen, second), what="the next verdict")
        assert f"2/{len(fakes)}" in view.caption
        await pilot.press("p")
        assert screen.current_image == first
        await wait_for(pilot, lambda: verdict_for(screen, first), what="the previous verdict")
        await pilot.press("p")  # already the first: stays, says so
        assert screen.current_image == first


async def test_folder_table_sorts_and_exports_csv(in_workspace, tmp_path: Path) -> None:
    ws = in_workspace
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_classify(app, pilot, weights=ws["tiny"])
        await wait_model(pilot, screen)
        await type_into(pilot, screen, "#image-path", "processed_data/val_cropped")
        screen.query_one("#image-tree").focus()
        await pilot.press("f")
        assert screen.table_folder == Path("processed_data/val_cropped")
        await wait_for(pilot, lambda: len(screen.rows) == 20 and not screen._folder_running,
                       what="the folder table")
        table = screen.query_one("#folder-table")
        assert table.row_count == 20
        truths = {r.truth for r in screen.rows.values()}
        assert truths == {"real", "fake"}
        labels = [r.prediction.label for r in screen.rows.values()]
        assert set(labels) <= {"real", "fake"}
        accuracy = sum(r.truth == r.prediction.label for r in screen.rows.values()) / 20
        assert f"{accuracy:.1%}" in str(screen.query_one("#folder-status").content)

        # s cycles the sort column: file, verdict, then P(fake) (most suspicious first).
        for _ in range(3):
            await pilot.press("s")
        p = [r.prediction.p_fake for r in screen.ordered_rows()]
        assert p == sorted(p, reverse=True)
        assert "P(fake)" in str(screen.query_one("#folder-status").content)

        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        # In the working folder, not in the data set (issue 16).
        default = ws["root"] / "val_cropped-predictions.csv"
        assert app.screen.query_one("#export-path").value == str(default.resolve())
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.last_export is not None, what="the export")
        with open(screen.last_export, newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 20
        assert [float(r["p_fake"]) for r in rows] == pytest.approx(p, abs=1e-6)
        assert {r["truth"] for r in rows} == {"real", "fake"}

        # An existing file is replaced only after a second Enter.
        target = tmp_path / "out.csv"
        target.write_text("keep me")
        await pilot.press("e")
        export = app.screen
        export.query_one("#export-path").value = str(target)
        await pilot.press("enter")
        assert app.screen is export and target.read_text() == "keep me"
        assert "exists" in str(export.query_one("#export-note").content)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.last_export == target, what="the replacement")
        assert target.read_text().startswith("path,label,p_real,p_fake")
    default.unlink()


async def test_reference_format_weights_are_accepted(in_workspace, tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_classify(app, pilot)
        options = screen.query_one("#weights-list")
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("reference.pth" in p and "reference format" in p for p in prompts)
        assert any("tiny.pth" in p and "mobilenet_v2" in p and "%" in p for p in prompts)
        # Choose it from the list with the keyboard.
        options.focus()
        index = next(i for i, p in enumerate(prompts) if "reference.pth" in p)
        options.highlighted = index
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.weights_path is not None or "Loading" not in
                       str(screen.query_one("#model-status").content), what="the model")
        assert screen.weights_path == Path("weights/reference.pth")
        assert "reference format" in str(screen.query_one("#model-status").content)
        image = images_in(Path("processed_data/val_cropped/real"))[0]
        screen.show_image(image)
        await wait_for(pilot, lambda: verdict_for(screen, image), what="the verdict")
        assert verdict_for(screen, image).label in ("real", "fake")


async def test_bad_weights_and_images_show_a_message(in_workspace, tmp_path: Path) -> None:
    ws = in_workspace
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_classify(app, pilot)
        status = screen.query_one("#model-status")

        def settled() -> bool:
            return screen._loading is None

        await type_into(pilot, screen, "#weights-path", str(ws["corrupt"]))
        await wait_for(pilot, settled, what="the corrupt file")
        assert screen.predictor is None
        assert "not a readable PyTorch weights file" in str(status.content)
        assert status.has_class("-error")

        await type_into(pilot, screen, "#weights-path", str(ws["text"]))
        await wait_for(pilot, settled, what="the text file")
        assert "not PyTorch weights" in str(status.content)

        await type_into(pilot, screen, "#weights-path", str(ws["imagenet"]))
        await wait_for(pilot, settled, what="the ImageNet file")
        assert "not 2-class" in str(status.content)
        assert "--pretrained" not in str(status.content)  # a dashboard message names no flag

        await type_into(pilot, screen, "#weights-path", "weights/missing.pth")
        await wait_for(pilot, settled, what="the missing file")
        assert "does not exist" in str(status.content)

        # Still usable: good weights load, and an unreadable image is a message, not a crash.
        await type_into(pilot, screen, "#weights-path", "weights/tiny.pth")
        await wait_for(pilot, settled, what="good weights")
        assert screen.predictor is not None and not status.has_class("-error")
        await type_into(pilot, screen, "#weights-path", str(ws["corrupt"]))
        await wait_for(pilot, settled, what="the corrupt file again")
        assert "still using tiny.pth" in str(status.content)
        assert screen.weights_path == Path("weights/tiny.pth")

        await type_into(pilot, screen, "#image-path", str(ws["bad_image"]))
        bars = screen.query_one("#verdict", ProbBars)
        await wait_for(pilot, lambda: bars.has_class("-error"), what="the image error")
        assert "could not be read" in bars.message
        await type_into(pilot, screen, "#image-path", "nowhere/none.png")
        assert "does not exist" in bars.message


async def test_image_view_draws_pil_images_files_and_messages(tmp_path: Path) -> None:
    from PIL import Image
    from textual.app import App
    from textual.widgets import Static

    class Host(App[None]):
        def compose(self):
            yield ImageView("nothing yet")

    pin_cell_size()
    big = Image.new("RGBA", (2000, 1000), (255, 0, 0, 128))
    path = tmp_path / "x.png"
    big.save(path)
    (tmp_path / "bad.png").write_text("not an image")
    async with Host().run_test(size=(60, 20)) as pilot:
        view = pilot.app.query_one(ImageView)
        view.show_image(big, "big one")
        await pilot.pause()
        assert view.image.size == (768, 384) and view.image.mode == "RGB"
        assert view.caption == "big one"
        view.show_path(path)
        assert view.caption == "x.png" and view.image is not None
        view.clear("gone")
        await pilot.pause()
        assert view.image is None
        assert str(view.query_one("#image-placeholder", Static).content) == "gone"
        view.show_path(tmp_path / "bad.png")
        assert view.image is None
        assert "Cannot show bad.png" in str(view.query_one("#image-placeholder", Static).content)


def test_screen_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import dftui.ui.screens.classify, dftui.ui.screens.runs, "
        "dftui.ui.widgets.image_view; "
        "bad = [m for m in ('torch', 'torchvision', 'timm') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())


# -- weights with a fixed answer (the snapshot tests use them too) ---------------------
def make_constant_weights(path: Path, p_fake: float) -> None:
    """A real MobileNet-v2 file whose head ignores the image (zero weights, bias set), so it
    says p(fake) ≈ ``p_fake`` for every input: the snapshot does not hang on float noise.
    The logit is rounded to a bf16 number (0.8 -> 0.7995), so fp32 and bf16 autocast give
    the same p(fake): the automatic precision, which depends on the CPU, changes nothing."""
    import torch

    from dftui.core.backbones import BACKBONES

    torch.manual_seed(0)
    model = BACKBONES["mobilenet_v2"].build()
    head = model.classifier[1]
    logit = torch.tensor(math.log(p_fake / (1 - p_fake))).to(torch.bfloat16).float()
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.stack([torch.tensor(0.0), logit]))
    torch.save(model.state_dict(), path)
