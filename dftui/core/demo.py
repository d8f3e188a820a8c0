"""Generated (synthetic) data to try dftui without the 60 GB OpenForensics download.

- ``make_demo_data`` writes a small real/fake set of generated face-like crops into the default
  folders (``processed_data/train_cropped`` etc.), so ``dftui train`` and the dashboard run end
  to end in minutes on a CPU. The pictures are drawn by ``dftui.core.synthetic``: they only
  teach a model to spot a drawn artefact, never to detect real DeepFakes.
- ``make_openforensics_sample`` writes a tiny archive laid out like OpenForensics (COCO
  ``<Split>_poly.json`` + full images with several faces), optionally with the defects real
  archives have (missing and corrupt files, boxes outside the image, ...), to try
  ``dftui prepare openforensics`` and to test it. It returns the expected outcome of every
  annotation."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dftui.core.advice import Fix
from dftui.core.data import IMAGE_EXTENSIONS, iter_files
from dftui.core.errors import describe_error

if TYPE_CHECKING:  # numpy and the generator load only when data is generated, not for --help
    import numpy as np
    from PIL import Image

DEFAULT_DATA_ROOT = Path("processed_data")
DEMO_MARKER = "SYNTHETIC_DEMO_DATA.txt"
# Folder -> (share of --n per class, seed). Different seeds: validation never sees a training picture.
DEMO_FOLDERS: dict[str, tuple[float, int]] = {
    "train_cropped": (1.0, 101),
    "val_cropped": (0.5, 202),
    "test_dev_cropped": (0.5, 303),
}
DEMO_N = 32  # training images per class (see demo_counts for validation and test)
DEMO_SIZE = 64  # pixels; upscaled to the backbone's input size when training
MIN_EVAL_N = 8


class DemoDataError(ValueError):
    """The demo set cannot be written; the message says where and what to do, ``fixes`` the
    settings out of it (phrased by each surface)."""

    def __init__(self, message: str, fixes: tuple[Fix, ...] = ()) -> None:
        super().__init__(message)
        self.fixes = fixes


@dataclass
class DemoResult:
    root: Path
    folders: dict[str, Path]  # folder name -> path
    counts: dict[str, dict[str, int]]  # folder name -> {"real": n, "fake": n}
    moved_aside: dict[str, Path] = field(default_factory=dict)  # folder name -> where the old one went

    @property
    def train_dir(self) -> Path:
        return self.folders["train_cropped"]

    @property
    def val_dir(self) -> Path:
        return self.folders["val_cropped"]


def demo_counts(n: int) -> dict[str, int]:
    """Images per class in each demo folder for ``--n N``."""
    return {name: max(MIN_EVAL_N if share < 1 else 1, round(n * share)) for name, (share, _) in DEMO_FOLDERS.items()}


def has_entries(folder: Path) -> bool:
    """True when ``folder`` exists and holds anything but hidden files."""
    try:
        return any(not e.name.startswith(".") for e in os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return False


def has_images(folder: Path) -> bool:
    """True when any image file lies under ``folder`` (recursively, hidden entries ignored)."""
    if not folder.is_dir():
        return False
    return next(iter_files(folder, IMAGE_EXTENSIONS), None) is not None


def default_folders_empty(root: str | Path = DEFAULT_DATA_ROOT) -> bool:
    """What the dashboard asks before offering demo data: the default training or validation
    folder holds no image at all (missing folders count as empty)."""
    root = Path(root)
    return not (has_images(root / "train_cropped") and has_images(root / "val_cropped"))


def is_demo_data(folder: str | Path) -> bool:
    """True for a folder written by ``make_demo_data`` (it carries the marker file)."""
    return (Path(folder) / DEMO_MARKER).is_file()


def _move_aside(path: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.old-{stamp}")
    n = 2
    while target.exists():
        target = path.with_name(f"{path.name}.old-{stamp}-{n}")
        n += 1
    path.rename(target)
    return target


def make_demo_data(root: str | Path = DEFAULT_DATA_ROOT, n: int = DEMO_N, size: int = DEMO_SIZE,
                   force: bool = False, seed: int = 0, fmt: str = "png") -> DemoResult:
    """Write the synthetic demo set into ``root/{train,val,test_dev}_cropped/{real,fake}``.

    Refuses (DemoDataError) when one of those folders is not empty, unless ``force``: then the
    old folder is renamed to ``<name>.old-<timestamp>`` rather than deleted, so nothing the
    user had there is lost."""
    from dftui.core.synthetic import SyntheticSpec, make_dataset

    root = Path(root).expanduser()
    if n < 1:
        raise DemoDataError(f"--n must be at least 1 image per class (got {n})")
    if not 16 <= size <= 512:
        raise DemoDataError(f"--size {size} is out of range; use 16 to 512 pixels")
    if root.exists() and not root.is_dir():
        raise DemoDataError(f"{root} is a file; give a folder for the demo data")
    folders = {name: root / name for name in DEMO_FOLDERS}
    busy = [p for p in folders.values() if has_entries(p)]
    if busy and not force:
        raise DemoDataError(
            f"{', '.join(str(p) for p in busy)} already hold files; they are left as they are "
            "(moving them aside renames them to <name>.old-<time>, nothing is deleted)",
            (Fix("data_out"), Fix("force")),
        )
    result = DemoResult(root, folders, {})
    try:
        for name, path in folders.items():
            if path in busy:
                result.moved_aside[name] = _move_aside(path)
        counts = demo_counts(n)
        for name, (_, folder_seed) in DEMO_FOLDERS.items():
            spec = SyntheticSpec(n_per_class=counts[name], size=size, seed=seed + folder_seed, fmt=fmt)
            result.counts[name] = make_dataset(folders[name], spec)
            (folders[name] / DEMO_MARKER).write_text(
                "SYNTHETIC demo data written by `dftui demo-data`: generated face-like drawings, where\n"
                "'fake' ones carry a drawn up-sampling artefact. Good for trying dftui end to end;\n"
                "useless for detecting real DeepFakes. Delete this folder (or use `dftui demo-data\n"
                "--force`) before preparing real data here.\n",
                encoding="utf-8",
            )
    except OSError as exc:
        raise DemoDataError(f"cannot write the demo data under {root}: {describe_error(exc)}") from None
    return result


# --------------------------------------------------------------------------- a sample archive


@dataclass(frozen=True)
class SampleAnnotation:
    split: str
    file_name: str
    ann_id: int
    expected: str  # "real" | "fake" | a skip reason of dftui.core.prepare


def _scene(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    import numpy as np
    from PIL import Image

    base = rng.integers(30, 220, 3)
    arr = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def make_openforensics_sample(
    root: str | Path,
    layout: str = "distributed",
    splits: tuple[str, ...] = ("Train", "Val"),
    images_per_split: int = 6,
    faces_per_image: int = 3,
    image_size: tuple[int, int] = (160, 120),
    defects: bool = True,
    seed: int = 0,
) -> list[SampleAnnotation]:
    """A tiny archive in the OpenForensics layout, with generated scenes and faces.

    ``layout="distributed"``: ``<Split>/<Split>_poly.json`` with images in ``<Split>/<Split>/``
    (``file_name`` carries a folder prefix that does not exist, as archives often do).
    ``layout="relative"``: ``<Split>_poly.json`` at the root, ``file_name`` relative to it.
    With ``defects`` the first split also holds: a box partly outside (cropped, clamped), a box
    wholly outside, a zero-size box, an unknown category, an annotation for an unknown image id,
    a missing image file and a corrupt one. Returns every annotation's expected outcome."""
    import numpy as np

    from dftui.core import prepare as P  # the skip-reason names
    from dftui.core.synthetic import _face

    root = Path(root)
    rng = np.random.default_rng(seed)
    width, height = image_size
    expected: list[SampleAnnotation] = []
    ann_id = 1
    for s_index, split in enumerate(splits):
        if layout == "distributed":
            json_path = root / split / f"{split}_poly.json"
            image_dir = root / split / split
            prefix = f"Images/{split}/"
        elif layout == "relative":
            json_path = root / f"{split}_poly.json"
            image_dir = root / "images" / split.lower()
            prefix = f"images/{split.lower()}/"
        else:
            raise ValueError(f"layout {layout!r} is not 'distributed' or 'relative'")
        image_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        face = max(16, min(width, height) // 3)
        for i in range(images_per_split):
            name = f"{split.lower()}_{i:04d}.jpg"
            file_name = prefix + name
            images.append({"id": i + 1, "file_name": file_name, "width": width, "height": height})
            scene = _scene(rng, width, height)
            kinds: list[str] = []
            defect = defects and s_index == 0
            if defect and i == 0:
                kinds = ["face", "partly_outside", "outside"]
            elif defect and i == 1:
                kinds = ["face", "zero", "unknown_category"]
            elif defect and i == 2:
                kinds = ["missing", "missing"]
            elif defect and i == 3:
                kinds = ["corrupt"]
            else:
                kinds = ["face"] * faces_per_image
            slots = max(1, len(kinds))
            for k, kind in enumerate(kinds):
                label = int(rng.integers(0, 2))
                x = (k * width) // slots + 2
                y = int(rng.integers(0, max(1, height - face)))
                box = [float(x), float(y), float(face - 4), float(face - 4)]
                outcome = ("real", "fake")[label]
                category = label
                if kind == "partly_outside":
                    box = [float(width - face // 2), float(-face // 3), float(face), float(face)]
                elif kind == "outside":
                    box = [float(width + 5), float(height + 5), float(face), float(face)]
                    outcome = P.OUTSIDE_IMAGE
                elif kind == "zero":
                    box = [10.0, 10.0, 0.0, float(face)]
                    outcome = P.DEGENERATE_BOX
                elif kind == "unknown_category":
                    category = 7
                    outcome = P.UNKNOWN_CATEGORY
                elif kind == "missing":
                    outcome = P.MISSING_IMAGE
                elif kind == "corrupt":
                    outcome = P.UNREADABLE_IMAGE
                if kind in ("face", "partly_outside", "missing", "corrupt"):
                    patch = _face(rng, face, fake=label == 1)
                    scene.paste(patch, (int(box[0]), int(box[1])))
                annotations.append({"id": ann_id, "image_id": i + 1, "category_id": category,
                                    "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
                expected.append(SampleAnnotation(split, file_name, ann_id, outcome))
                ann_id += 1
            target = image_dir / name
            if defect and i == 2:
                continue  # listed in the annotations, absent on disk
            if defect and i == 3:
                noise = bytes(rng.integers(0, 256, 200, dtype=np.uint8))
                target.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + noise)
                continue
            scene.save(target, quality=92)
        if defects and s_index == 0:
            annotations.append({"id": ann_id, "image_id": 999, "category_id": 0, "bbox": [1, 1, 10, 10]})
            expected.append(SampleAnnotation(split, "", ann_id, P.UNKNOWN_IMAGE))
            ann_id += 1
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 0, "name": "Real"}, {"id": 1, "name": "Fake"}],
        }), encoding="utf-8")
    return expected
