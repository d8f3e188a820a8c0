"""Data-loader worker processes inside the running app, under every start method.

Textual replaces sys.stderr with an object whose fileno() is -1; the first 'spawn' or
'forkserver' process then fails to start multiprocessing's resource tracker ("bad value(s)
in fds_to_keep"). dftui.ui.workers.prepare_multiprocessing starts the tracker with a real
stderr in place. The first test shows the failure and the fix in a fresh interpreter (the
tracker is per process, so this one may already have it); the others train inside the app."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dftui.core.events import RunFinished
from dftui.core.synthetic import SyntheticSpec, make_dataset
from dftui.ui.app import DftuiApp
from dftui.ui.screens.training import TrainingScreen
from tests.ui.helpers import one_thread, run_config, wait_for

PROBE = r"""
import multiprocessing, sys

class Capture:  # what Textual puts in sys.stderr while the app runs
    def write(self, text): return len(text)
    def flush(self): pass
    def fileno(self): return -1

def child(): pass

if __name__ == "__main__":
    fix = sys.argv[1] == "fix"
    sys.stderr = Capture()
    if fix:
        from dftui.ui.workers import prepare_multiprocessing
        prepare_multiprocessing()
    ctx = multiprocessing.get_context(sys.argv[2])
    try:
        p = ctx.Process(target=child)
        p.start(); p.join()
        print("exit", p.exitcode)
    except Exception as exc:
        print("error", exc)
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_resource_tracker_fix_in_fresh_interpreter(tmp_path: Path, method: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)

    def run(mode: str) -> str:
        out = subprocess.run([sys.executable, str(probe), mode, method], capture_output=True,
                             text=True, timeout=120, env=os.environ.copy())
        return out.stdout.strip()

    assert "bad value(s) in fds_to_keep" in run("nofix")  # the failure is real...
    assert run("fix") == "exit 0"  # ...and the fix removes it


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Few images: each worker process imports torch, which is what costs time here.
    root = tmp_path_factory.mktemp("small")
    make_dataset(root / "train", SyntheticSpec(n_per_class=8, size=32, seed=3))
    make_dataset(root / "val", SyntheticSpec(n_per_class=4, size=32, seed=4))
    return {"train": root / "train", "val": root / "val"}


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
async def test_loader_workers_inside_app(small_set, standin_weights, tmp_path: Path,
                                         method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{method} is not available on this platform")
    one_thread()
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        config = run_config(small_set, standin_weights, tmp_path, epochs=1, workers=1,
                            mp_context=method)
        await app.start_training(config, detach=False)  # in the app's own process
        screen = app.screen
        assert isinstance(screen, TrainingScreen)
        # Inside the app stderr really is the capture object that breaks spawn/forkserver.
        assert sys.stderr.fileno() == -1
        await wait_for(pilot, lambda: screen.final is not None, timeout=240, what="the run")
        assert isinstance(screen.final, RunFinished), getattr(screen.final, "message", "")
        assert screen.final.status == "finished"
        assert screen.started is not None and screen.started.workers == 1
        assert Path(screen.final.weights_path).is_file()


def test_forked_worker_of_a_thread_pool_thread_exits_cleanly(small_set) -> None:
    """The dashboard trains in a ThreadPoolExecutor thread; a loader worker forked from there
    used to end with status 1 (concurrent.futures joined the worker's own thread at exit)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("fork is not available on this platform")
    import torch

    from dftui.core.data import (
        FaceDataset,
        Preprocessing,
        build_transform,
        make_loader,
        scan_folder,
    )

    pre = Preprocessing(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    dataset = FaceDataset(scan_folder(small_set["val"]).samples, build_transform(pre))

    def one_pass() -> list[int | None]:
        loader = make_loader(dataset, 4, False, 1, 0, torch.device("cpu"), mp_context="fork")
        iterator = iter(loader)
        for _ in iterator:
            pass
        workers = list(iterator._workers)  # type: ignore[attr-defined]
        iterator._shutdown_workers()  # type: ignore[attr-defined]
        for w in workers:
            w.join(timeout=30)
        return [w.exitcode for w in workers]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(one_pass).result(timeout=120) == [0]
