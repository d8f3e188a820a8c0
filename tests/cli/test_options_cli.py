"""`dftui train` flags derived from the option table (core/options.py), and the resume rule
of each option (keep / extend / free) applied in one place (core.runs.resume_config)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from dftui.cli import build_parser, main
from dftui.core import config as config_module
from dftui.core.config import TrainConfig
from dftui.core.options import ResumeConflict, option, options
from dftui.core.runs import resume_config


def _help() -> str:
    text = build_parser().parse_args(["train"]).train_parser.format_help()
    return re.sub(r"\s+", " ", text)  # argparse wraps lines anywhere


def test_every_cli_option_has_a_flag_with_its_default_and_choices() -> None:
    text = _help()
    declared = [opt for opt in options(TrainConfig) if opt.cli]
    assert len(declared) >= 15
    for opt in declared:
        assert f" {opt.cli_flag} " in text, opt.cli_flag
        if opt.default is not None:
            shown = ("on" if opt.default else "off") if isinstance(opt.default, bool) \
                else opt.to_text(opt.default)
            assert f"(default: {shown})" in text, opt.name
        if opt.all_choices():
            assert "{" + ",".join(opt.all_choices()) + "}" in text, opt.name


def test_backbone_choices_come_from_the_registry(monkeypatch) -> None:
    from dftui.core import backbones

    monkeypatch.setitem(backbones.BACKBONES, "tinynet", backbones.BACKBONES["mobilenet_v2"])
    assert "{mobilenet_v2,xception,tinynet}" in _help()
    args = build_parser().parse_args(["train", "--backbone", "tinynet"])
    assert args.backbone == "tinynet"


def test_flags_left_out_take_the_declared_defaults() -> None:
    from dftui.cli.train_cmd import config_from_args

    args = build_parser().parse_args(["train"])
    assert config_from_args(args) == TrainConfig()
    args = build_parser().parse_args(
        ["train", "--train", "a", "--val", "b", "--out", "o", "--name", "m.pth", "--epochs", "3",
         "--lr", "0.001", "--workers", "0", "--compile", "--overwrite", "--augment", "light"])
    config = config_from_args(args)
    assert (config.train_dir, config.val_dir, config.out_dir, config.weights_name) == (
        Path("a"), Path("b"), Path("o"), "m.pth")
    assert (config.epochs, config.lr, config.workers, config.compile, config.overwrite,
            config.augment) == (3, 0.001, 0, True, True, "light")


def test_a_new_option_reaches_the_cli_with_no_cli_code(monkeypatch, capsys) -> None:
    """One option(...) field more: a flag, typed, with its help, default and bounds."""

    @dataclass(frozen=True)
    class WithMore(TrainConfig):
        patience_steps: int = option(3, label="patience steps", help="steps to wait", minimum=1)
        ema: bool = option(True, label="EMA", help="keep an average of the weights")
        schedule_kind: str = option("none", label="schedule", help="the LR schedule",
                                    choices=("none", "cosine"))

    monkeypatch.setattr(config_module, "TrainConfig", WithMore)
    text = _help()
    assert "--patience-steps N steps to wait (default: 3)" in text
    assert "--ema, --no-ema keep an average of the weights (default: on)" in text
    assert "--schedule-kind {none,cosine} the LR schedule (default: none)" in text

    from dftui.cli.train_cmd import config_from_args

    args = build_parser().parse_args(["train", "--patience-steps", "7", "--no-ema",
                                      "--schedule-kind", "cosine"])
    config = config_from_args(args)
    assert isinstance(config, WithMore)
    assert (config.patience_steps, config.ema, config.schedule_kind) == (7, False, "cosine")
    assert config_from_args(build_parser().parse_args(["train"])).ema is True
    # Its bound is checked like every other's, before any work, in one line.
    assert main(["train", "--patience-steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "patience steps must be at least 1 (got 0)" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--schedule-kind", "step"])


def test_worker_command_line_repeats_a_pair_flag(monkeypatch) -> None:
    from dftui.cli.launch import worker_argv

    @dataclass(frozen=True)
    class WithPair(TrainConfig):
        ema: bool = option(True, label="EMA", help="keep an average of the weights")

    monkeypatch.setattr(config_module, "TrainConfig", WithPair)
    args = build_parser().parse_args(["train", "--no-ema", "--nproc-per-node", "2"])
    argv = worker_argv(args, args.train_parser, None)
    assert "--no-ema" in argv and "False" not in argv
    assert build_parser().parse_args(argv).ema is False


# -- resume rules ------------------------------------------------------------------------
def _stopped_run(tmp_path: Path, done: int = 2) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig(train_dir=tmp_path / "train", val_dir=tmp_path / "val", epochs=5,
                         device="cpu", workers=0).absolute()
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    (run / "run.json").write_text(json.dumps({"status": "interrupted", "epochs_completed": done}))
    return run


def test_resume_rules_keep_extend_free(tmp_path, monkeypatch) -> None:
    run = _stopped_run(tmp_path)
    base = resume_config(run)
    assert base.epochs == 5 and base.lr == 1e-4
    # free: the hardware may change without changing the result
    changed = resume_config(run, given={"device": "auto", "workers": 2, "compile": True})
    assert (changed.device, changed.workers, changed.compile) == ("auto", 2, True)
    # extend: more epochs, or fewer down to those already done
    assert resume_config(run, given={"epochs": 9}).epochs == 9
    assert resume_config(run, 3).epochs == 3
    with pytest.raises(ResumeConflict, match="epochs 1 is below the 2 the run has already completed"):
        resume_config(run, given={"epochs": 1})
    # keep: the recipe cannot change under a run
    with pytest.raises(ResumeConflict, match=r"learning rate cannot change when a run resumes "
                       r"\(it was started with 1e-4, not 1e-3\)") as caught:
        resume_config(run, given={"lr": 1e-3})
    assert caught.value.option.name == "lr"
    # ... but giving the same value again is no change (a relative path to the same folder)
    monkeypatch.chdir(tmp_path)
    assert resume_config(run, given={"lr": 1e-4, "train_dir": Path("train")}) == base


def test_cli_resume_refuses_a_changed_recipe_in_one_line(tmp_path, capsys) -> None:
    run = _stopped_run(tmp_path)
    assert main(["train", "--resume", str(run), "--lr", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "--lr: learning rate cannot change when a run resumes" in err, err
    assert "start a new run" in err and err.count("\n") == 1
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 2
    assert "--epochs: epochs 1 is below the 2" in capsys.readouterr().err


def test_cli_resume_applies_the_flags_it_may_change(tmp_path) -> None:
    """--resume RUN --workers 3 --epochs 9: honoured, not parsed and ignored."""
    from dftui.cli.train_cmd import _resolve

    run = _stopped_run(tmp_path)
    args = build_parser().parse_args(["train", "--resume", str(run), "--workers", "3",
                                      "--epochs", "9", "--compile", "--lr", "1e-4"])
    config, resume_dir, error = _resolve(args)
    assert error is None and resume_dir == run
    assert (config.workers, config.epochs, config.compile, config.lr) == (3, 9, True, 1e-4)
    assert config.train_dir == tmp_path / "train"  # the run's own
