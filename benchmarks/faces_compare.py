"""Compare face-detector candidates whose model files ship inside their wheel.

Run: python benchmarks/faces_compare.py [--mtcnn-path DIR]
     python benchmarks/faces_compare.py --settings legacy,current[,alt2:1.25:4 ...]

``--settings`` compares dftui's own detector under several settings side by side, on the same
pictures plus a row of small faces (46-110 px heads on a 1080p and a 720p picture: the size
range where a coarser search loses faces first) and 45 face-free backgrounds (25 at 1280x720,
20 at 800x600) for false boxes. ``legacy`` is what dftui used before the faster search
(faces.LEGACY_CONFIG), ``current`` its default, ``CASCADE:STEP:VOTES`` any other; the settings
take turns image by image, so a load change on a shared machine hits them alike. Times are wall
and CPU (process) time, the median of --repeat.

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


def small_faces(width: int, height: int, widths: list[int], seed: int) -> tuple[np.ndarray, list[Box]]:
    """Heads of the given widths (the face inside is about 0.85 of it) on a smooth background."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from tests.media import background, head

    img = background(width, height, seed=seed)
    src = head()
    truth: list[Box] = []
    x = 60
    for i, w in enumerate(widths):
        h = round(w * src.height / src.width)
        if x + w > width - 20:
            x = 60
        y = 80 + (i * 137) % (height - h - 100)
        img.paste(src.resize((w, h), Image.BILINEAR), (x, y))
        truth.append((x, y, x + w, y + h))
        x += w + 60
    return np.asarray(img), truth


def settings_images() -> dict[str, tuple[np.ndarray, list[Box]]]:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from tests.media import group_photo

    out = images()
    photo, boxes = group_photo(1920, 1080)  # benchmarks/faces_bench.py's photo
    out["bench_1080p"] = (np.asarray(photo), boxes)
    sizes = [46, 50, 54, 58, 62, 66, 72, 80, 90, 100, 110]
    out["small_1080p"] = small_faces(1920, 1080, sizes, 3)
    out["small_720p"] = small_faces(1280, 720, sizes, 4)
    return out


def backgrounds() -> list[np.ndarray]:
    from tests.media import background

    rng = np.random.default_rng(1)
    smooth = [np.asarray(background(1280, 720, seed=s)) for s in range(20)]
    smooth += [np.asarray(background(800, 600, seed=s)) for s in range(20)]
    return smooth + [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(5)]


def parse_setting(spec: str):  # noqa: ANN201 - a DetectorConfig
    from dftui.core.faces import LEGACY_CONFIG, DetectorConfig

    if spec == "legacy":
        return LEGACY_CONFIG
    if spec == "current":
        return DetectorConfig()
    cascade, step, votes = spec.split(":")
    return DetectorConfig(cascade=cascade, scale_step=float(step), min_votes=int(votes))


def compare_settings(specs: list[str], repeat: int) -> None:
    from dftui.core.faces import FaceDetector

    detectors = {spec: FaceDetector(parse_setting(spec)) for spec in specs}
    for spec, det in detectors.items():
        c = det.config
        print(f"{spec}: cascade {c.cascade}, step {c.scale_step}, min votes {c.min_votes}, min face {c.min_size} px")
    imgs = settings_images()
    totals = {spec: [0, 0, 0.0, 0.0] for spec in specs}  # hits, faces, wall ms, cpu ms
    for img_name, (rgb, truth) in imgs.items():
        pic = Image.fromarray(rgb)
        line = [f"{img_name:12s} {rgb.shape[1]}x{rgb.shape[0]:<5d}"]
        for spec, det in detectors.items():
            det.detect(pic)  # warm
            walls, cpus = [], []
            for _ in range(repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                boxes = [f.box for f in det.detect(pic).faces]
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            wall, cpu = sorted(walls)[repeat // 2] * 1000, sorted(cpus)[repeat // 2] * 1000
            hits = [any(iou(t, b) >= 0.3 for b in boxes) for t in truth]
            false = sum(not any(iou(t, b) >= 0.3 for t in truth) for b in boxes)
            missed = [t[2] - t[0] for t, h in zip(truth, hits, strict=True) if not h]
            extra = f" missed {missed}" if img_name.startswith("small") and missed else ""
            line.append(f"{spec}: {sum(hits)}/{len(truth)}, {false} false, "
                        f"{wall:.0f} ms wall / {cpu:.0f} ms CPU{extra}")
            tot = totals[spec]
            tot[0] += sum(hits)
            tot[1] += len(truth)
            tot[2] += wall
            tot[3] += cpu
        print(" | ".join(line), flush=True)
    bgs = [Image.fromarray(b) for b in backgrounds()]
    line = [f"{'backgrounds':12s} {len(bgs)} pictures"]
    for spec, det in detectors.items():
        t0, c0 = time.perf_counter(), time.process_time()
        false = sum(len(det.detect(b).faces) for b in bgs)
        wall = (time.perf_counter() - t0) * 1000 / len(bgs)
        cpu = (time.process_time() - c0) * 1000 / len(bgs)
        line.append(f"{spec}: {false} false boxes, {wall:.0f} ms wall / {cpu:.0f} ms CPU a picture")
    print(" | ".join(line))
    for spec, (hits, n, wall, cpu) in totals.items():
        print(f"total {spec}: {hits}/{n} faces found, {wall:.0f} ms wall, {cpu:.0f} ms CPU over the pictures")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mtcnn-path", help="a folder holding facenet_pytorch (installed --no-deps)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--settings", help="compare dftui's detector settings instead: legacy,current,CASCADE:STEP:VOTES")
    args = ap.parse_args()
    if args.settings:
        import cv2

        cv2.setNumThreads(2)
        print("machine:", machine(), f"- load average {os.getloadavg()[0]:.1f}")
        compare_settings(args.settings.split(","), args.repeat)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return
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
