"""``dftui demo-data``: write a small SYNTHETIC real/fake set into the default folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from dftui.core.demo import DEFAULT_DATA_ROOT, DEMO_N, DEMO_SIZE

SYNTHETIC_NOTE = (
    "The pictures are generated drawings of faces, not photographs: 'fake' ones carry a drawn "
    "up-sampling artefact. They are for trying dftui end to end, not for detecting real DeepFakes."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo-data",
        help="write a small SYNTHETIC real/fake data set to try dftui without downloading one",
        description=(
            "Write a small SYNTHETIC real/fake data set into OUT/train_cropped, OUT/val_cropped and "
            "OUT/test_dev_cropped, the folders `dftui train` and the dashboard use by default. "
            + SYNTHETIC_NOTE
            + " Folders that already hold files are left alone unless --force, which renames them "
            "to <name>.old-<time> (nothing is deleted)."
        ),
    )
    p.add_argument("--out", type=Path, default=DEFAULT_DATA_ROOT, help="data root (default: %(default)s)")
    p.add_argument("--n", type=int, default=DEMO_N,
                   help="training images per class; validation and test get half as many (default: %(default)s)")
    p.add_argument("--size", type=int, default=DEMO_SIZE, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="move non-empty target folders aside (renamed, not deleted) and write anyway")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dftui.cli import fail
    from dftui.core.demo import DemoDataError, make_demo_data

    try:
        result = make_demo_data(args.out, n=args.n, size=args.size, force=args.force, seed=args.seed)
    except DemoDataError as exc:
        from dftui.cli.advice import with_advice

        return fail(with_advice(str(exc), exc.fixes))
    for name, old in result.moved_aside.items():
        print(f"moved the existing {result.folders[name]} aside to {old}")
    print(f"wrote SYNTHETIC demo data ({args.size}x{args.size} px) under {result.root}:")
    for name, counts in result.counts.items():
        print(f"  {result.folders[name]}: {counts['real']} real + {counts['fake']} fake")
    print(SYNTHETIC_NOTE)
    default = Path(result.root) == DEFAULT_DATA_ROOT
    train = "dftui train" if default else f"dftui train --train {result.train_dir} --val {result.val_dir}"
    print(f"next: `{train}` (or open the dashboard: `dftui`)")
    return 0
