"""Shared fixtures: tiny generated data sets, an isolated home, and a pre-trained stand-in.

No test downloads anything: DFTUI_OFFLINE is set and TORCH_HOME points at an empty folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from dftui.core.synthetic import SyntheticSpec, make_dataset

IMG = 32

# Tests use tiny images, where intra-op threads gain little; one thread per process keeps
# parallel test runs (and CLI subprocesses) from oversubscribing a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a dependency
    pass


def pytest_report_header(config: pytest.Config) -> str:
    """The machine and the precision "auto" means here, at the top of every run: a result
    that differs between machines can then be read (see also DFTUI_PRECISION)."""
    from dftui.core.machine import describe_line

    return "dftui: " + describe_line()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    # -q hides the header; a red run still says which machine and precision it ran on.
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        from dftui.core.machine import describe_line

        terminalreporter.write_line("dftui: " + describe_line())


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The user's home, data and config folders for the whole session, set before any
    module-scoped fixture runs: whatever a test does (a bare ``monkeypatch.undo()`` drops
    ``isolated_home``'s settings too), nothing reads or writes the real user's files, and
    what the suite sees does not depend on what that home holds."""
    home = tmp_path_factory.mktemp("user-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("DFTUI_HOME", str(home / "dftui-session"))
        mp.setenv("TORCH_HOME", str(home / "torch"))
        mp.setenv("DFTUI_OFFLINE", "1")
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
                     # Textual draws monochrome under NO_COLOR: snapshots would differ.
                     "NO_COLOR"):
            mp.delenv(name, raising=False)
        # Dates on screen are local time: the same for every machine's time zone. (Tests of
        # the conversion set TZ themselves.)
        mp.setenv("TZ", "UTC")
        time.tzset()
        yield home
    time.tzset()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DFTUI_HOME", str(home / "dftui"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("DFTUI_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train/ (20 real + 20 fake) and val/ (10 + 10), 32 px, separable, PNG."""
    root = tmp_path_factory.mktemp("data")
    make_dataset(root / "train", SyntheticSpec(n_per_class=20, size=IMG, seed=1))
    make_dataset(root / "val", SyntheticSpec(n_per_class=10, size=IMG, seed=2))
    return {"root": root, "train": root / "train", "val": root / "val"}


@pytest.fixture(scope="session")
def standin_weights(request: pytest.FixtureRequest) -> Path:
    """A MobileNet-v2 ImageNet-format state_dict (1000-class head) standing in for the
    ImageNet file: pre-trained on a larger generated set, then its batch-norm statistics
    re-estimated. A random-init MobileNet-v2 in eval mode gives the same output for every
    tiny image, so tests that check learning start from this file (--pretrained PATH).
    Its features must separate real from fake on images it has not seen (about 100 % on the
    session's validation set), so that a few fine-tuning steps reach a high accuracy whatever
    the precision, seed or CPU arithmetic; hence the larger set and the longer pre-training."""
    import torch

    # Cached between test sessions (in .pytest_cache), keyed by what would change it.
    folder = request.config.cache.mkdir(f"dftui-standin-{torch.__version__}-{IMG}-v2")
    path = folder / "mobilenet_v2-standin.pth"
    if not path.is_file():
        made = make_standin(folder)
        assert made == path
    return path


STANDIN_STEPS = 300


def make_standin(folder: Path, size: int = IMG) -> Path:
    import torch
    import torchvision

    from dftui.core.backbones import BACKBONES
    from dftui.core.data import FaceDataset, Preprocessing, build_transform, scan_folder

    make_dataset(folder / "pre", SyntheticSpec(n_per_class=400, size=size, seed=7))
    spec = BACKBONES["mobilenet_v2"]
    pre = Preprocessing(size, spec.mean, spec.std, spec.interpolation)
    ds = FaceDataset(scan_folder(folder / "pre").samples, build_transform(pre))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(STANDIN_STEPS):
        idx = torch.randperm(len(x), generator=gen)[:32]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    # Re-estimate batch-norm statistics for the final weights (cumulative average).
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        for _ in range(3):
            model(x)
    for bn in bns:
        bn.momentum = 0.1
    path = folder / "mobilenet_v2-standin.pth"
    tmp = folder / "mobilenet_v2-standin.pth.tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)  # parallel test sessions never see a half-written file
    return path


def tiny_config(dataset: dict[str, Path], standin: Path, out: Path, **changes: Any) -> Any:
    """A one-epoch, batch 8, 32 px TrainConfig on ``dataset`` from the stand-in."""
    from dftui.core.config import TrainConfig

    base = TrainConfig(backbone="mobilenet_v2", train_dir=dataset["train"], val_dir=dataset["val"],
                       pretrained=str(standin), img_size=IMG, epochs=1, batch_size=8,
                       workers=0, out_dir=out / "weights", runs_dir=out / "runs")
    return base.with_(**changes) if changes else base


def train_tiny(dataset: dict[str, Path], standin: Path, out: Path) -> Path:
    """One epoch of fit() on the generated set from the stand-in: real weights, in seconds."""
    import threading

    from dftui.core.train import fit

    final = fit(tiny_config(dataset, standin, out), lambda e: None, threading.Event())
    assert getattr(final, "weights_path", None), final
    return Path(final.weights_path)  # type: ignore[union-attr]
