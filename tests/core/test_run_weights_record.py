"""Issue 16: a run whose process dies (a dropped SSH connection, kill -9) never records its
end, yet its best weights are on disk: run.json must name them as soon as they are saved, so
the Runs screen shows them and c / e open them."""

from __future__ import annotations

from pathlib import Path

from dftui.core.events import CheckpointSaved
from dftui.core.runs import RunRecorder, read_run


def test_best_weights_are_in_run_json_before_the_run_ends(tmp_path: Path) -> None:
    weights = tmp_path / "weights" / "mobilenet_v2_deepfake.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"state")
    recorder = RunRecorder(tmp_path / "run")
    recorder(CheckpointSaved(role="resume", path=str(tmp_path / "run" / "resume.pt"), epoch=1))
    recorder(CheckpointSaved(role="best", path=str(weights), epoch=2))
    # The process dies here: no RunFinished, no close().
    run = read_run(tmp_path / "run")
    assert run is not None and run.weights_path == str(weights)
    assert run.best_epoch == 2
