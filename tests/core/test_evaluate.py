"""Scoring a test folder, compare, robustness and the evaluation records."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from dftui.core.data import DataError, scan_folder
from dftui.core.evaluate import (
    EvalFinished,
    EvalProgress,
    EvalStarted,
    EvaluationError,
    compare,
    evaluate_folder,
    evaluations_root,
    list_evaluations,
    load_evaluation,
    robustness,
    save_evaluation,
)
from dftui.core.metrics import compute_metrics
from dftui.core.predict import Predictor
from dftui.core.runs import data_home
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, dataset: dict[str, Path],
            standin_weights: Path) -> Path:
    return train_tiny(dataset, standin_weights, tmp_path_factory.mktemp("ev"))


@pytest.fixture(scope="module")
def predictor(weights: Path) -> Predictor:
    return Predictor(weights)


def test_scores_every_image_and_metrics_match(predictor: Predictor, dataset: dict[str, Path]) -> None:
    events: list = []
    res = evaluate_folder(predictor, dataset["val"], batch_size=6, emit=events.append)
    assert len(res.images) == 20 and res.unreadable == [] and not res.stopped
    assert {im.label for im in res.images} == {0, 1}
    for im in res.images:
        assert im.label == (1 if "/fake/" in im.path else 0)
    # The same p_fake as the Predictor gives image by image (20 images: both eager, see
    # test_inference.py for the fused graph).
    by_path = {p.path: p.p_fake for p in predictor.predict_paths([im.path for im in res.images])}
    assert all(abs(by_path[im.path] - im.p_fake) < 1e-4 for im in res.images)
    assert res.metrics == compute_metrics(res.labels, res.scores, 0.5)
    assert res.metrics.accuracy > 0.5  # the tiny model learned something
    assert isinstance(events[0], EvalStarted) and events[0].total == 20
    progress = [e for e in events if isinstance(e, EvalProgress)]
    assert progress and progress[-1].done == progress[-1].total == 20
    assert isinstance(events[-1], EvalFinished) and events[-1].n == 20
    assert res.run_dir and Path(res.run_dir).is_dir()  # from the weights' metadata


def test_threshold_moves_and_errors_sorted(predictor: Predictor, dataset: dict[str, Path]) -> None:
    res = evaluate_folder(predictor, dataset["val"])
    for t in (0.0, 0.3, 0.7, 1.0):
        m = res.metrics_at(t)
        ref = compute_metrics(res.labels, res.scores, t)
        assert m.confusion == ref.confusion and m.accuracy == ref.accuracy
        assert m.roc_auc == res.metrics.roc_auc  # score-only metrics stay
        wrong = res.misclassified(t)
        assert len(wrong) == m.confusion.fp + m.confusion.fn
        margins = [abs(im.p_fake - t) for im in wrong]
        assert margins == sorted(margins, reverse=True)
    assert len(res.misclassified(0.0)) == 10  # everything called fake: the 10 real are wrong


def test_unreadable_images_are_counted(predictor: Predictor, dataset: dict[str, Path],
                                       tmp_path: Path) -> None:
    folder = tmp_path / "test"
    shutil.copytree(dataset["val"], folder)
    (folder / "fake" / "garbage.png").write_bytes(b"not an image at all")
    good = (folder / "real" / "real_00000.png").read_bytes()
    (folder / "real" / "truncated.png").write_bytes(good[: len(good) // 2])  # header is fine
    res = evaluate_folder(predictor, folder)
    assert len(res.images) == 20
    reasons = dict(res.unreadable)
    assert set(reasons) == {str(folder / "fake" / "garbage.png"), str(folder / "real" / "truncated.png")}
    assert res.to_dict()["n_unreadable"] == 2


def test_stop_flag_and_bad_input(predictor: Predictor, dataset: dict[str, Path], tmp_path: Path) -> None:
    stop = threading.Event()

    def emit(event: object) -> None:
        if isinstance(event, EvalProgress):
            stop.set()

    res = evaluate_folder(predictor, dataset["val"], batch_size=4, emit=emit, stop=stop)
    assert res.stopped and len(res.images) == 4
    assert any("stopped early" in n for n in res.metrics.notes)
    with pytest.raises(EvaluationError, match="stopped before"):
        evaluate_folder(predictor, dataset["val"], stop=stop)
    with pytest.raises(DataError, match="no real/ folder"):
        evaluate_folder(predictor, tmp_path)
    with pytest.raises(EvaluationError, match="threshold"):
        evaluate_folder(predictor, dataset["val"], threshold=1.5)
    with pytest.raises(EvaluationError, match="unknown corruption"):
        evaluate_folder(predictor, dataset["val"], corruption="fog", severity=1)


def test_compare_side_by_side(weights: Path, predictor: Predictor, dataset: dict[str, Path],
                              tmp_path: Path) -> None:
    # B: the same weights with the head's bias pushed toward fake.
    state = torch.load(weights, weights_only=True)
    state["classifier.1.bias"] = state["classifier.1.bias"] + torch.tensor([-3.0, 3.0])
    b_path = tmp_path / "b.pth"
    torch.save(state, b_path)  # no metadata beside it: reference format, 224 px
    comp = compare(predictor, Predictor(b_path), dataset["val"])
    rows = {name: (a, b, d) for name, a, b, d in comp.rows()}
    assert rows["accuracy"][0] == comp.a.metrics.accuracy
    assert rows["accuracy"][1] == comp.b.metrics.accuracy
    assert rows["accuracy"][2] == pytest.approx(comp.b.metrics.accuracy - comp.a.metrics.accuracy)
    a, b = comp.a.metrics.confusion, comp.b.metrics.confusion
    assert b.fp + b.tp > a.fp + a.tp
    same = compare(predictor, predictor, dataset["val"])
    assert all(d == 0 for _, _, _, d in same.rows() if d is not None)
    assert set(same.to_dict()["difference"]) >= {"accuracy", "roc_auc", "eer", "f1"}


def test_robustness_rows(predictor: Predictor, dataset: dict[str, Path]) -> None:
    events: list = []
    rob = robustness(predictor, dataset["val"], ["noise", "jpeg"],
                     severities={"noise": [60], "jpeg": [10]}, emit=events.append)
    assert [r.label for r in rob.rows] == ["clean", "noise σ60", "jpeg q10"]
    assert all(r.n == 20 and 0 <= r.accuracy <= 1 for r in rob.rows)
    starts = [e for e in events if isinstance(e, EvalStarted)]
    assert [(e.pass_index, e.passes) for e in starts] == [(1, 3), (2, 3), (3, 3)]
    # The corruption really reaches the model: heavy noise changes the scores.
    noisy = evaluate_folder(predictor, dataset["val"], corruption="noise", severity=60)
    assert not np.allclose(noisy.scores, rob.clean.scores, atol=1e-4)
    # Seeded per image: the same corruption gives the same scores again.
    again = evaluate_folder(predictor, dataset["val"], corruption="noise", severity=60)
    np.testing.assert_allclose(again.scores, noisy.scores, atol=1e-6)
    assert rob.to_dict()["rows"][1]["corruption"] == "noise"


def test_records_with_the_run_and_without(predictor: Predictor, weights: Path,
                                          dataset: dict[str, Path], tmp_path: Path) -> None:
    res = evaluate_folder(predictor, dataset["val"])
    rob = robustness(predictor, dataset["val"], ["blur"], severities={"blur": [1.0]}, clean=res)
    record = save_evaluation(res, rob)
    assert record.parent == Path(res.run_dir) / "evaluations"
    assert (record / "evaluation.json").is_file() and (record / "scores.csv").is_file()
    rows = (record / "scores.csv").read_text().splitlines()
    assert rows[0] == "path,label,p_fake,predicted" and len(rows) == 21
    listed = list_evaluations()
    assert [s.record_dir for s in listed] == [record]
    assert listed[0].accuracy == res.metrics.accuracy and listed[0].robustness_rows == 2
    assert list_evaluations(res.run_dir)[0].record_dir == record
    back = load_evaluation(record)
    assert back.metrics == res.metrics and [im.path for im in back.images] == [im.path for im in res.images]
    np.testing.assert_allclose(back.scores, res.scores, atol=1e-6)

    # Weights without a run record (a bare state_dict) go under the data folder.
    bare = tmp_path / "bare.pth"
    shutil.copy(weights, bare)
    res2 = evaluate_folder(Predictor(bare), dataset["val"])
    assert res2.run_dir is None
    record2 = save_evaluation(res2)
    assert record2.parent == evaluations_root(None) == data_home() / "evaluations"
    assert {s.record_dir for s in list_evaluations()} == {record, record2}
    # A damaged record is skipped, not fatal.
    broken = record2.parent / "20000101-000000-broken"
    broken.mkdir()
    (broken / "evaluation.json").write_text("{not json")
    assert {s.record_dir for s in list_evaluations()} == {record, record2}
    with pytest.raises(EvaluationError, match="no readable evaluation.json"):
        load_evaluation(broken)
    scan = scan_folder(dataset["val"])
    assert res2.folder == str(scan.root)
