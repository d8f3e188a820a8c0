"""Issue 12 from the command line: settings refused before any run folder exists, damaged
records on --resume as one line, absolute paths in the record (resume from any folder), CPU
out-of-memory advice, real/ and Real/ side by side."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from dftui.cli import main
from dftui.core.config import TrainConfig
from dftui.core.data import DataError, scan_folder
from dftui.core.events import EpochEnd, RunFailed, RunFinished
from dftui.core.train import fit, is_out_of_memory


def sr(dataset, out: Path) -> list[str]:
    return ["train", "--train", str(dataset["train"]), "--val", str(dataset["val"]),
            "--pretrained", "none", "--img-size", "32", "--batch-size", "8", "--epochs", "1",
            "--workers", "0", "--device", "cpu", "--out", str(out), "--plain"]


def runs_made() -> list[Path]:
    root = Path(os.environ["DFTUI_HOME"]) / "runs"
    return sorted(root.iterdir()) if root.is_dir() else []


@pytest.mark.parametrize("flag,value,message", [
    ("--seed", str(2**63), "seed must be between 0 and"),
    ("--seed", str(10**17), "seed must be between 0 and"),
    ("--seed", "-1", "seed must be between 0 and"),
    ("--img-size", "5000", "image size 5000 is too large; use at most 1024"),
])
def test_out_of_range_settings_fail_first_in_one_line(
    dataset, tmp_path, capsys, flag: str, value: str, message: str
) -> None:
    code = main([*sr(dataset, tmp_path / "w"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert err.count("\n") == 1
    assert runs_made() == []  # refused before a run folder was made


def test_resume_of_a_run_with_a_damaged_record_is_one_line(dataset, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("[]")
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "config.json: its top level is a list, not an object" in err and err.count("\n") == 1

    (run / "config.json").write_text(json.dumps({"epochs": "many"}))
    assert main(["train", "--resume", str(run)]) == 2
    assert "epochs should be a whole number" in capsys.readouterr().err

    # run.json of the wrong type beside a usable config: it is only a record, the resume
    # goes on to the checkpoint (here unreadable: one line, exit 1).
    config = TrainConfig(train_dir=dataset["train"], val_dir=dataset["val"], pretrained="none",
                         img_size=32, batch_size=8, epochs=1, workers=0, device="cpu",
                         out_dir=tmp_path / "w")
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    (run / "run.json").write_text("[]")
    (run / "resume.pt").write_bytes(b"not a checkpoint")
    assert main(["train", "--resume", str(run), "--plain"]) == 1
    err = capsys.readouterr().err
    assert "resume checkpoint" in err and "cannot be read" in err and "Traceback" not in err


def test_resume_of_an_unknown_run_names_only_commands_that_exist(capsys) -> None:
    import re

    from dftui.cli import build_parser

    assert main(["train", "--resume", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert "no run 'no-such-run' to resume" in err
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for named in re.findall(r"`dftui (\w+)", err):
        assert named in commands, err


def test_records_hold_absolute_paths_so_resume_works_from_any_folder(
    dataset, tmp_path, monkeypatch, capsys
) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    shutil.copytree(dataset["train"], a / "data" / "train")
    shutil.copytree(dataset["val"], a / "data" / "val")
    (b / "data" / "train").mkdir(parents=True)  # another data/ that must not be used
    (b / "w").mkdir()
    monkeypatch.chdir(a)
    stop = threading.Event()

    def stop_after_epoch_1(event) -> None:
        if isinstance(event, EpochEnd):
            stop.set()

    config = TrainConfig(train_dir=Path("data/train"), val_dir=Path("data/val"),
                         pretrained="none", img_size=32, batch_size=8, epochs=2, workers=0,
                         device="cpu", precision="fp32", out_dir=Path("w"))
    first = fit(config, stop_after_epoch_1, stop)
    assert isinstance(first, RunFinished) and first.status == "stopped", first
    run_dir = Path(first.run_dir)
    recorded = json.loads((run_dir / "config.json").read_text())
    for key, where in (("train_dir", "data/train"), ("val_dir", "data/val"), ("out_dir", "w")):
        assert recorded[key] == str(a / where)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["train_dir"] == str(a / "data" / "train")
    meta = json.loads((a / "w" / "mobilenet_v2_deepfake.json").read_text())
    assert meta["config"]["train_dir"] == str(a / "data" / "train")

    monkeypatch.chdir(b)
    assert main(["train", "--resume", str(run_dir), "--plain"]) == 0
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert not list((b / "w").iterdir())  # nothing written into B's own w/
    meta = json.loads((a / "w" / "mobilenet_v2_deepfake.json").read_text())
    assert [e["epoch"] for e in meta["epochs"]] == [1, 2]


@pytest.mark.parametrize("exc", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                 "allocate memory: you tried to allocate 123456789 bytes."),
    MemoryError(),
])
def test_a_cpu_allocation_failure_gets_the_batch_size_advice(dataset, tmp_path, monkeypatch, exc) -> None:
    from dftui.core import train

    assert is_out_of_memory(exc)

    def boom(self, *args):
        raise exc

    monkeypatch.setattr(train._Trainer, "_train_epoch", boom)
    config = TrainConfig(train_dir=dataset["train"], val_dir=dataset["val"], pretrained="none",
                         img_size=32, batch_size=8, epochs=1, workers=0, device="cpu",
                         out_dir=tmp_path / "w", runs_dir=tmp_path / "runs")
    final = fit(config)
    assert isinstance(final, RunFailed)
    assert "out of memory on cpu at batch size 8; try a smaller batch size (e.g. 4)" in final.message


def test_real_and_Real_side_by_side_are_refused_naming_both(dataset, tmp_path) -> None:
    root = tmp_path / "set"
    shutil.copytree(dataset["val"], root)
    shutil.copytree(root / "real", root / "Real")
    if not (root / "real").samefile(root / "real") or len(list(root.iterdir())) < 3:
        pytest.skip("case-insensitive file system")
    with pytest.raises(DataError, match=r"holds both Real/ and real/"):
        scan_folder(root)


def test_rich_printers_print_markup_in_messages_as_text(monkeypatch) -> None:
    import io

    import rich.console
    from rich.console import Console

    from dftui.cli import prepare_cmd
    from dftui.cli.printer import RichPrinter
    from dftui.core.events import CheckpointSaved, LogMessage

    buf = io.StringIO()
    monkeypatch.setattr(rich.console, "Console",
                        lambda *a, **k: Console(file=buf, force_terminal=True, width=200))
    printer = RichPrinter()
    printer(LogMessage(level="warning", text="skipping unreadable image data/x[/]y.png: [red]bad"))
    printer(CheckpointSaved(role="best", path="/w/[bold]x[/].pth", epoch=1))
    printer.close()
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())  # colours and highlighting out
    assert "x[/]y.png: [red]bad" in text and "[bold]x[/].pth" in text

    buf = io.StringIO()
    prep = prepare_cmd.RichPrinter(Console(file=buf, force_terminal=True, width=200))
    prep(LogMessage(level="warning", text="Train: image a[/]b.jpg [red]"))
    prep.close()
    assert "a[/]b.jpg [red]" in re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())
