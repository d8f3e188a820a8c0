"""Issue 12, "weights and verdicts": weights that cannot be destroyed, crossed or mislabelled.

Each test fails on the code before the fix (see docs/RELIABILITY.md, section "Issue 12")."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import stat
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dftui.core import checkpoint
from dftui.core.backbones import (
    BACKBONES,
    WeightsError,
    load_state_dict_file,
    resolve_pretrained_file,
)
from dftui.core.checkpoint import (
    build_metadata,
    claim_weights_path,
    load_weights,
    metadata_path,
    recover_weights,
    reserve_weights_name,
    save_weights,
)
from dftui.core.config import ConfigError, TrainConfig
from dftui.core.data import Preprocessing, display_path, scan_folder
from dftui.core.events import EpochEnd, LogMessage, RunFailed, RunFinished
from dftui.core.files import atomic_write
from dftui.core.runs import lock_run
from dftui.core.train import StopFlag, fit

SPEC = BACKBONES["mobilenet_v2"]
PRE32 = Preprocessing(32, SPEC.mean, SPEC.std, SPEC.interpolation)


def _config(dataset: dict[str, Path], out: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        train_dir=dataset["train"], val_dir=dataset["val"], epochs=1, batch_size=8, img_size=32,
        workers=0, precision="fp32", pretrained="none", out_dir=out,
    )
    return base.with_(**changes)


@pytest.fixture(scope="module")
def model_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return SPEC.build().eval().state_dict()


def _save(folder: Path, state: dict[str, torch.Tensor], name: str = "w.pth", **extra) -> Path:
    path = folder / name
    save_weights(state, path, build_metadata(SPEC.name, PRE32, **extra))
    return path


# -- Major 1: weights names --------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["x.json", "x", "../x.pth", "sub/x.pth", "a\\b.pth", ".pth", ".hidden.pth", "x\n.pth", "..",
     "x" * 200 + ".pth", "x.PTH"],
)
def test_weights_name_must_be_a_plain_pth_file_name(name: str) -> None:
    with pytest.raises(ConfigError, match="weights name"):
        TrainConfig(weights_name=name).validate()


async def test_setup_field_shows_the_same_rule(tmp_path: Path) -> None:
    from textual.widgets import Input, Static

    from dftui.ui.app import DftuiApp
    from dftui.ui.screens.setup import SetupScreen, validate_field

    message = validate_field("weights", str(tmp_path / "x.json"), "mobilenet_v2")
    assert message and "does not end in .pth" in message
    assert validate_field("weights", str(tmp_path / "x.pth"), "mobilenet_v2") is None
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        field = screen.query_one("#weights", Input)
        field.value = str(tmp_path / "x.json")
        await pilot.pause()
        # The message is on the form, naming the field; the field is marked.
        assert "weights path: 'x.json' does not end in .pth" in str(
            screen.query_one("#field-errors", Static).render())
        assert field.has_class("invalid-field")
        with pytest.raises(ConfigError, match="x.json"):
            screen.build_config()


# -- Majors 4 and 7, issue 16: ownership, reservation, names ------------------------------
def test_names_are_reserved_atomically_and_named_after_the_run(tmp_path: Path) -> None:
    wanted = tmp_path / "mobilenet_v2_deepfake.pth"
    a = claim_weights_path(wanted, "20260101-000000-mobilenet_v2", "20260101-000000", False)
    # A second run starting at the same time (nothing saved yet) gets another file.
    b = claim_weights_path(wanted, "20260101-000000-mobilenet_v2-2", "20260101-000000-2", False)
    assert a == wanted and b.name == "mobilenet_v2_deepfake-20260101-000000-2.pth"
    assert json.loads(metadata_path(a).read_text())["reserved_by"].endswith("mobilenet_v2")
    assert not reserve_weights_name(a, "someone-else")  # exclusive create


def test_two_runs_started_together_save_to_different_files(dataset, tmp_path: Path) -> None:
    from dftui.core.events import RunStarted

    out = tmp_path / "o2"
    out.mkdir()
    (out / "mobilenet_v2_deepfake.pth").write_bytes(b"precious")
    others: list = []
    cfg = _config(dataset, out)

    def emit(event) -> None:
        # The second run starts after the first chose its file, before it saved anything.
        if isinstance(event, RunStarted) and not others:
            others.append(None)
            others.append(fit(cfg))

    final = fit(cfg, emit)
    other = others[1]
    assert isinstance(final, RunFinished) and isinstance(other, RunFinished)
    assert final.weights_path != other.weights_path
    assert (out / "mobilenet_v2_deepfake.pth").read_bytes() == b"precious"
    for run in (final, other):
        assert load_weights(run.weights_path)[1]["run_id"] == Path(run.run_dir).name


def test_resume_never_overwrites_another_runs_weights(dataset, tmp_path: Path) -> None:
    out = tmp_path / "wov"
    cfg = _config(dataset, out, epochs=2)
    stop = StopFlag()
    a = fit(cfg, lambda e: stop.request("interrupted") if isinstance(e, EpochEnd) else None, stop)
    assert isinstance(a, RunFinished) and a.status == "interrupted"
    ref = out / "mobilenet_v2_deepfake.pth"
    shutil.move(ref, tmp_path / "moved.pth")  # the user moves A's weights away
    os.unlink(metadata_path(ref))
    b = fit(cfg.with_(epochs=1))
    assert isinstance(b, RunFinished) and b.weights_path == str(ref)
    before = ref.read_bytes(), metadata_path(ref).read_bytes()
    events: list = []
    resumed = fit(cfg, events.append, resume=a.run_dir)
    assert isinstance(resumed, RunFinished) and resumed.status == "finished", resumed
    assert (ref.read_bytes(), metadata_path(ref).read_bytes()) == before  # B's pair untouched
    assert resumed.weights_path != str(ref)
    assert load_weights(resumed.weights_path)[1]["run_id"] == Path(a.run_dir).name
    warnings = [e.text for e in events if isinstance(e, LogMessage) and e.level == "warning"]
    assert any("belongs to run" in w and Path(b.run_dir).name in w for w in warnings), warnings


def test_a_run_lock_is_atomic(dataset, tmp_path: Path) -> None:
    cfg = _config(dataset, tmp_path / "w", epochs=2)
    stop = StopFlag()
    a = fit(cfg, lambda e: stop.request("interrupted") if isinstance(e, EpochEnd) else None, stop)
    run_dir = Path(a.run_dir)
    held = lock_run(run_dir)  # as a second resume of the same run, started at the same time
    assert held is not None and lock_run(run_dir) is None
    final = fit(cfg, resume=run_dir)
    assert isinstance(final, RunFailed) and "already being run" in final.message
    held.close()
    final = fit(cfg, resume=run_dir)
    assert isinstance(final, RunFinished) and final.status == "finished"


def test_a_run_that_saved_nothing_gives_its_name_back(dataset, tmp_path: Path) -> None:
    cfg = _config(dataset, tmp_path / "w", lr=1e30)  # diverges in epoch 1
    final = fit(cfg)
    assert isinstance(final, RunFailed)
    assert not list((tmp_path / "w").glob("*"))


# -- Major 5: non-finite weights, metadata and scores ------------------------------------
@pytest.mark.parametrize("where, value", [("classifier.1.weight", math.nan), ("classifier.1.bias", math.inf)])
def test_non_finite_weights_are_refused(tmp_path, model_state, where, value) -> None:
    state = {k: v.clone() for k, v in model_state.items()}
    state[where].view(-1)[0] = value
    path = _save(tmp_path, state)
    with pytest.raises(WeightsError, match="not finite"):
        load_weights(path)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"std": [0, 0.2, 0.2]}, "std"),
        ({"std": [math.nan, 0.2, 0.2]}, "std"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"input_size": 100000}, "input_size"),
        ({"input_size": 0}, "input_size"),
        ({"input_size": -5}, "input_size"),
        ({"input_size": 64.9}, "input_size"),
        ({"input_size": math.inf}, "input_size"),
        ({"interpolation": "lanczos9"}, "interpolation"),
        ({"classes": {"real": 0, "fake": 7}}, "classes"),
        ({"classes": "real,fake"}, "classes"),
        ({"classes": ["real", "fake"]}, "classes"),
        ({"classes": {"real": 0, "fake": 0}}, "classes"),
        ({"classes": {"real": 0, "fake": True}}, "classes"),
    ],
)
def test_metadata_is_range_checked(tmp_path, model_state, change, match) -> None:
    path = _save(tmp_path, model_state)
    meta = json.loads(metadata_path(path).read_text())
    if "classes" in change:
        meta["classes"] = change["classes"]
    else:
        meta["preprocessing"].update(change)
    metadata_path(path).write_text(json.dumps(meta))  # json writes NaN/Infinity as Python does
    with pytest.raises(WeightsError, match=match):
        load_weights(path)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.int64, torch.bool])
def test_tensors_of_the_wrong_type_are_refused(tmp_path, model_state, dtype) -> None:
    state = dict(model_state)
    state["classifier.1.weight"] = state["classifier.1.weight"].to(dtype)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="wrong type"):
        load_weights(path)


def test_a_nan_score_is_never_a_label(tmp_path, model_state, dataset, monkeypatch) -> None:
    from dftui.core.evaluate import evaluate_folder
    from dftui.core.predict import Predictor

    predictor = Predictor(_save(tmp_path, model_state), device="cpu", precision="fp32")
    monkeypatch.setattr(predictor, "probabilities", lambda batch: torch.full((len(batch),), math.nan))
    images = sorted((dataset["val"] / "fake").iterdir())[:3]
    preds = list(predictor.predict_paths(images))
    assert [p.label for p in preds] == [None] * 3 and "no finite score" in preds[0].error
    assert predictor.predict_image(images[0]).label is None
    from dftui.core.photo import PhotoJudge

    photo = PhotoJudge(predictor, mode="off").judge_path(images[0])  # the faces path too
    assert photo.label is None and "no finite score" in photo.note + photo.error
    from dftui.core.evaluate import EvaluationError

    with pytest.raises(EvaluationError, match="could be scored"):
        evaluate_folder(predictor, dataset["val"])


# -- Major 6: weights and metadata as one commit -----------------------------------------
def test_a_save_cut_between_the_two_files_is_refused_then_recovered(tmp_path, model_state, monkeypatch):
    path = _save(tmp_path, model_state, best_epoch=1)
    old_pth = path.read_bytes()
    newer = {k: v.clone() for k, v in model_state.items()}
    newer["classifier.1.bias"] += 1
    real_replace = os.replace

    def crash_on_weights(src, dst):
        if str(dst).endswith(".pth"):
            raise KeyboardInterrupt  # killed between the metadata's rename and the weights'
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", crash_on_weights)
    with pytest.raises(KeyboardInterrupt):
        save_weights(newer, path, build_metadata(SPEC.name, PRE32, best_epoch=2))
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    # The previous .pth is there, but the metadata now names the new weights: refused,
    # never used with the wrong metadata.
    assert path.read_bytes() == old_pth
    with pytest.raises(WeightsError, match="does not match its metadata"):
        load_weights(path)


def test_recover_finishes_a_cut_save(tmp_path, model_state, monkeypatch):
    path = _save(tmp_path, model_state, best_epoch=1)
    newer = {k: v.clone() for k, v in model_state.items()}
    newer["classifier.1.bias"] += 1
    real_replace = os.replace

    def replace(s: object, d: object) -> None:
        if str(d).endswith(".pth"):
            raise OSError(5, "EIO")
        real_replace(s, d)

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    # the temporary weights file is deleted on an exception; keep it as a kill -9 would
    monkeypatch.setattr(checkpoint.os, "unlink", lambda p: None)
    with pytest.raises(OSError):
        save_weights(newer, path, build_metadata(SPEC.name, PRE32, best_epoch=2))
    monkeypatch.undo()
    assert recover_weights(path)
    state, meta = load_weights(path)
    assert meta["best_epoch"] == 2 and torch.equal(state["classifier.1.bias"], newer["classifier.1.bias"])


def test_disk_full_at_the_metadata_leaves_no_new_weights(tmp_path, model_state, monkeypatch):
    path = tmp_path / "w.pth"

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_json", full)
    with pytest.raises(OSError):
        save_weights(model_state, path, build_metadata(SPEC.name, PRE32))
    assert list(tmp_path.iterdir()) == []  # no .pth without its .json, no temporary file


def test_weights_whose_metadata_was_never_written_are_refused(tmp_path, model_state):
    path = tmp_path / "w.pth"
    assert reserve_weights_name(path, "20260101-000000-mobilenet_v2")
    torch.save(model_state, path)  # a .pth beside only the reservation
    with pytest.raises(WeightsError, match="no metadata"):
        load_weights(path)
    # Reference-format files (a bare state_dict, no .json) still load as before.
    os.unlink(metadata_path(path))
    assert load_weights(path)[1]["reference_format"]


# -- Major 8: ImageNet downloads are verified --------------------------------------------
def _serve(tmp_path: Path, state) -> tuple[str, str]:
    src = tmp_path / "served.pth"
    torch.save(state, src)
    return src.as_uri(), hashlib.sha256(src.read_bytes()).hexdigest()


def test_download_is_checked_against_its_hash(tmp_path, monkeypatch, model_state) -> None:
    monkeypatch.delenv("DFTUI_OFFLINE", raising=False)
    url, digest = _serve(tmp_path, model_state)
    spec = replace(SPEC, weights_url=url, weights_sha256_prefix=digest[:8])
    cache = spec.cached_weights.parent
    assert resolve_pretrained_file(spec, "imagenet", lambda e: None) == spec.cached_weights
    assert spec.cached_weights.read_bytes() == Path(url[7:]).read_bytes()
    spec.cached_weights.unlink()
    bad = replace(spec, weights_sha256_prefix="00000000")
    with pytest.raises(WeightsError, match="SHA-256"):
        resolve_pretrained_file(bad, "imagenet", lambda e: None)
    assert list(cache.iterdir()) == []  # nothing left in the cache, not even a partial file


def test_mobilenet_download_names_its_hash() -> None:
    assert SPEC.weights_file.split("-")[1].startswith(SPEC.weights_sha256_prefix)
    assert len(SPEC.weights_sha256_prefix) == 8


# -- Minor items ---------------------------------------------------------------------------
def test_fifos_and_devices_are_never_opened(tmp_path, dataset) -> None:
    from dftui.core.predict import Predictor

    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    with pytest.raises(WeightsError, match="FIFO"):
        load_state_dict_file(fifo)  # returns at once (it used to say "does not exist" or hang)
    for device in ("/dev/zero", "/dev/null"):
        with pytest.raises(WeightsError, match="character device"):
            load_state_dict_file(Path(device))
    data = tmp_path / "data"
    shutil.copytree(dataset["val"], data)
    os.mkfifo(data / "fake" / "pipe.png")
    scan = scan_folder(data)
    assert dict(scan.unreadable)[str(data / "fake" / "pipe.png")] == "a FIFO (named pipe), not a regular file"
    predictor = Predictor(_save(tmp_path, SPEC.build().eval().state_dict()), device="cpu")
    pred = predictor.predict_image(data / "fake" / "pipe.png")
    assert pred.label is None and "FIFO" in pred.error
    from dftui.core.video import VideoError, probe

    os.mkfifo(tmp_path / "clip.mp4")
    with pytest.raises(VideoError, match="FIFO"):  # was "empty file (0 bytes)"
        probe(tmp_path / "clip.mp4")
    from dftui.core.photo import judged_whole

    assert judged_whole(data / "fake" / "pipe.png", "auto")  # returns, never blocks on the FIFO


def test_zip_bomb_is_refused_before_inflating(tmp_path) -> None:
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/data/0", bytes(64 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(WeightsError, match="declares"):
        load_state_dict_file(bomb)


def test_files_honour_the_umask(tmp_path, model_state) -> None:
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.json", "w") as fh:
            fh.write("{}")
        path = _save(tmp_path, model_state)
    finally:
        os.umask(old)
    for p in (tmp_path / "a.json", path, metadata_path(path)):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_names_with_tabs_and_newlines_are_escaped() -> None:
    assert display_path("a\tb\nc\r\x1b.png") == "a\\tb\\nc\\r\\x1b.png"
    assert display_path("ok name.png") == "ok name.png"


def test_evaluations_go_only_to_the_runs_own_record(tmp_path, dataset) -> None:
    from dftui.core.evaluate import evaluate_folder, save_evaluation
    from dftui.core.predict import Predictor
    from dftui.core.runs import data_home

    final = fit(_config(dataset, tmp_path / "w"))
    own = Predictor(final.weights_path, device="cpu")
    record = save_evaluation(evaluate_folder(own, dataset["val"]))
    assert record.parent == Path(final.run_dir) / "evaluations"
    # Metadata beside other weights pointing at any existing folder: not written there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fake = tmp_path / "other" / "x.pth"
    fake.parent.mkdir()
    shutil.copy(final.weights_path, fake)
    meta = json.loads(metadata_path(final.weights_path).read_text())
    for target in (elsewhere, Path(final.run_dir)):
        meta["run_dir"] = str(target)
        metadata_path(fake).write_text(json.dumps(meta))
        record = save_evaluation(evaluate_folder(Predictor(fake, device="cpu"), dataset["val"]))
        assert record.parent == data_home() / "evaluations"
    assert not (elsewhere / "evaluations").exists()


def test_dftui_weights_without_their_metadata_are_not_taken_as_reference_format(dataset, tmp_path):
    final = fit(_config(dataset, tmp_path / "w"))
    os.unlink(metadata_path(final.weights_path))  # lost, e.g. an older version's cut save
    with pytest.raises(WeightsError, match="metadata .* is missing"):
        load_weights(final.weights_path)
    # The same bytes elsewhere, never recorded by a run: a reference-format file as before.
    bare = tmp_path / "bare.pth"
    shutil.copy(final.weights_path, bare)
    assert load_weights(bare)[1]["reference_format"]


def test_resume_writes_weights_only_to_a_weights_file_name(dataset, tmp_path: Path) -> None:
    cfg = _config(dataset, tmp_path / "w", epochs=2)
    stop = StopFlag()
    a = fit(cfg, lambda e: stop.request("interrupted") if isinstance(e, EpochEnd) else None, stop)
    ckpt_path = Path(a.run_dir) / "resume.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    victim = tmp_path / "notes.txt"
    victim.write_text("mine")
    ckpt["weights_path"] = str(victim)  # a resume.pt edited to point elsewhere
    torch.save(ckpt, ckpt_path)
    final = fit(cfg, resume=a.run_dir)
    assert isinstance(final, RunFailed) and "not a weights file name" in final.message
    assert victim.read_text() == "mine"


def test_run_record_named_by_metadata_is_read_as_untrusted(tmp_path: Path) -> None:
    """The metadata's run_dir points at files anyone may have made: a FIFO there must not
    hang the evaluation (it blocked forever on open), and no record is taken from it."""
    import threading

    from dftui.core.evaluate import _run_dir_of

    run_dir = tmp_path / "20261130-000000-mobilenet_v2"
    run_dir.mkdir()
    os.mkfifo(run_dir / "run.json")
    (run_dir / "config.json").write_text("{}")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    meta = {"run_dir": str(run_dir), "run_id": run_dir.name}
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(_run_dir_of(meta, weights)), daemon=True)
    reader.start()
    reader.join(10)
    hung = reader.is_alive()
    if hung:  # let the blocked reader go: a writer that closes at once gives it end-of-file
        os.close(os.open(run_dir / "run.json", os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
    assert not hung, "reading the run record named by untrusted metadata blocked on a FIFO"
    assert found == [None]


def test_predict_json_never_holds_nan() -> None:
    """``dftui predict --json`` printed ``"p_fake": NaN`` for a skipped file: not JSON (jq and
    strict parsers refuse the whole output). No score is null, as photos and frames give."""
    from dftui.core.predict import Prediction

    row = Prediction("pipe.png", None, math.nan, math.nan, 0.0, "a FIFO").to_dict()
    assert row["p_fake"] is None and row["p_real"] is None and row["label"] is None
    json.dumps(row, allow_nan=False)


def test_a_name_reserved_by_a_killed_run_is_free_again(tmp_path: Path) -> None:
    """A run killed (kill -9, out of memory) before its first save left its reservation: every
    later run in that folder saved under another name, for ever. A dead run that left nothing
    to resume gives the name back; a live or resumable one keeps it."""
    runs = tmp_path / "runs"
    wanted = tmp_path / "w" / "mobilenet_v2_deepfake.pth"
    wanted.parent.mkdir()
    dead = runs / "20260101-000000-mobilenet_v2"
    dead.mkdir(parents=True)
    assert reserve_weights_name(wanted, dead.name)
    new = "20260102-000000-mobilenet_v2"
    held = lock_run(dead)  # still running: kept
    assert claim_weights_path(wanted, new, "20260102-000000", False, runs) != wanted
    held.close()
    (dead / "resume.pt").write_bytes(b"x")  # resumable: kept
    assert claim_weights_path(wanted, new, "20260102-000000-2", False, runs) != wanted
    (dead / "resume.pt").unlink()
    assert claim_weights_path(wanted, new, "20260102-000000-3", False, runs) == wanted
    assert json.loads(metadata_path(wanted).read_text())["reserved_by"] == new
