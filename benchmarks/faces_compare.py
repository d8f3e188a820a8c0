"""Compare face-detector candidates whose model files ship inside their wheel.

Run: python benchmarks/faces_compare.py [--mtcnn-path DIR]

Images (all ship in scikit-image, so the comparison needs no download):
- astronaut (512x512 colour, one face) and camera (512x512 grey, one face);
- a 1920x1080 "group photo": three astronaut faces pasted at 90/150/260 px on a noisy background;
- a recall grid: the 100 faces of ``lfw_subset`` (25x25 crops, upscaled to 100 px) tiled with
  the 100 non-face patches of the same set, so false positives show too.

facenet-pytorch pins torch<2.3 and numpy<2, so it cannot be a dependency next to torch 2.14;
to measure it anyway install it with ``pip install --no-deps --target DIR facenet-pytorch`` and
pass ``--mtcnn-path DIR``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores (shared machine: other jobs were running)"


def images() -> dict[str, tuple[np.ndarray, list[Box]]]:
    from skimage import data

    astro = data.astronaut()
    cam = np.stack([data.camera()] * 3, axis=-1)
    face = Image.fromarray(astro).crop((150, 20, 280, 180))  # the astronaut's head
    rng = np.random.default_rng(0)
    bg = Image.fromarray(rng.integers(60, 200, (1080, 1920, 3), dtype=np.uint8)).resize((1920, 1080))
    group = bg.copy()
    truth: list[Box] = []
    for x, y, w in ((200, 300, 90), (800, 250, 150), (1400, 400, 260)):
        h = int(w * face.height / face.width)
        group.paste(face.resize((w, h)), (x, y))
        truth.append((x, y, x + w, y + h))
    lfw = data.lfw_subset()  # 200 x 25 x 25 floats: 100 faces then 100 non-faces
    tile = 120
    grid = np.full((10 * tile, 20 * tile, 3), 128, np.uint8)
    grid_truth: list[Box] = []
    for i, patch in enumerate(lfw):
        r, c = divmod(i, 20)
        img = Image.fromarray((patch * 255).astype(np.uint8)).resize((100, 100), Image.BICUBIC)
        y0, x0 = r * tile + 10, c * tile + 10
        grid[y0 : y0 + 100, x0 : x0 + 100] = np.asarray(img)[..., None]
        if i < 100:
            grid_truth.append((x0, y0, x0 + 100, y0 + 100))
    return {
        "astronaut": (astro, [(160, 40, 270, 170)]),
        "camera": (cam, [(195, 105, 262, 200)]),
        "group_1080p": (np.asarray(group), truth),
        "lfw_grid": (grid, grid_truth),
    }


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def opencv_haar() -> Callable[[np.ndarray], list[Box]]:
    """OpenCV's cascade as dftui runs it (dftui.core.faces: reduced copy, vote threshold)."""
    from dftui.core.faces import FaceDetector

    detector = FaceDetector()

    def detect(rgb: np.ndarray) -> list[Box]:
        return [f.box for f in detector.detect(Image.fromarray(rgb)).faces]

    return detect


def skimage_lbp() -> Callable[[np.ndarray], list[Box]]:
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.feature import Cascade

    cascade = Cascade(data.lbp_frontal_face_cascade_filename())

    def detect(rgb: np.ndarray) -> list[Box]:
        found = cascade.detect_multi_scale(
            img=rgb2gray(rgb), scale_factor=1.2, step_ratio=1, min_size=(40, 40), max_size=(400, 400)
        )
        return [(d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]) for d in found]

    return detect


def facenet_mtcnn(path: str) -> Callable[[np.ndarray], list[Box]]:
    import importlib
    import types

    sys.path.insert(0, path)
    # Only its weight download uses these; the detector runs from the weights in its wheel.
    for mod in ("requests", "requests.adapters", "tqdm", "tqdm.auto"):
        try:
            importlib.import_module(mod)
        except ImportError:
            stub = types.ModuleType(mod)
            stub.HTTPAdapter = stub.tqdm = object  # type: ignore[attr-defined]
            sys.modules[mod] = stub
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, min_face_size=40, device="cpu")

    def detect(rgb: np.ndarray) -> list[Box]:
        boxes, _ = mtcnn.detect(Image.fromarray(rgb))
        return [] if boxes is None else [tuple(int(v) for v in b) for b in boxes]

    return detect


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mtcnn-path", help="a folder holding facenet_pytorch (installed --no-deps)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print("machine:", machine())
    detectors: dict[str, Callable[[np.ndarray], list[Box]]] = {
        "opencv-haar": opencv_haar(),
        "skimage-lbp": skimage_lbp(),
    }
    if args.mtcnn_path:
        detectors["facenet-mtcnn"] = facenet_mtcnn(args.mtcnn_path)
    imgs = images()
    for name, detect in detectors.items():
        for img_name, (rgb, truth) in imgs.items():
            detect(rgb)  # warm
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                boxes = detect(rgb)
            ms = (time.perf_counter() - t0) * 1000 / args.repeat
            hits = sum(any(iou(t, b) >= 0.3 for b in boxes) for t in truth)
            false = sum(not any(iou(t, b) >= 0.3 for t in truth) for b in boxes)
            print(f"{name:14s} {img_name:12s} {rgb.shape[1]}x{rgb.shape[0]:<5d} "
                  f"found {hits}/{len(truth)} faces, {false} false boxes, {ms:8.1f} ms")


if __name__ == "__main__":
    main()
