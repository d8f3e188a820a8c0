"""Bad settings are reported before heavy work; a full disk during a save is reported at the
failure and loses nothing already saved."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
from pathlib import Path

import pytest
import torch

from dftui.cli import main
from dftui.core.checkpoint import load_weights
from dftui.core.config import TrainConfig
from dftui.core.events import LogMessage, RunFailed, RunFinished
from dftui.core.train import fit


def _cfg(dataset, tmp_path, **changes) -> TrainConfig:
    return TrainConfig(
        train_dir=dataset["train"], val_dir=dataset["val"], epochs=1, batch_size=8,
        img_size=32, workers=0, precision="fp32", pretrained="none",
        out_dir=tmp_path / "w", device="cpu",
    ).with_(**changes)


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--epochs", "-3"], "epochs must be at least 1"),
        (["--batch-size", "0"], "batch size must be at least 1"),
        (["--lr", "0"], "learning rate must be greater than 0"),
        (["--lr", "-0.001"], "learning rate must be greater than 0"),
        (["--lr", "nan"], "learning rate must be greater than 0"),
        (["--img-size", "16"], "too small for mobilenet_v2"),
        (["--backbone", "xception", "--img-size", "8"], "too small for xception"),
        (["--workers", "-1"], "workers must be at least 0"),
    ],
)
def test_cli_rejects_bad_settings_before_any_work(tmp_path, capsys, args, phrase):
    # The data folders do not exist: the settings are checked first, in well under a second.
    code = main(["train", "--train", str(tmp_path / "none"), "--val", str(tmp_path / "none"),
                 "--out", str(tmp_path / "w"), *args])
    err = capsys.readouterr().err
    assert code == 2 and phrase in err and err.startswith("dftui: error:")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "mps"])
def test_device_not_present(dataset, tmp_path, device, monkeypatch):
    # A machine without them, whatever this one has (a GPU box must not run it for real).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    final = fit(_cfg(dataset, tmp_path, device=device))
    assert isinstance(final, RunFailed)
    # The fixes travel as named settings; the CLI words them as --device flags.
    from dftui.cli.advice import with_advice
    from dftui.core.advice import decode_all

    assert device in final.message
    assert "--device" in with_advice(final.message, decode_all(final.fixes))
    assert final.run_dir is None


def test_output_folder_not_writable(dataset, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("I am a file")
    final = fit(_cfg(dataset, tmp_path, out_dir=blocker / "weights"))
    assert isinstance(final, RunFailed)
    assert "not writable" in final.message and str(blocker / "weights") in final.message
    assert final.run_dir is None


def test_run_record_folder_not_writable(dataset, tmp_path, monkeypatch):
    blocker = tmp_path / "home-file"
    blocker.write_text("")
    monkeypatch.setenv("DFTUI_HOME", str(blocker / "dftui"))
    final = fit(_cfg(dataset, tmp_path))
    assert isinstance(final, RunFailed)
    assert "run record folder" in final.message and "DFTUI_HOME" in final.message


def test_cli_reports_unwritable_output(dataset, tmp_path, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("")
    code = main(["train", "--train", str(dataset["train"]), "--val", str(dataset["val"]),
                 "--out", str(blocker / "w"), "--epochs", "1", "--img-size", "32",
                 "--pretrained", "none", "--device", "cpu", "--plain"])
    err = capsys.readouterr().err
    assert code == 1 and "not writable" in err


class _FullDisk(io.RawIOBase):
    """A file whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, real, room: int) -> None:
        self.real, self.room, self.written = real, room, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.written + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written += len(data)
        return self.real.write(data)

    def flush(self) -> None:
        if not self.real.closed:
            self.real.flush()

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        self.real.close()
        super().close()


def test_disk_full_during_save_keeps_the_previous_weights(dataset, tmp_path, monkeypatch):
    first = fit(_cfg(dataset, tmp_path, weights_name="det.pth"))
    assert isinstance(first, RunFinished) and first.weights_path
    weights = Path(first.weights_path)
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta_before = weights.with_suffix(".json").read_text()

    real_fdopen = os.fdopen

    def full_fdopen(fd, mode="r", *args, **kwargs):
        fh = real_fdopen(fd, mode, *args, **kwargs)
        if "b" in mode:
            return _FullDisk(fh, room=4096)  # the weights file needs megabytes
        return fh

    monkeypatch.setattr("dftui.core.checkpoint.os.fdopen", full_fdopen)
    logs: list[str] = []
    second = fit(
        _cfg(dataset, tmp_path, weights_name="det.pth", overwrite=True),
        lambda e: logs.append(e.text) if isinstance(e, LogMessage) else None,
    )
    monkeypatch.undo()
    assert isinstance(second, RunFailed)
    assert "disk is full" in second.message and str(weights) in second.message
    assert "intact" in second.message and second.epoch == 1
    # Nothing already saved is lost: same bytes, still loads; no temporary files left over.
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before
    assert weights.with_suffix(".json").read_text() == meta_before
    state, meta = load_weights(weights)
    assert meta["backbone"] == "mobilenet_v2" and state
    assert not [p for p in weights.parent.iterdir() if p.name.endswith(".tmp")]
    info = json.loads((Path(second.run_dir) / "run.json").read_text())
    assert info["status"] == "failed" and "disk is full" in info["message"]


def test_disk_full_for_the_run_record_only_warns(dataset, tmp_path, monkeypatch):
    """run.json and config.json cannot be written: training still finishes, with a warning."""
    import dftui.core.runs as runs

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "save_json", no_space)
    logs: list[str] = []
    final = fit(_cfg(dataset, tmp_path),
                lambda e: logs.append(e.text) if isinstance(e, LogMessage) else None)
    assert isinstance(final, RunFinished) and final.status == "finished"
    assert any("run record could not be written" in t and "disk is full" in t for t in logs)
