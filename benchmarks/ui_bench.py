"""Dashboard figures: time to first frame, UI event-loop delay while training, and training
speed inside the app against `dftui train` on the same generated data.

    .venv/bin/python benchmarks/ui_bench.py [--images 256] [--size 64] [--epochs 3]
        [--batch 32] [--workers auto] [--rounds 2] [--frames 3]

1. First frame: `dftui` is started in a pseudo-terminal (80x24) and the clock stops when
   the Setup screen's text first reaches the terminal. Median of --frames launches.
2. Event-loop delay: inside the app (Textual headless driver, the same event loop and
   message path as a terminal) a 20 ms interval timer records how late each tick runs
   while a run trains at full CPU; p50/p95/max of that lateness.
3. Throughput: images/s of the training epochs after the first (warm-up), read from the
   run records (metrics.csv), for `python -m dftui train` in a subprocess and for the same
   config started from the app. Rounds alternate (CLI, app, CLI, app ...) so a busy machine
   affects both; the ratio is the median app images/s over the median CLI images/s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import pty
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_FRAME_MARKER = b"Start training"
UI_CPU: list[tuple[float, float]] = []  # (UI thread CPU seconds, wall seconds) per app run


# -- 1. time to first frame -----------------------------------------------------------------
def first_frame_once(home: Path, timeout: float = 30.0) -> float:
    import fcntl
    import termios

    exe = Path(sys.executable).with_name("dftui")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dftui"]
    env = {**os.environ, "DFTUI_HOME": str(home), "TERM": "xterm-256color", "DFTUI_OFFLINE": "1"}
    t0 = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(cmd[0], cmd, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    seen = b""
    elapsed = float("nan")
    try:
        while time.monotonic() - t0 < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if b"\x1b[6n" in chunk or b"\x1b[c" in chunk:
                # Answer terminal queries (cursor position, device attributes) as a terminal would.
                os.write(fd, b"\x1b[1;1R\x1b[?62;4c")
            if FIRST_FRAME_MARKER in seen:
                elapsed = time.monotonic() - t0
                break
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            try:  # keep draining so the child is never blocked on a full pty
                if select.select([fd], [], [], 0.05)[0]:
                    os.read(fd, 65536)
            except OSError:
                pass
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    return elapsed


# -- 1b. quit latency and idle redraw, in a pty --------------------------------------------
# Setup's start line once torch has loaded (the data folders are valid). Textual writes only
# the cells that change, so the device list's "auto (cpu)" never reaches the pty in one piece.
TORCH_READY = b"ready: ctrl+s starts"
ANSI = re.compile(rb"\x1b\[[0-9;?<>]*[a-zA-Z~]")
SCREEN_KEYS = [("Setup", b"\x1bOQ"), ("Training", b"\x1bOR"), ("Classify", b"\x1bOS"),
               ("Runs", b"\x1b[15~"), ("Prepare", b"\x1b[17~"), ("Evaluate", b"\x1b[18~")]


class PtyApp:
    """`dftui` in an 80x24 pseudo-terminal that answers the terminal queries and counts the
    bytes the app writes."""

    def __init__(self, home: Path, cwd: Path, size: tuple[int, int] = (80, 24)) -> None:
        import fcntl
        import termios

        exe = Path(sys.executable).with_name("dftui")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dftui"]
        env = {**os.environ, "DFTUI_HOME": str(home), "TERM": "xterm-256color",
               "DFTUI_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        self.t0 = time.monotonic()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.chdir(cwd)
            os.execvpe(cmd[0], cmd, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.seen = b""
        self.status: int | None = None

    def pump(self, seconds: float) -> int:
        """Read for ``seconds``; the number of bytes the app wrote meanwhile."""
        end = time.monotonic() + seconds
        count = 0
        while self.status is None:
            left = end - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.02))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if chunk:
                    count += len(chunk)
                    self.seen = (self.seen + chunk)[-200_000:]
                    # Queries are left unanswered (textual-image then falls back after its
                    # timeout): an answer that arrives late is read as keys ("?" opens Help).
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = status
        return count

    def wait_for(self, pattern: re.Pattern[bytes] | bytes, timeout: float) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.status is None:
            self.pump(0.05)
            text = ANSI.sub(b"", self.seen)  # styles and cursor moves split the words
            found = pattern.search(text) if isinstance(pattern, re.Pattern) else pattern in text
            if found:
                return time.monotonic() - self.t0
        return float("nan")

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def quit_and_idle(home: Path, idle_s: float, settle_s: float) -> tuple[float, float, dict[str, float]]:
    """(seconds to torch loaded, quit latency after it, idle bytes/s per screen)."""
    from dftui.core.synthetic import SyntheticSpec, make_dataset

    cwd = home / "work"
    for name, n in (("train_cropped", 8), ("val_cropped", 4), ("test_dev_cropped", 4)):
        # Data in the default folders: no first-run dialog over the screens.
        make_dataset(cwd / "processed_data" / name, SyntheticSpec(n_per_class=n, size=32, seed=1))
    app = PtyApp(home, cwd)
    try:
        app.wait_for(FIRST_FRAME_MARKER, 30)
        torch_s = app.wait_for(TORCH_READY, 120)
        idle: dict[str, float] = {}
        for name, key in SCREEN_KEYS:
            app.send(key)
            app.pump(settle_s)  # the screen opens and draws; then nothing should change
            idle[name] = app.pump(idle_s) / idle_s
        app.send(SCREEN_KEYS[0][1])
        app.pump(settle_s)
        t0 = time.monotonic()
        app.send(b"\x11")  # ctrl+q: nothing runs, so it quits without asking
        while app.status is None and time.monotonic() - t0 < 30:
            app.pump(0.01)
        quit_s = time.monotonic() - t0 if app.status is not None else float("nan")
    finally:
        app.close()
        if os.environ.get("UI_BENCH_DUMP"):
            Path(os.environ["UI_BENCH_DUMP"]).write_bytes(app.seen)
    return torch_s, quit_s, idle


def machine() -> str:
    from dftui.core.machine import benchmark_line

    return benchmark_line()


# -- data ------------------------------------------------------------------------------------
def make_data(root: Path, images: int, size: int) -> dict[str, Path]:
    from dftui.core.synthetic import SyntheticSpec, make_dataset

    make_dataset(root / "train", SyntheticSpec(n_per_class=images // 2, size=size, seed=1))
    make_dataset(root / "val", SyntheticSpec(n_per_class=max(8, images // 8), size=size, seed=2))
    return {"train": root / "train", "val": root / "val"}


def epoch_ips(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [float(r["images_per_s"]) for r in rows]


def newest_run(runs: Path) -> Path:
    return max((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)


# -- 3a. `dftui train` -----------------------------------------------------------------------
def cli_run(data: dict[str, Path], args: argparse.Namespace, home: Path, out: Path) -> Path:
    cmd = [
        sys.executable, "-m", "dftui", "train", "--train", str(data["train"]), "--val",
        str(data["val"]), "--epochs", str(args.epochs), "--batch-size", str(args.batch),
        "--img-size", str(args.size), "--pretrained", "none", "--out", str(out), "--overwrite",
        "--device", args.device, "--plain",
    ]
    if args.workers != "auto":
        cmd += ["--workers", args.workers]
    env = {**os.environ, "DFTUI_HOME": str(home), "DFTUI_OFFLINE": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    return newest_run(home / "runs")


# -- 2 + 3b. inside the app --------------------------------------------------------------
async def app_run(data: dict[str, Path], args: argparse.Namespace, home: Path, out: Path
                  ) -> tuple[Path, list[float]]:
    os.environ["DFTUI_HOME"] = str(home)
    from dftui.core.config import TrainConfig
    from dftui.ui.app import DftuiApp

    config = TrainConfig(
        train_dir=data["train"], val_dir=data["val"], epochs=args.epochs, batch_size=args.batch,
        img_size=args.size, pretrained="none", out_dir=out, overwrite=True, device=args.device,
        workers=None if args.workers == "auto" else int(args.workers),
    )
    interval = 0.02
    lateness: list[float] = []
    ui_cpu = UI_CPU
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        last = [time.monotonic()]

        def tick() -> None:
            now = time.monotonic()
            lateness.append(max(0.0, now - last[0] - interval))
            last[0] = now

        await app.start_training(config)
        screen = app.screen
        last[0] = time.monotonic()
        app.set_interval(interval, tick)
        # The event loop runs on this thread: its CPU time is what the dashboard costs.
        cpu0, wall0 = time.thread_time(), time.monotonic()
        while screen.final is None:
            await pilot.pause(0.2)
        ui_cpu.append((time.thread_time() - cpu0, time.monotonic() - wall0))
        final = screen.final
    if getattr(final, "status", None) != "finished":
        raise SystemExit(f"the in-app run did not finish: {final}")
    return Path(final.run_dir), lateness


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="training images (half real)")
    parser.add_argument("--size", type=int, default=64, help="image size in pixels")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", default="auto", help="data-loader workers or 'auto'")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=2, help="CLI/app pairs")
    parser.add_argument("--frames", type=int, default=3, help="first-frame launches")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads for both sides (0: torch's default). On a small "
                        "shared machine 1 avoids OpenMP spinning against other processes")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle measured per screen")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds a screen is given to draw before the idle measurement")
    parser.add_argument("--skip-training", action="store_true",
                        help="only the first frame, quit latency and idle redraw")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the CLI subprocess inherits it

    tmp = Path(tempfile.mkdtemp(prefix="dftui-ui-bench-"))
    print(f"machine: {machine()}")

    frames = [first_frame_once(tmp / f"ff{i}") for i in range(args.frames)]
    good = [f for f in frames if f == f]
    print(f"first frame of `dftui` (80x24 pty): median {statistics.median(good):.3f} s "
          f"(runs: {', '.join(f'{f:.3f}' for f in frames)})" if good else
          "first frame: not seen (no Setup text within the timeout)")

    torch_s, quit_s, idle = quit_and_idle(tmp / "quit", args.idle, args.settle)
    print(f"torch, torchvision and timm loaded {torch_s:.2f} s after launch; quit (ctrl+q to "
          f"process exit) after that: {quit_s:.3f} s (target 0.3 s)")
    print("idle redraw, bytes/s written to the terminal with nothing changing (target 0): "
          + ", ".join(f"{name} {rate:.0f}" for name, rate in idle.items()))
    if args.skip_training:
        return

    data = make_data(tmp / "data", args.images, args.size)
    all_lateness: list[float] = []
    cli_ips: list[float] = []
    app_ips: list[float] = []
    for r in range(args.rounds):
        run = cli_run(data, args, tmp / f"cli{r}", tmp / f"wcli{r}")
        cli_ips += epoch_ips(run)[1:]
        run, lateness = asyncio.run(app_run(data, args, tmp / f"app{r}", tmp / f"wapp{r}"))
        app_ips += epoch_ips(run)[1:]
        all_lateness += lateness
    ms = [x * 1000 for x in all_lateness]
    print(f"UI event-loop delay while training ({len(ms)} ticks of a 20 ms timer): "
          f"p50 {pct(ms, 0.5):.1f} ms, p95 {pct(ms, 0.95):.1f} ms, max {max(ms):.1f} ms")
    # Medians: on a shared machine single epochs swing with other people's load.
    cli_mean = statistics.median(cli_ips)
    app_mean = statistics.median(app_ips)
    print(f"training images/s (median of the epochs after the first): dftui train {cli_mean:.1f} "
          f"(epochs: {', '.join(f'{x:.0f}' for x in cli_ips)}), app {app_mean:.1f} "
          f"(epochs: {', '.join(f'{x:.0f}' for x in app_ips)})")
    cpu = sum(c for c, _ in UI_CPU) / max(1e-9, sum(w for _, w in UI_CPU))
    print(f"UI thread CPU while training (event loop, rendering, the 20 ms probe timer): "
          f"{cpu * 100:.1f}% of one core")
    print(f"app / dftui train throughput ratio: {app_mean / cli_mean:.3f}")
    print(f"({args.images} images {args.size}px, batch {args.batch}, {args.epochs} epochs, "
          f"workers {args.workers}, device {args.device}, torch threads "
          f"{args.threads or 'default'}, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
