"""Watching runs through their event log: what attaching costs.

    .venv/bin/python benchmarks/attach_bench.py [--events 1000000] [--latency-events 40]
        [--idle-s 10] [--skip-train]

1. Long history: a finished run's log of --events batch events (~200 MB for a million) plus
   its epoch ends. Attaching draws the whole history: (a) the dashboard's Training screen
   (Textual headless, the app's real path: history read in a thread, thinned, fed to the
   charts and table) and (b) `dftui attach RUN --plain`. Wall time and peak RSS of a fresh
   process each (targets: <= 3 s, <= 300 MB).
2. Latency: a live run (run.json "running", this process's pid) gets batch events appended
   to its log, one every 0.3 s; the clock runs from the write (flushed) to the Training
   screen showing that batch. p50/p95/max (target p95 < 1 s).
3. Idle CPU: the dashboard attached to that run while it writes nothing but heartbeats,
   --idle-s seconds of process CPU time / wall time (target < 2 % of a core).
4. Event-log overhead on training: a real fit() (MobileNet-v2, 64 px, generated data) with
   the time spent inside the run recorder (event log, metrics, run.json, heartbeat thread
   excluded: it sleeps) measured around each call, as a share of the training time
   (target < 1 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine() -> str:
    from dftui.core.machine import benchmark_line

    return benchmark_line()


# -- logs ------------------------------------------------------------------------------------
def _started(run_dir: Path, epochs: int, steps: int) -> dict:
    from dftui.core.events import RunStarted

    return RunStarted(run_dir.name, str(run_dir), {"epochs": epochs, "backbone": "mobilenet_v2",
                      "batch_size": 32, "lr": 1e-4}, "cpu", "CPU", "fp32", False, steps * 32,
                      1000, {"real": 1, "fake": 1}, {"real": 1, "fake": 1}, steps, 0, 2_000_000,
                      0).to_dict()


def write_long_log(run_dir: Path, events: int, epochs: int = 20) -> int:
    """A finished run: RunStarted, `events` batch events over `epochs`, epoch ends, the end."""
    from dftui.core.events import EpochEnd, RunFinished

    run_dir.mkdir(parents=True, exist_ok=True)
    steps = events // epochs
    with open(run_dir / "events.jsonl", "w") as fh:
        fh.write(json.dumps({"event": "log_opened", "schema": 1, "pid": 1, "host": "x",
                             "t": time.time()}) + "\n")
        fh.write(json.dumps(_started(run_dir, epochs, steps)) + "\n")
        # The shape json.dumps gives BatchEnd.to_dict(), formatted directly (much faster).
        line = ('{"event": "batch_end", "phase": "train", "epoch": %d, "epochs": %d, '
                '"batch": %d, "batches": %d, "loss": %.6f, "images_per_s": 123.456789, '
                '"data_wait": 0.0123, "elapsed_s": %.3f, "eta_s": 1234.5, "rss_mb": 812.25, '
                '"gpu_mb": null}\n')
        for e in range(1, epochs + 1):
            fh.writelines(line % (e, epochs, b, steps, 1.0 / (1 + b / steps + e), e * 100.0 + b)
                          for b in range(1, steps + 1))
            fh.write(json.dumps(EpochEnd(e, epochs, 0.5, 0.4, 0.8, 0.8, 0.8, 0.8, 100.0, 300.0,
                                         0.01, e == 1, 1).to_dict()) + "\n")
        fh.write(json.dumps(RunFinished("finished", epochs, 1, 0.8, None, None, str(run_dir),
                                        2000.0).to_dict()) + "\n")
    info = {"run_id": run_dir.name, "status": "finished", "pid": 1, "host": socket.gethostname(),
            "backbone": "mobilenet_v2", "epochs": epochs, "epochs_completed": epochs,
            "started": "2026-01-01T00:00:00+00:00"}
    (run_dir / "run.json").write_text(json.dumps(info))
    return (run_dir / "events.jsonl").stat().st_size


def history_in_app(run_dir: str) -> None:
    """Child process: attach the Training screen to run_dir, print seconds and peak RSS."""
    from dftui.ui.app import DftuiApp
    from dftui.ui.widgets.run_view import RunView

    async def main() -> None:
        app = DftuiApp(load_torch=False)
        async with app.run_test(size=(120, 40)) as pilot:
            t0 = time.perf_counter()
            await app.attach_run(Path(run_dir))
            screen = app.screen
            while screen.final is None:
                await pilot.pause(0.01)
            await pilot.pause()  # the frame with it drawn
            seconds = time.perf_counter() - t0
            rows = len(screen.query_one(RunView).rows)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "rss_mb": rss, "rows": rows}))

    asyncio.run(main())


def measure_history(home: Path, events: int) -> None:
    run_dir = home / "runs" / "20260101-000000-mobilenet_v2"
    t0 = time.perf_counter()
    size = write_long_log(run_dir, events)
    print(f"history: {events:,} batch events, log {size / 1e6:.0f} MB "
          f"(written in {time.perf_counter() - t0:.1f} s)")
    env = {**os.environ, "DFTUI_HOME": str(home), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, __file__, "_history", str(run_dir)], env=env,
                         capture_output=True, text=True, check=True)
    app = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  dashboard attach: history drawn in {app['seconds']:.2f} s, peak RSS "
          f"{app['rss_mb']:.0f} MB ({app['rows']} epochs in the table)  [targets 3 s, 300 MB]")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dftui", "attach", run_dir.name, "--plain"], env=env,
                   stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    note = "" if rss > before else " (at most; an earlier child peaked higher)"
    print(f"  dftui attach --plain: {seconds:.2f} s, peak RSS {rss / 1024:.0f} MB{note}")


# -- live ------------------------------------------------------------------------------------
async def live(home: Path, n: int, idle_s: float) -> None:
    from dftui.core.eventlog import EventLogWriter
    from dftui.core.events import BatchEnd
    from dftui.ui.app import DftuiApp

    run_dir = home / "runs" / "20260101-000001-mobilenet_v2"
    run_dir.mkdir(parents=True)
    info = {"run_id": run_dir.name, "status": "running", "pid": os.getpid(),
            "host": socket.gethostname(), "detached": True, "backbone": "mobilenet_v2",
            "epochs": 1, "started": "2026-01-01T00:00:01+00:00"}
    (run_dir / "run.json").write_text(json.dumps(info))
    log = EventLogWriter(run_dir / "events.jsonl")
    log.write_header()
    log.write(_started(run_dir, 1, n))
    app = DftuiApp(load_torch=False)
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await app.attach_run(run_dir)
        screen = app.screen
        while screen.started is None:
            await pilot.pause(0.01)
        for i in range(1, n + 1):
            event = BatchEnd("train", 1, 1, i, n, 0.5, 100.0, 0.0, float(i), 10.0, 500.0)
            t0 = time.perf_counter()
            log.write(event.to_dict())
            while screen.last_batch is None or screen.last_batch.batch != i:
                await asyncio.sleep(0.005)
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.3)
        q = statistics.quantiles(latencies, n=20)
        print(f"latency event written -> Training screen updated, {n} events: p50 "
              f"{statistics.median(latencies) * 1000:.0f} ms, p95 {q[18] * 1000:.0f} ms, max "
              f"{max(latencies) * 1000:.0f} ms  [target p95 < 1000 ms]")
        # Idle: attached, the run writes only heartbeats (from a thread, as a run does).
        beat = threading.Event()

        def heartbeats() -> None:
            while not beat.wait(5.0):
                log.write({"event": "heartbeat", "t": time.time()})

        threading.Thread(target=heartbeats, daemon=True).start()
        await asyncio.sleep(1.0)
        c0, w0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(idle_s)
        cpu = (time.process_time() - c0) / (time.perf_counter() - w0)
        beat.set()
        print(f"dashboard CPU attached to a live run, idle: {cpu * 100:.2f} % of a core over "
              f"{idle_s:.0f} s  [target < 2 %]")
    log.close()


# -- training overhead -------------------------------------------------------------------------
def recorder_overhead(home: Path) -> None:
    import torch

    from dftui.core import runs as runs_mod
    from dftui.core.config import TrainConfig
    from dftui.core.synthetic import SyntheticSpec, make_dataset
    from dftui.core.train import fit

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    data = home / "data"
    make_dataset(data / "train", SyntheticSpec(n_per_class=128, size=64, seed=1))
    make_dataset(data / "val", SyntheticSpec(n_per_class=32, size=64, seed=2))
    spent = [0.0]
    calls = [0]
    original = runs_mod.RunRecorder.__call__

    def timed(self, event):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return original(self, event)
        finally:
            spent[0] += time.perf_counter() - t0
            calls[0] += 1

    runs_mod.RunRecorder.__call__ = timed  # type: ignore[method-assign]
    config = TrainConfig(train_dir=data / "train", val_dir=data / "val", epochs=2, batch_size=16,
                         img_size=64, pretrained="none", workers=0, device="cpu",
                         precision="fp32", out_dir=home / "w", runs_dir=home / "bench-runs")
    t0 = time.perf_counter()
    final = fit(config, lambda e: None)
    total = time.perf_counter() - t0
    runs_mod.RunRecorder.__call__ = original  # type: ignore[method-assign]
    ips = [json.loads(line)["images_per_s"] for line in
           (Path(final.run_dir) / "events.jsonl").read_text().splitlines()  # type: ignore[union-attr]
           if '"epoch_end"' in line]
    print(f"event-log overhead in training: {calls[0]} recorder calls took {spent[0] * 1000:.1f} ms "
          f"of a {total:.1f} s run = {spent[0] / total * 100:.3f} % (training "
          f"{', '.join(f'{v:.0f}' for v in ips)} images/s per epoch)  [target < 1 %]")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_history":
        history_in_app(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--latency-events", type=int, default=40)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="attach-bench-") as tmp:
        home = Path(tmp)
        os.environ["DFTUI_HOME"] = str(home)
        measure_history(home, args.events)
        asyncio.run(live(home, args.latency_events, args.idle_s))
        if not args.skip_train:
            recorder_overhead(home)


if __name__ == "__main__":
    main()
