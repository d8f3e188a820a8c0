"""The recipe options in real (tiny) runs: early stopping ends a run "finished (early stop
at epoch N)", a frozen backbone trains the head only, class balancing reports the imbalance,
EMA weights are validated and saved; every one resumes exactly after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dftui.core.checkpoint import read_metadata
from dftui.core.events import EpochEnd, LogMessage, RunFailed, RunFinished, event_from_dict
from dftui.core.recipe import Recipe, RecipeError
from dftui.core.runs import read_run
from dftui.core.synthetic import SyntheticSpec, make_dataset
from dftui.core.train import RESUME_FILE, StopFlag, fit
from tests.conftest import tiny_config


def _run(config, stop_after=None, resume=None):
    events = []
    stop = StopFlag()

    def emit(event):
        events.append(event)
        if isinstance(event, EpochEnd) and stop_after is not None and event.epoch == stop_after:
            stop.request("interrupted")

    final = fit(config, emit, stop, resume=resume)
    return events, final


def _epochs(events):
    return [e for e in events if isinstance(e, EpochEnd)]


def test_early_stopping_ends_the_run_finished_with_the_epoch(dataset, standin_weights, tmp_path):
    # min_delta 10: no epoch after the first can improve val_loss; patience 1 stops after 2.
    cfg = tiny_config(dataset, standin_weights, tmp_path, epochs=5, early_stop_patience=1,
                      early_stop_min_delta=10.0)
    events, final = _run(cfg)
    assert isinstance(final, RunFinished) and final.status == "finished", final
    assert final.early_stop_epoch == 2 and final.epochs_completed == 2
    assert [e.epoch for e in _epochs(events)] == [1, 2]
    run = read_run(Path(final.run_dir))
    assert run.status == "finished" and run.early_stop_epoch == 2
    assert run.status_text == "finished (early stop at epoch 2)"
    from dftui.cli.printer import _finished_line

    assert _finished_line(final).startswith("run finished (early stop at epoch 2): best epoch")
    # An old record's end event (no such field) still replays; the new one round-trips.
    old = final.to_dict()
    del old["early_stop_epoch"]
    assert event_from_dict(old).early_stop_epoch is None
    assert event_from_dict(final.to_dict()) == final


def test_early_stopping_state_survives_a_resume(dataset, standin_weights, tmp_path):
    cfg = tiny_config(dataset, standin_weights, tmp_path, epochs=5, early_stop_patience=2,
                      early_stop_min_delta=10.0)
    _, whole = _run(cfg.with_(weights_name="whole.pth"))
    assert whole.early_stop_epoch == 3
    part = cfg.with_(weights_name="part.pth")
    _, stopped = _run(part, stop_after=2)  # one epoch without improvement counted so far
    assert stopped.status == "interrupted"
    events, final = _run(part, resume=Path(stopped.run_dir))
    assert [e.epoch for e in _epochs(events)] == [3]
    assert final.status == "finished" and final.early_stop_epoch == 3


def test_frozen_backbone_trains_the_head_first_then_everything(dataset, standin_weights, tmp_path):
    cfg = tiny_config(dataset, standin_weights, tmp_path, epochs=2, freeze_epochs=1)
    start = torch.load(standin_weights, weights_only=True)
    events, stopped = _run(cfg, stop_after=1)
    notes = [e.text for e in events if isinstance(e, LogMessage)]
    assert any("backbone frozen until epoch 1" in t for t in notes), notes
    after1 = torch.load(Path(stopped.run_dir) / RESUME_FILE, weights_only=True)
    model = after1["model"]
    # The backbone (weights and batch-norm statistics) is still the pretrained one.
    for key, value in model.items():
        if key.startswith("features."):
            assert torch.equal(value, start[key]), key
    # The optimiser stepped the head only so far (its weight and bias).
    assert len(after1["optimizer"]["state"]) == 2
    events, final = _run(cfg, resume=Path(stopped.run_dir))
    assert final.status == "finished"
    assert any("epoch 2: backbone unfrozen" in e.text for e in events if isinstance(e, LogMessage))
    done = torch.load(final.weights_path, weights_only=True)
    assert not torch.equal(done["features.0.0.weight"], start["features.0.0.weight"])


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """train/ with 8 real and 32 fake."""
    root = tmp_path_factory.mktemp("imbalanced")
    make_dataset(root / "train", SyntheticSpec(n_per_class=32, size=32, seed=3))
    for path in sorted((root / "train" / "real").iterdir())[8:]:
        path.unlink()
    make_dataset(root / "val", SyntheticSpec(n_per_class=8, size=32, seed=4))
    return {"train": root / "train", "val": root / "val"}


@pytest.mark.parametrize("balance, words", [
    ("none", "no class balancing (the class balancing setting can even it out)"),
    ("loss", "class-weighted cross-entropy (weights real 2.500, fake 0.625)"),
    ("sampler", "class-balanced sampling"),
])
def test_class_balancing_reports_the_imbalance_and_the_choice(imbalanced, standin_weights, tmp_path,
                                                              balance, words):
    cfg = tiny_config(imbalanced, standin_weights, tmp_path, balance=balance)
    events, final = _run(cfg)
    assert final.status == "finished", final
    notes = [e for e in events if isinstance(e, LogMessage) and "training classes" in e.text]
    assert len(notes) == 1 and notes[0].level == "info"  # the scan has warned already
    assert "8 real, 32 fake (ratio 4.00:1)" in notes[0].text and words in notes[0].text
    config = json.loads((Path(final.run_dir) / "config.json").read_text())
    assert config["balance"] == balance


def test_balanced_sampler_is_refused_with_several_processes():
    cfg = tiny_config({"train": Path("t"), "val": Path("v")}, Path("w"), Path("o"), balance="sampler")
    with pytest.raises(RecipeError, match="not supported with several processes.*'loss'"):
        Recipe(cfg).check_processes(2)
    Recipe(cfg.with_(balance="loss")).check_processes(2)


def test_ema_weights_are_validated_and_saved(dataset, standin_weights, tmp_path):
    cfg = tiny_config(dataset, standin_weights, tmp_path, epochs=2, ema=True, ema_decay=0.9)
    events, final = _run(cfg)
    assert final.status == "finished", final
    epochs = _epochs(events)
    assert all(e.raw_val_loss is not None and e.raw_val_accuracy is not None for e in epochs)
    assert any(e.raw_val_loss != e.val_loss for e in epochs)  # two models, two results
    meta = read_metadata(Path(final.weights_path))
    assert meta["weights_kind"] == "ema" and meta["ema"] == {"decay": 0.9, "steps": 10}
    assert meta["config"]["ema"] is True
    assert "raw_val_loss" in meta["epochs"][0]
    # The saved weights are the average, not the trained model (resume.pt holds that one).
    ckpt = torch.load(Path(final.run_dir) / RESUME_FILE, weights_only=True)
    saved = torch.load(final.weights_path, weights_only=True)
    if final.best_epoch == 2:
        ema = ckpt["recipe"]["ema"]["module"]
        assert all(torch.equal(saved[k], ema[k]) for k in saved)
    assert not torch.equal(saved["classifier.1.weight"], ckpt["model"]["classifier.1.weight"])


def test_resume_is_exact_with_every_recipe_option(imbalanced, standin_weights, tmp_path):
    """Across the unfreeze boundary, with balanced draws, EMA and early stopping armed."""
    cfg = tiny_config(imbalanced, standin_weights, tmp_path, epochs=3, freeze_epochs=1,
                      balance="sampler", ema=True, ema_decay=0.8, early_stop_patience=5,
                      precision="fp32")
    whole_events, whole = _run(cfg.with_(weights_name="whole.pth"))
    part = cfg.with_(weights_name="part.pth")
    first, stopped = _run(part, stop_after=1)
    assert stopped.status == "interrupted"
    rest, final = _run(part, resume=Path(stopped.run_dir))
    assert final.status == "finished" and whole.status == "finished"

    def rows(events):
        return [(e.epoch, e.train_loss, e.val_loss, e.raw_val_loss) for e in _epochs(events)]

    assert rows(first + rest) == pytest.approx(rows(whole_events), rel=1e-5, abs=1e-6)
    a = torch.load(whole.weights_path, weights_only=True)
    b = torch.load(final.weights_path, weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_ema_resume_of_a_run_without_it_is_refused(dataset, standin_weights, tmp_path):
    cfg = tiny_config(dataset, standin_weights, tmp_path, epochs=2)
    _, stopped = _run(cfg, stop_after=1)
    _, final = _run(cfg.with_(ema=True), resume=Path(stopped.run_dir))
    assert isinstance(final, RunFailed) and "holds no weight average" in final.message


def test_resuming_an_early_stopped_run_trains_nothing_and_says_why(dataset, standin_weights, tmp_path):
    cfg = tiny_config(dataset, standin_weights, tmp_path, epochs=3, early_stop_patience=1,
                      early_stop_min_delta=10.0)
    _, final = _run(cfg)
    assert final.early_stop_epoch == 2
    events, again = _run(cfg.with_(epochs=5), resume=Path(final.run_dir))
    assert _epochs(events) == []
    assert again.status == "finished" and again.early_stop_epoch == 2
    warnings = [e.text for e in events if isinstance(e, LogMessage) and e.level == "warning"]
    assert any("early stopping ended this run after epoch 2" in w and "start a new run" in w
               for w in warnings), warnings


def test_a_damaged_weight_average_in_resume_pt_is_one_clear_message(dataset, standin_weights, tmp_path):
    cfg = tiny_config(dataset, standin_weights, tmp_path, epochs=2, ema=True)
    _, stopped = _run(cfg, stop_after=1)
    path = Path(stopped.run_dir) / RESUME_FILE
    ckpt = torch.load(path, weights_only=True)
    for damaged in ({"ema": {"module": {"x": torch.zeros(1)}, "steps": 5}},
                    {"ema": {"module": ckpt["recipe"]["ema"]["module"], "steps": -1}}, ["ema"]):
        torch.save({**ckpt, "recipe": damaged}, path)
        _, final = _run(cfg, resume=Path(stopped.run_dir))
        assert isinstance(final, RunFailed), final
        assert "weight average (EMA)" in final.message and "Traceback" not in final.message
