"""Decode + resize + normalise cost per image, for 224 (bilinear, MobileNet-v2) and 299
(bicubic, Xception) inputs, from generated 256-400 px face-crop JPEGs.

    .venv/bin/python benchmarks/bench_decode.py [--n 60] [--data DIR]

Compares the reference path (PIL decode, PIL resize, ToTensor, Normalize), PIL with JPEG
draft mode, PIL decode + tensor resize, and torchvision.io.decode_jpeg + tensor resize, and
prints how far each result is from the reference pixels (after normalisation)."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import io as tvio
from torchvision import transforms as T
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jpeg_data import make_jpeg_dataset  # noqa: E402

from dftui.core.data import ImageTransform, Preprocessing, load_rgb, load_tensor  # noqa: E402

CASES = {
    224: ("bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    299: ("bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def pipelines(size: int):
    interp_name, mean, std = CASES[size]
    interp = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[interp_name]
    ref_t = T.Compose([T.Resize((size, size), interpolation=interp), T.ToTensor(), T.Normalize(mean, std)])
    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)

    def reference(path: str) -> torch.Tensor:  # the reference train.py: ImageFolder's loader
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        return ref_t(img)

    def pil_draft(path: str) -> torch.Tensor:  # dftui before: load_rgb with draft + ToTensor
        return ref_t(load_rgb(path, size))

    def pil_resize_u8(path: str) -> torch.Tensor:  # PIL resize, then uint8 -> float in torch
        img = load_rgb(path, size).resize((size, size), Image.Resampling[interp_name.upper()])
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)
        return (x.float().div_(255) - mean_t).div_(std_t)

    def tv_decode(path: str) -> torch.Tensor:  # libjpeg-turbo via torchvision, tensor resize
        data = tvio.read_file(path)
        x = tvio.decode_jpeg(data, mode=tvio.ImageReadMode.RGB)
        x = F.resize(x, [size, size], interpolation=interp, antialias=True)
        return (x.float().div_(255) - mean_t).div_(std_t)

    def tv_decode_image(path: str) -> torch.Tensor:
        x = tvio.decode_image(path, mode=tvio.ImageReadMode.RGB)
        x = F.resize(x, [size, size], interpolation=interp, antialias=True)
        return (x.float().div_(255) - mean_t).div_(std_t)

    v2_t = v2.Compose([v2.PILToTensor(), v2.Resize((size, size), interpolation=interp, antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def pil_v2(path: str) -> torch.Tensor:
        return v2_t(load_rgb(path, size))

    dftui_t = ImageTransform(Preprocessing(size, mean, std, interp_name))

    def dftui_now(path: str) -> torch.Tensor:  # dftui's FaceDataset: load_tensor + ImageTransform
        return dftui_t(load_tensor(path, size))

    return {
        "reference (PIL+ToTensor)": reference,
        "dftui load_tensor+ImageTransform": dftui_now,
        "PIL draft+ToTensor": pil_draft,
        "PIL resize+torch normalise": pil_resize_u8,
        "PIL decode+v2 tensor resize": pil_v2,
        "tv decode_jpeg+tensor resize": tv_decode,
        "tv decode_image+tensor resize": tv_decode_image,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60, help="images per class")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in a data-loader worker
    root = args.data or Path(tempfile.gettempdir()) / "dftui-bench-decode"
    make_jpeg_dataset(root, args.n)
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    print(f"{len(paths)} JPEGs, 256-400 px, from {root}; 1 thread")
    for size in CASES:
        fns = pipelines(size)
        refs = [fns["reference (PIL+ToTensor)"](p) for p in paths]
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.rounds):  # interleaved so background load hits all alike
            for name, fn in fns.items():
                t0 = time.perf_counter()
                for p in paths:
                    fn(p)
                times[name].append((time.perf_counter() - t0) / len(paths) * 1000)
        print(f"\n{size}px ({CASES[size][0]}):  ms/image (best of {args.rounds})   |diff| vs reference: mean / max")
        base = min(times["reference (PIL+ToTensor)"])
        for name, fn in fns.items():
            diffs = [(fn(p) - r).abs() for p, r in zip(paths, refs, strict=True)]
            mean_d = statistics.fmean(float(d.mean()) for d in diffs)
            max_d = max(float(d.max()) for d in diffs)
            best = min(times[name])
            print(f"  {name:34s} {best:6.2f} ms  x{base / best:4.2f}   {mean_d:.4f} / {max_d:.3f}")


if __name__ == "__main__":
    main()
