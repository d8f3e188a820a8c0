"""Issue 12 through the CLI, as a user meets it: one-line errors, no hangs, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_cli import dftui


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from dftui.core.backbones import BACKBONES
    from dftui.core.checkpoint import build_metadata, save_weights
    from dftui.core.data import Preprocessing

    spec = BACKBONES["mobilenet_v2"]
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "w.pth"
    save_weights(spec.build().eval().state_dict(), path,
                 build_metadata(spec.name, Preprocessing(32, spec.mean, spec.std, "bilinear")))
    return path


def test_train_refuses_a_weights_name_that_is_its_own_metadata(tmp_path: Path) -> None:
    out = dftui("train", "--train", "nowhere", "--val", "nowhere", "--out", str(tmp_path / "o"),
                "--name", "x.json")
    assert out.returncode == 2 and "weights name" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists()


def test_predict_names_a_fifo_instead_of_hanging(tmp_path: Path, weights: Path) -> None:
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    out = dftui("predict", "--weights", str(fifo), str(fifo), timeout=60)
    assert out.returncode == 2 and "FIFO" in out.stderr and "does not exist" not in out.stderr
    out = dftui("predict", "--weights", str(weights), str(fifo), timeout=60)
    assert out.returncode == 1 and "FIFO (named pipe), not a regular file" in out.stderr
    out = dftui("predict", "--weights", "/dev/zero", str(fifo), timeout=60)
    assert out.returncode == 2 and "character device" in out.stderr


def test_predict_into_a_closed_pipe_exits_quietly(weights: Path, dataset: dict[str, Path]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "dftui", "predict", "--weights", str(weights),
                             str(dataset["val"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_predict_escapes_tabs_and_newlines_in_names(tmp_path: Path, weights: Path,
                                                    dataset: dict[str, Path]) -> None:
    import shutil

    src = next((dataset["val"] / "fake").iterdir())
    forged = tmp_path / "a\tfake\t0.0000\nb.png"
    shutil.copy(src, forged)
    out = dftui("predict", "--weights", str(weights), str(forged))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].count("\t") == 2 and "a\\tfake\\t0.0000\\nb.png" in lines[0]


def test_evaluate_checks_the_csv_path_before_evaluating(tmp_path: Path, weights: Path,
                                                        dataset: dict[str, Path]) -> None:
    out = dftui("evaluate", "--weights", str(weights), str(dataset["val"]),
                "--csv", str(tmp_path / "missing" / "scores.csv"), "--no-record")
    assert out.returncode == 2 and "--csv" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""  # nothing was evaluated
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = dftui("evaluate", "--weights", str(weights), str(dataset["val"]),
                "--csv", str(blocker / "scores.csv"), "--no-record")
    assert out.returncode == 2 and "--csv" in out.stderr


def test_evaluate_csv_never_overwrites_the_weights(tmp_path: Path, weights: Path,
                                                   dataset: dict[str, Path]) -> None:
    """``--csv`` naming the weights (or their .json) replaced the user's weights with a CSV."""
    import shutil

    w = tmp_path / "w.pth"
    shutil.copy(weights, w)
    shutil.copy(weights.with_suffix(".json"), w.with_suffix(".json"))
    before = w.read_bytes(), w.with_suffix(".json").read_bytes()
    for target in (w, w.with_suffix(".json")):
        out = dftui("evaluate", "--weights", str(w), str(dataset["val"]), "--csv", str(target),
                    "--no-record")
        assert out.returncode == 2 and "--csv" in out.stderr and "weights" in out.stderr, out.stderr
    assert (w.read_bytes(), w.with_suffix(".json").read_bytes()) == before
