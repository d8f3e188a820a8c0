"""Issue 15's "done when", end to end: a run with AdamW + cosine warm-up + early stopping +
EMA + calibration finishes from the CLI (a real `dftui train` process) and from the Setup
screen (the real app, driven by the Pilot), resumes exactly after Ctrl+C (compared with an
uninterrupted run, as the resume tests do), and its record (config.json, run.json, the
weights' metadata) shows every choice.

Early stopping is made deterministic with a min delta no epoch can beat (10 on the
validation loss): with patience 2 a 5-epoch run ends after epoch 3, whatever it learns."""

from __future__ import annotations

import csv
import json
import shutil
import signal
from pathlib import Path

import pytest
import torch

from dftui.core.calibration import stored_temperature
from dftui.core.checkpoint import read_metadata
from dftui.core.runs import read_run
from tests.cli.test_interrupt import Proc

pytestmark = pytest.mark.slow

# The improved recipe, as option name → CLI text (every flag derived from the option table).
RECIPE = {
    "optimizer": "adamw", "weight_decay": "0.05", "lr": "0.0005", "lr_schedule": "cosine",
    "warmup_epochs": "1", "early_stop_patience": "2", "early_stop_metric": "val_loss",
    "early_stop_min_delta": "10", "ema": True, "ema_decay": "0.9", "calibrate": True,
}
EPOCHS, STOPS_AT = 5, 3


def _flags() -> list[str]:
    out: list[str] = []
    for name, value in RECIPE.items():
        flag = "--" + name.replace("_", "-")
        out += [flag] if value is True else [flag, value]
    return out


def _noisy(dataset: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """The validation set with three real images filed under fake/: no model gets every
    image right, so a finite temperature exists (calibration refuses a perfect set)."""
    val = tmp_path / "noisy-val"
    shutil.copytree(dataset["val"], val)
    for image in sorted((val / "real").iterdir())[:3]:
        image.rename(val / "fake" / ("x" + image.name))
    return {"train": dataset["train"], "val": val}


def _args(data: dict[str, Path], standin: Path, out: Path, name: str) -> list[str]:
    return [
        "--train", str(data["train"]), "--val", str(data["val"]), "--epochs", str(EPOCHS),
        "--batch-size", "8", "--img-size", "32", "--workers", "0", "--precision", "fp32",
        "--device", "cpu", "--pretrained", str(standin), "--out", str(out), "--name", name,
        "--plain", *_flags(),
    ]


def _metrics(run_dir: Path) -> list[list[float]]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = ("epoch", "train_loss", "val_loss", "val_accuracy")
    return [[float(row[k]) for k in keys] for row in rows]


def _check_record(run_dir: Path, weights: Path) -> None:
    """config.json, run.json and the weights' metadata show every choice and the outcome."""
    config = json.loads((run_dir / "config.json").read_text())
    for name, value in RECIPE.items():
        expected = value if value is True else type(config[name])(value)
        assert config[name] == expected, (name, config[name])
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["early_stop_epoch"] == STOPS_AT
    assert read_run(run_dir).status_text == f"finished (early stop at epoch {STOPS_AT})"
    meta = read_metadata(weights)
    assert meta["weights_kind"] == "ema" and meta["ema"]["decay"] == 0.9
    assert all(meta["config"][name] == config[name] for name in RECIPE)
    assert len(meta["epochs"]) == STOPS_AT
    assert all("raw_val_loss" in row and "lr" in row for row in meta["epochs"])
    temperature, why = stored_temperature(meta)
    assert why is None and temperature is not None and temperature > 0


def test_improved_recipe_from_the_cli_stops_early_and_resumes_exactly(
    dataset, standin_weights, tmp_path, capsys
):
    data = _noisy(dataset, tmp_path)
    out = tmp_path / "w"
    whole = Proc(_args(data, standin_weights, out, "whole.pth"))
    assert whole.finish() == 0, whole.err
    final_line = whole.out[-1]
    assert f"run finished (early stop at epoch {STOPS_AT})" in final_line, whole.out
    assert "calibrated (T=" in final_line
    whole_dir = whole.run_dir
    _check_record(whole_dir, out / "whole.pth")

    # Ctrl+C during epoch 2 (inside the warm-up → cosine hand-over and before the early stop).
    part = Proc(_args(data, standin_weights, out, "part.pth"))
    part.wait_for(f"epoch 1/{EPOCHS}")
    part.p.send_signal(signal.SIGINT)
    assert part.finish() == 130, part.err
    run_dir = part.run_dir
    assert read_run(run_dir).status == "interrupted"
    rest = Proc(["--resume", str(run_dir), "--plain"])
    assert rest.finish() == 0, rest.err
    assert f"run finished (early stop at epoch {STOPS_AT})" in rest.out[-1], rest.out
    _check_record(run_dir, out / "part.pth")

    # The resumed run is the uninterrupted one: same epochs, metrics, weights, temperature.
    assert [r[0] for r in _metrics(run_dir)] == list(range(1, STOPS_AT + 1))
    for a, b in zip(_metrics(whole_dir), _metrics(run_dir), strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), (a, b)
    a = torch.load(out / "whole.pth", weights_only=True)
    b = torch.load(out / "part.pth", weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    ta, _ = stored_temperature(read_metadata(out / "whole.pth"))
    tb, _ = stored_temperature(read_metadata(out / "part.pth"))
    assert ta == pytest.approx(tb, rel=1e-4)

    # `dftui runs` says how both ended, in text and JSON.
    from dftui.cli import main

    capsys.readouterr()
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.count(f"finished (early stop at epoch {STOPS_AT})") == 2
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["status"], r["early_stop_epoch"]) for r in rows] == [("finished", STOPS_AT)] * 2


