"""Weights on disk: a plain state_dict (loadable by ``model.load_state_dict(torch.load(p))``)
with its metadata in a JSON file beside it, never inside it. Writes are atomic."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dftui.core.backbones import (
    CLASS_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NUM_CLASSES,
    WeightsError,
    check_state_dict,
    infer_backbone,
    load_state_dict_file,
)
from dftui.core.data import Preprocessing
from dftui.core.files import atomic_write, fsync_dir, temp_files_of
from dftui.core.untrusted import read_json

if TYPE_CHECKING:
    import torch

METADATA_FORMAT = 1
# The reference scripts resized every backbone's input to 224×224 with ImageNet mean/std.
REFERENCE_PREPROCESSING = Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear")


def metadata_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_torch(obj: Any, path: str | Path) -> None:
    import torch

    with atomic_write(path) as fh:
        torch.save(obj, fh)


def save_json(data: Any, path: str | Path) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=2, default=str)


def run_tag(run_id: str, backbone: str) -> str:
    """The part of a run id a weights name carries: its date and time (and its -N when two
    runs started in the same second), e.g. ``20261130-111328`` of
    ``20261130-111328-mobilenet_v2``."""
    return run_id.replace(f"-{backbone}", "", 1)


def weights_candidates(path: Path, tag: str) -> Iterator[Path]:
    """``path``, then ``stem-TAG.pth``, ``stem-TAG-2.pth``, ...: a later run's weights are
    named after the run (the date and time its record folder carries), not a bare counter."""
    yield path
    yield path.with_name(f"{path.stem}-{tag}{path.suffix}")
    n = 2
    while True:
        yield path.with_name(f"{path.stem}-{tag}-{n}{path.suffix}")
        n += 1


def name_taken(path: Path) -> bool:
    """The weights file or its metadata (a finished pair, or a reservation) exists."""
    return os.path.lexists(path) or os.path.lexists(metadata_path(path))


def preview_weights_path(path: Path, tag: str = "<date>-<time>") -> Path:
    """The name a new run would get for ``path`` (for notes shown before it starts)."""
    for candidate in weights_candidates(path, tag):
        if not name_taken(candidate):
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover - the candidates never end


def reserve_weights_name(path: Path, run_id: str) -> bool:
    """Claim ``path`` for ``run_id`` by creating its metadata file exclusively (O_EXCL: of two
    runs that start together only one can). The reservation names its run, so the file is
    owned from the start; the first save replaces it with the real metadata. False when
    the name is taken."""
    if os.path.lexists(path):
        return False
    meta = metadata_path(path)
    try:
        fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(
            {
                "format": METADATA_FORMAT,
                "reserved_by": run_id,
                "run_id": run_id,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "note": "reserved for the best weights of this run; none saved yet",
            },
            fh,
        )
        fh.flush()
        os.fsync(fh.fileno())
    return True


def claim_weights_path(
    wanted: Path, run_id: str, tag: str, overwrite: bool, runs: Path | None = None
) -> Path:
    """The weights file a new run saves to, reserved for it: ``wanted`` when free (or when
    replacing it was asked for), else the first free ``stem-TAG[-N].pth``. With ``runs``
    (the runs folder), a name reserved by a run there that was killed before it saved
    anything, and cannot be resumed, is free again."""
    if overwrite and name_taken(wanted):
        return wanted  # the user asked to replace it
    for candidate in weights_candidates(wanted, tag):
        if runs is not None:
            _release_dead_reservation(candidate, runs)
        if not name_taken(candidate) and reserve_weights_name(candidate, run_id):
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def _release_dead_reservation(path: Path, runs: Path) -> None:
    """Delete ``path``'s reservation when its run is dead (its lock is free: the kernel drops
    it with the process) and left nothing to resume; else a run killed in its first epoch
    would hold the name for ever and every later run would save under another name. Done
    under that run's lock, so two runs starting together cannot both take the name (the
    exclusive create in ``reserve_weights_name`` still decides between them)."""
    from dftui.core.runs import lock_run
    from dftui.core.train import RESUME_FILE

    if os.path.lexists(path) or not os.path.lexists(metadata_path(path)):
        return
    meta = read_metadata(path)
    holder = meta.get("reserved_by") if meta else None
    if not isinstance(holder, str) or not holder or holder != Path(holder).name or holder in (".", ".."):
        return
    run_dir = runs / holder
    if run_dir.is_symlink() or not run_dir.is_dir():
        return  # not a run of this folder: leave it
    lock = lock_run(run_dir)
    if lock is None:
        return  # that run is alive
    if getattr(lock, "name", None) == os.devnull:  # no lock could be taken: cannot tell
        lock.close()
        return
    try:
        meta = read_metadata(path)  # again, under the lock: another run may have taken it
        if (
            meta is not None
            and meta.get("reserved_by") == holder
            and "preprocessing" not in meta
            and not os.path.lexists(path)
            and not (run_dir / RESUME_FILE).exists()
        ):
            os.unlink(metadata_path(path))
    except OSError:
        pass
    finally:
        lock.close()


def weights_owner(path: Path) -> tuple[str, str | None]:
    """Who owns weights ``path``: ("free", None) when neither it nor its metadata exists;
    ("run", RUN_ID) when its metadata (or reservation) names a run; ("unknown", None) for a
    file without readable metadata (reference-format, hand-made or damaged)."""
    if not name_taken(path):
        return "free", None
    meta = read_metadata(path)
    run_id = meta.get("run_id") if meta else None
    if isinstance(run_id, str) and run_id:
        return "run", run_id
    return "unknown", None


def build_metadata(backbone: str, preprocessing: Preprocessing, **extra: Any) -> dict[str, Any]:
    import torch

    from dftui import __version__

    return {
        "format": METADATA_FORMAT,
        "backbone": backbone,
        "classes": {name: i for i, name in enumerate(CLASS_NAMES)},
        "preprocessing": preprocessing.to_dict(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dftui_version": __version__,
        "torch_version": torch.__version__,
        **extra,
    }


def file_digest(path: str | Path) -> tuple[str, int]:
    """(SHA-256 hex digest, size in bytes) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def save_weights(
    state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Save weights and their metadata as one commit; returns the metadata written (with
    the weights' ``weights_sha256`` and ``weights_size``).

    The weights go to a temporary file first; then the metadata, naming the new weights'
    SHA-256, replaces the old metadata (the commit point); then the weights replace the old
    weights. A crash or a full disk before the commit leaves the old pair; a crash between
    the two renames leaves metadata that does not match the weights beside it, which
    ``load_weights`` refuses and ``recover_weights`` completes. A new ``.pth`` never
    appears without its ``.json``."""
    import torch

    path = Path(path)
    # Detached CPU copies keep the file loadable on machines without the training device.
    cpu_state = {k: v.detach().to("cpu").clone() for k, v in state_dict.items()}
    written: dict[str, Any] = {}

    def commit_metadata(tmp: str) -> None:
        digest, size = file_digest(tmp)
        written.update(metadata, weights_file=path.name, weights_sha256=digest, weights_size=size)
        save_json(written, metadata_path(path))

    with atomic_write(path, before_replace=commit_metadata) as fh:
        torch.save(cpu_state, fh)
    return written


def recover_weights(path: str | Path) -> bool:
    """Finish a save cut between its two renames: when the metadata names weights that a
    leftover temporary file holds, move that file into place. Call only when no other
    process can be writing ``path``. Returns True when something was recovered."""
    path = Path(path)
    meta = read_metadata(path)
    if not meta or not isinstance(meta.get("weights_sha256"), str):
        return False
    if _matches(path, meta):
        return False
    for tmp in temp_files_of(path):
        try:
            if _matches(tmp, meta):
                os.replace(tmp, path)
                fsync_dir(path.parent)
                return True
        except OSError:
            continue
    return False


def _matches(path: Path, meta: dict[str, Any]) -> bool:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != meta.get("weights_size"):
            return False
        return file_digest(path)[0] == meta.get("weights_sha256")
    except OSError:
        return False


MAX_INPUT_SIZE = 2048  # pixels; beyond this every image would allocate hundreds of MB
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def read_metadata(weights: str | Path) -> dict[str, Any] | None:
    """The metadata beside ``weights``; None when there is none or it cannot be read (see
    ``read_metadata_checked`` for the reason)."""
    return read_metadata_checked(weights)[0]


def read_metadata_checked(weights: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """(metadata, None), (None, None) when there is no metadata file, or (None, reason) when
    there is one that cannot be used: the file is untrusted (hand-edited, huge, nested
    absurdly deep, not an object), and a list of weights must show it, not fail on it."""
    path = metadata_path(weights)
    try:
        return read_json(path), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"{path.name}: {exc}"


def _metadata_problem(meta: dict[str, Any], min_size: int) -> str | None:
    """What makes ``meta`` unusable for classification, or None. Every field is checked:
    the file may come from anywhere."""
    classes = meta.get("classes")
    if classes is not None:
        if not isinstance(classes, dict) or not {"real", "fake"} <= set(classes):
            return '"classes" must map "real" and "fake" to the outputs 0 and 1'
        values = [classes["real"], classes["fake"]]
        if not all(type(v) is int and 0 <= v < NUM_CLASSES for v in classes.values()) or len(set(values)) != 2:
            return f'"classes" {json.dumps(classes)[:80]} must map "real" and "fake" to 0 and 1, one each'
    pre = meta.get("preprocessing")
    if not isinstance(pre, dict):
        return '"preprocessing" is missing or not an object'
    size = pre.get("input_size")
    if type(size) is float and math.isfinite(size) and size.is_integer():
        size = int(size)
    if type(size) is not int:
        return f'"input_size" {json.dumps(size)[:40]} is not a whole number of pixels'
    if not min_size <= size <= MAX_INPUT_SIZE:
        return f'"input_size" {size} is outside {min_size}..{MAX_INPUT_SIZE} pixels'
    for key in ("mean", "std"):
        values = pre.get(key)
        if (
            not isinstance(values, list)
            or len(values) != 3
            or not all(type(v) in (int, float) and math.isfinite(v) for v in values)
        ):
            return f'"{key}" must be a list of 3 finite numbers (one per RGB channel)'
    if not all(v > 0 for v in pre["std"]):
        return '"std" must be greater than 0 for every channel (images are divided by it)'
    interpolation = pre.get("interpolation", "bilinear")
    if interpolation not in INTERPOLATIONS:
        return f'"interpolation" {json.dumps(interpolation)[:40]} is not one of {", ".join(INTERPOLATIONS)}'
    return None


# Moving the .json away helps only for files the reference scripts made: weights a recorded
# dftui run saved are refused without their metadata (their preprocessing is unknown).
_METADATA_WAY_OUT = (
    "fix it, or, for weights made by the reference scripts, move it away to use the "
    "reference preprocessing (224 px, ImageNet mean/std)"
)


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a dftui or reference-format weights file; returns (state_dict, metadata).

    Without a metadata file the weights are taken as the reference scripts made them:
    backbone from the keys, 224×224 resize, ImageNet mean/std, real = 0, fake = 1."""
    path = Path(path).expanduser()
    meta_file = metadata_path(path)
    meta, damaged = read_metadata_checked(path)
    if meta is None and (damaged or os.path.lexists(meta_file)):
        # Our writes are atomic, so this is a hand-edited or foreign file: guessing the
        # preprocessing could give silently wrong answers.
        raise WeightsError(
            f"the metadata of {path} cannot be read ({damaged or meta_file.name + ': unreadable'}); "
            f"{_METADATA_WAY_OUT}"
        )
    if meta is not None and "reserved_by" in meta and "preprocessing" not in meta and os.path.lexists(path):
        raise WeightsError(
            f"{path} has no metadata: run {str(meta.get('reserved_by'))[:80]} reserved this name "
            f"and its save was cut before {meta_file.name} was written. Resume that run, or "
            "train again"
        )
    if meta is not None and "weights_sha256" in meta and os.path.isfile(path) and not _matches(path, meta):
        raise WeightsError(
            f"{path} does not match its metadata {meta_file.name} (which describes other "
            "weights: a save was cut between the two files, or one of them was replaced). "
            "Resume the run that wrote them to finish the save, or use other weights"
        )
    if meta is None and os.path.isfile(path):
        trained_by = _recorded_run_of(path)
        if trained_by:
            # Ours, not the reference scripts': guessing 224 px and ImageNet statistics for
            # weights trained otherwise would give every answer silently wrong.
            raise WeightsError(
                f"{path} was saved by dftui run {trained_by} but its metadata {meta_file.name} "
                "is missing (deleted, or a save was cut in an older version), so its "
                "preprocessing is unknown. Restore the .json, or resume or retrain that run"
            )
    state = load_state_dict_file(path)
    spec = infer_backbone(state)
    if meta is not None and meta.get("backbone") not in (None, spec.name):
        raise WeightsError(
            f"{path} holds {spec.name} weights but its metadata says "
            f"{str(meta.get('backbone'))[:40]}; the file or its {meta_file.name} was replaced"
        )
    head = state.get(f"{spec.head}.weight")
    if head is None or head.ndim != 2 or head.shape[0] != NUM_CLASSES:
        shape = tuple(head.shape) if head is not None else "none"
        raise WeightsError(
            f"{path} is a {spec.name} model but its head is not 2-class real/fake "
            f"({spec.head}.weight has shape {shape}); is it an ImageNet file? Such a file is "
            "a starting point for training (the pretrained weights), not a real/fake classifier"
        )
    check_state_dict(spec, state, path)
    if meta is None:
        meta = {
            "backbone": spec.name,
            "classes": {name: i for i, name in enumerate(CLASS_NAMES)},
            "preprocessing": REFERENCE_PREPROCESSING.to_dict(),
            "reference_format": True,
        }
    meta.setdefault("backbone", spec.name)
    meta.setdefault("preprocessing", REFERENCE_PREPROCESSING.to_dict())
    problem = _metadata_problem(meta, spec.min_size)
    if problem:
        raise WeightsError(
            f"the metadata file {meta_file} is unusable: {problem}; {_METADATA_WAY_OUT}"
        )
    meta["preprocessing"] = {**meta["preprocessing"], "input_size": int(meta["preprocessing"]["input_size"])}
    return state, meta


def _recorded_run_of(weights: Path) -> str | None:
    """The id of a run recorded in this user's runs folder that saved ``weights`` (its
    config.json names the file), or None. Only asked when a .pth has no .json."""
    from dftui.core.runs import runs_root

    try:
        runs = [p for p in runs_root().iterdir() if p.is_dir()]
    except OSError:
        return None
    for run_dir in runs:
        try:
            recorded = read_json(run_dir / "config.json").get("weights_path")
            if isinstance(recorded, str) and recorded and os.path.samefile(recorded, weights):
                return run_dir.name
        except (OSError, ValueError, AttributeError):
            continue
    return None


def list_weights(folder: str | Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """The .pth files in ``folder`` with their metadata (None for reference-format files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [(p, read_metadata(p)) for p in sorted(folder.glob("*.pth"))]
