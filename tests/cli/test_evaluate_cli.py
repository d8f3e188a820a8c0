"""`dftui evaluate` on a generated set: the table, --json, --csv, --compare, --corruptions."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dftui.cli import main
from dftui.core.metrics import compute_metrics
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, dataset: dict[str, Path],
            standin_weights: Path) -> Path:
    return train_tiny(dataset, standin_weights, tmp_path_factory.mktemp("evcli"))


def _dftui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dftui", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)


def test_json_csv_compare_and_corruptions(weights: Path, dataset: dict[str, Path],
                                          tmp_path: Path) -> None:
    out_csv = tmp_path / "scores.csv"
    proc = _dftui("evaluate", "--weights", str(weights), str(dataset["val"]), "--json",
                  "--csv", str(out_csv), "--compare", str(weights), "--corruptions", "noise",
                  "--batch-size", "8", "--threshold", "0.4")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # stdout is pure JSON
    assert report["threshold"] == 0.4 and len(report["results"]) == 1
    res = report["results"][0]
    assert res["n_scored"] == 20 and res["n_unreadable"] == 0
    m = res["metrics"]
    assert set(m) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
                      "eer", "real_accuracy", "fake_accuracy", "confusion", "threshold"}
    assert m["threshold"] == 0.4 and sum(m["confusion"].values()) == 20
    # --csv: one row per image, and the metrics recomputed from it agree.
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20 and set(rows[0]) == {"path", "label", "p_fake", "predicted"}
    labels = [int(r["label"]) for r in rows]
    scores = [float(r["p_fake"]) for r in rows]
    assert all(int(r["predicted"]) == (float(r["p_fake"]) >= 0.4) for r in rows)
    again = compute_metrics(labels, scores, 0.4)
    assert again.accuracy == pytest.approx(m["accuracy"])
    assert again.roc_auc == pytest.approx(m["roc_auc"], abs=1e-5)
    # --compare with the same weights: no difference.
    assert all(v in (0, None) for v in res["compare"]["difference"].values())
    assert Path(out_csv.with_name("scores-val-b.csv")).is_file()
    # --corruptions noise: the clean row and three severities.
    assert [r["label"] for r in res["robustness"]] == ["clean", "noise σ5", "noise σ10", "noise σ20"]
    # Saved with the weights' run record (twice: A and B).
    run_dir = Path(json.loads(weights.with_suffix(".json").read_text())["run_dir"])
    assert res["record_dir"] and Path(res["record_dir"]).parent == run_dir / "evaluations"
    assert len(list((run_dir / "evaluations").iterdir())) >= 2


def test_plain_table(weights: Path, dataset: dict[str, Path]) -> None:
    proc = _dftui("evaluate", "--weights", str(weights), str(dataset["val"]), str(dataset["train"]),
                  "--no-record")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for needle in ("Accuracy", "Precision (fake)", "ROC AUC", "EER", "Accuracy on real",
                   "confusion matrix", "20 images scored", "40 images scored", "threshold 0.5"):
        assert needle in out, out
    assert "record:" not in out and "\x1b[" not in out  # no colour codes when piped


def test_errors_are_one_line(weights: Path, dataset: dict[str, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--weights", str(weights), str(tmp_path / "missing")], "does not exist"),
        (["--weights", str(weights), str(tmp_path)], "no real/ folder"),
        (["--weights", str(weights), str(dataset["val"]), "--corruptions", "fog"], "fog"),
        (["--weights", str(weights), str(dataset["val"]), "--threshold", "2"], "between 0 and 1"),
        (["--weights", str(tmp_path / "no.pth"), str(dataset["val"])], "does not exist"),
    ]
    for args, needle in cases:
        assert main(["evaluate", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dftui: error:") and needle in err and "Traceback" not in err
