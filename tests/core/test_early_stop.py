"""Early stopping's patience counting, and its replay from a recorded history (resume)."""

from __future__ import annotations

import math

import pytest

from dftui.core.early_stop import EarlyStopping, outcome_text


def _feed(stopper: EarlyStopping, values: list[float]) -> int | None:
    for epoch, value in enumerate(values, start=1):
        if stopper.update(epoch, value):
            return epoch
    return None


def test_off_by_default_never_stops():
    assert _feed(EarlyStopping(), [1.0] * 20) is None


def test_val_loss_stops_after_patience_epochs_without_improvement():
    stopper = EarlyStopping("val_loss", patience=2)
    # best at epoch 2 (0.5); epochs 3 and 4 do not improve → stop after epoch 4
    assert _feed(stopper, [0.9, 0.5, 0.6, 0.5, 0.1]) == 4
    assert stopper.best_epoch == 2 and stopper.stopped_epoch == 4


def test_val_acc_is_maximised_and_min_delta_counts():
    # +0.005 is not an improvement with min_delta 0.01
    stopper = EarlyStopping("val_acc", patience=2, min_delta=0.01)
    assert _feed(stopper, [0.6, 0.8, 0.805, 0.809, 0.95]) == 4
    assert stopper.best == 0.8


def test_improvement_resets_the_count():
    stopper = EarlyStopping("val_acc", patience=2)
    assert _feed(stopper, [0.5, 0.5, 0.6, 0.6, 0.7, 0.7, 0.7]) == 7


def test_nan_never_improves():
    stopper = EarlyStopping("val_loss", patience=1)
    assert _feed(stopper, [1.0, math.nan]) == 2


def test_replay_of_a_history_equals_live_updates():
    values = [0.9, 0.7, 0.8, 0.75, 0.72, 0.71]
    live = EarlyStopping("val_loss", patience=3)
    history = []
    for epoch, v in enumerate(values[:4], start=1):
        live.update(epoch, v)
        history.append({"epoch": epoch, "val_loss": v, "val_accuracy": 0.5})
    resumed = EarlyStopping("val_loss", patience=3).replay(history)
    assert (resumed.best, resumed.best_epoch, resumed.bad_epochs) == (live.best, live.best_epoch, live.bad_epochs)
    assert resumed.update(5, values[4]) == live.update(5, values[4]) is True


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="val_loss, val_acc"):
        EarlyStopping("auc", patience=1)


def test_outcome_text():
    assert outcome_text("finished", 4) == "finished (early stop at epoch 4)"
    assert outcome_text("finished") == "finished"
    assert outcome_text("stopped", 4) == "stopped"


def test_replay_of_a_damaged_history_counts_unusable_rows_as_no_improvement():
    history = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2}, {"epoch": "x", "val_loss": "?"}]
    stopper = EarlyStopping("val_loss", patience=2).replay(history)
    assert stopper.best == 0.5 and stopper.stopped_epoch == 3