async def test_improved_recipe_from_the_setup_screen(dataset, standin_weights, tmp_path):
    from textual.widgets import Input, Select

    from dftui.core.events import RunFinished
    from dftui.ui.app import DftuiApp
    from dftui.ui.screens.setup import SetupScreen
    from dftui.ui.screens.training import TrainingScreen
    from dftui.ui.widgets.tickbox import TickBox
    from tests.ui.helpers import one_thread, wait_for

    one_thread()
    data = _noisy(dataset, tmp_path)
    weights = tmp_path / "out" / "setup.pth"
    app = DftuiApp()
    async with app.run_test(size=(100, 40)) as pilot:
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        device = setup.query_one("#device")
        await wait_for(pilot, lambda: "cpu" in [v for _, v in device._options],
                       what="torch to load and the device list to fill")
        texts = {"train_dir": data["train"], "val_dir": data["val"], "epochs": EPOCHS,
                 "batch_size": 8, "img_size": 32, "workers": 0, "weights": weights}
        texts.update({k: v for k, v in RECIPE.items() if v is not True})
        for name, value in texts.items():
            widget = setup.query_one(f"#{name}")
            if isinstance(widget, Select):
                widget.value = str(value)
            else:
                assert isinstance(widget, Input), name
                widget.value = str(value)
        for name in (k for k, v in RECIPE.items() if v is True):
            setup.query_one(f"#{name}", TickBox).value = True
        setup.query_one("#pretrained").value = "file"
        setup.query_one("#pretrained_path", Input).value = str(standin_weights)
        setup.query_one("#detach").value = False  # in this process: the test waits on it
        device.value = "cpu"
        await wait_for(pilot, lambda: all(setup.scans.values()), what="folder scans")
        config = setup.build_config()
        for name, value in RECIPE.items():
            assert str(getattr(config, name)) == str(value) or getattr(config, name) == float(value)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="training screen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.final is not None, 240, what="the run to end")
        final = screen.final
        assert isinstance(final, RunFinished) and final.status == "finished", final
        assert final.early_stop_epoch == STOPS_AT and final.temperature is not None
        _check_record(Path(final.run_dir), weights)
