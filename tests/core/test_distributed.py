"""The pieces of a distributed run that need no second process: how the data is cut into
rank shards, the launcher's checks before anything starts, and the record completed after
the processes end. (The runs themselves: tests/cli/test_distributed_cli.py.)"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from torch.utils.data import RandomSampler

from dftui.cli import main
from dftui.cli.launch import describe_failure, worker_argv
from dftui.core.distributed import Shard, ShardedShuffle
from dftui.core.runs import note_outcome
from dftui.core.train import _SeededSampler


def single_process_order(size: int, seed: int, epoch: int) -> list[int]:
    """What a one-process run draws: the loader's RandomSampler with the engine's seed."""
    generator = torch.Generator()
    generator.manual_seed(seed * 1000 + epoch)
    return list(RandomSampler(range(size), generator=generator))


@pytest.mark.parametrize("size,world,batch", [(32, 2, 4), (30, 4, 2), (7, 3, 1)])
def test_rank_steps_together_are_the_single_process_step(size, world, batch):
    """Step k of W ranks with b images each = step k of one process with batch W·b (the
    last step may carry the padding, repeats of the epoch's first images)."""
    for epoch in (1, 2):
        whole = single_process_order(size, 42, epoch)
        shards = []
        for rank in range(world):
            sampler = ShardedShuffle(size, rank, world, 42)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        assert len({len(s) for s in shards}) == 1  # equal length: equal step counts
        padded = whole + whole[: len(shards[0]) * world - size]
        for k in range(0, len(shards[0]), batch):
            together = sorted(i for s in shards for i in s[k : k + batch])
            assert together == sorted(padded[k * world : (k + batch) * world])
    # set_epoch changes the order; the same epoch gives the same order again
    a, b = ShardedShuffle(32, 0, 2, 42), ShardedShuffle(32, 0, 2, 42)
    a.set_epoch(1)
    b.set_epoch(2)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)


def test_validation_shards_cover_every_image_once():
    for size, world in [(18, 2), (5, 4), (3, 4)]:
        seen = sorted(i for rank in range(world) for i in Shard(size, rank, world))
        assert seen == list(range(size))


def test_augmentation_seed_follows_the_sample_not_the_rank():
    """Per-sample augmentation seeds are those of the single-process run at the same
    position of the epoch's order."""
    whole = _SeededSampler(list(range(10)), seed=7)
    whole.epoch = 3
    single = {int(i): i.seed for i in whole}
    for rank in range(2):
        part = _SeededSampler(list(range(rank, 10, 2)), seed=7, rank=rank, world=2)
        part.epoch = 3
        for index in part:
            assert index.seed == single[int(index)]


def _train(tmp_path: Path, *extra: str) -> list[str]:
    return ["train", "--train", str(tmp_path), "--val", str(tmp_path), "--device", "cpu",
            "--pretrained", "none", *extra]


def test_worker_command_line_drops_the_launcher_options(tmp_path):
    from dftui.cli import build_parser

    args = build_parser().parse_args(_train(tmp_path, "--batch-size", "8", "--freeze-bn",
                                            "--nproc-per-node", "2", "--rdzv-timeout", "9"))
    argv = worker_argv(args, args.train_parser, None)
    assert "--nproc-per-node" not in argv and "--rdzv-timeout" not in argv
    assert argv[0] == "train" and "--freeze-bn" in argv
    assert argv[argv.index("--batch-size") + 1] == "8"
    assert argv[argv.index("--device") + 1] == "cpu"
    again = build_parser().parse_args(argv)
    assert (again.batch_size, again.freeze_bn, again.nproc_per_node) == (8, True, 1)


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--nproc-per-node", str((os.cpu_count() or 1) + 1)], "cores; use --nproc-per-node"),
        (["--nproc-per-node", "2", "--batch-size", "7"], "use a multiple of 2"),
        (["--nnodes", "2"], "--rdzv-endpoint HOST:PORT is needed"),
        (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "127.0.0.1:1234"], "--node-rank must be 0 to 1"),
        (["--nproc-per-node", "2", "--rdzv-endpoint", "nohost"], "is not HOST:PORT"),
        (["--nproc-per-node", "2", "--sync-bn"], "needs CUDA GPUs"),
        (["--nproc-per-node", "2", "--balance", "sampler"],
         "class-balanced sampling is not supported with several processes (2); use class balancing 'loss'"),
    ],
)
def test_launch_refused_before_start(tmp_path, capsys, extra, expected):
    from dftui.core.synthetic import SyntheticSpec, make_dataset

    make_dataset(tmp_path, SyntheticSpec(n_per_class=2, size=32, seed=1))
    assert main(_train(tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_more_gpu_processes_than_gpus(tmp_path, capsys):
    from dftui.core.synthetic import SyntheticSpec, make_dataset

    make_dataset(tmp_path, SyntheticSpec(n_per_class=2, size=32, seed=1))
    args = _train(tmp_path, "--nproc-per-node", "2")
    args[args.index("cpu")] = "cuda"
    assert main(args) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_rendezvous_port_in_use(tmp_path, capsys):
    from dftui.core.synthetic import SyntheticSpec, make_dataset

    make_dataset(tmp_path, SyntheticSpec(n_per_class=2, size=32, seed=1))
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(_train(tmp_path, "--nproc-per-node", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"))
    assert code == 2
    err = capsys.readouterr().err
    assert f"port {port} is in use" in err and "--rdzv-endpoint" in err


class _Failure:
    def __init__(self, exitcode: int, message: str = "", pid: int = 99) -> None:
        self.exitcode, self.message, self.pid = exitcode, message, pid

    def signal_name(self) -> str:
        import signal

        return signal.Signals(-self.exitcode).name


def test_failed_ranks_reach_the_record(tmp_path):
    assert describe_failure(1, _Failure(-9)) == "rank 1 (pid 99) was killed by SIGKILL"
    assert describe_failure(3, _Failure(1, "rank 3: disk full")) == "rank 3: disk full"
    assert describe_failure(2, _Failure(1, "To enable traceback see: ...")).endswith("exited with code 1")

    run = tmp_path / "run"
    run.mkdir()
    assert note_outcome(run, "rank 1 (pid 99) was killed by SIGKILL") is None  # no record: never began
    # Rank 0 itself killed: its record still says running, with a pid that is gone.
    (run / "run.json").write_text(json.dumps({"status": "running", "pid": 2**22 + 12345}))
    assert note_outcome(run, "rank 0 (pid 7) was killed by SIGKILL") == "interrupted"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and "rank 0" in info["message"] and info["ended"]
    # A record rank 0 completed keeps its status and gains the cause.
    (run / "run.json").write_text(json.dumps({"status": "interrupted", "pid": 1}))
    assert note_outcome(run, "rank 1 (pid 8) was killed by SIGKILL") == "interrupted"
    assert "rank 1" in json.loads((run / "run.json").read_text())["message"]
    (run / "run.json").write_text("[damaged")
    assert note_outcome(run, "x") is None


def _rank_main(rank: int, port: int, train: str, val: str, out: str, results: str) -> None:
    """One rank of a 2-process run in a spawned process (no torchrun): rank 1 is given a
    training folder that does not exist."""
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    from dftui.core import distributed
    from dftui.core.config import TrainConfig
    from dftui.core.train import fit

    distributed.init_from_env("cpu")
    config = TrainConfig(train_dir=Path(train if rank == 0 else train + "-missing"), val_dir=Path(val),
                         epochs=1, batch_size=8, img_size=32, workers=0, pretrained="none",
                         device="cpu", out_dir=Path(out), runs_dir=Path(out) / "runs")
    final = fit(config)
    distributed.shutdown()
    Path(results, f"rank{rank}.json").write_text(json.dumps(final.to_dict(), default=str))


@pytest.mark.slow
def test_a_setup_failure_on_one_rank_stops_every_rank_with_its_rank(dataset, tmp_path):
    import torch.multiprocessing as mp

    from dftui.cli.launch import free_port

    mp.spawn(_rank_main, args=(free_port(), str(dataset["train"]), str(dataset["val"]),
                               str(tmp_path / "out"), str(tmp_path)), nprocs=2, join=True)
    finals = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for final in finals:
        assert final["event"] == "run_failed"
        assert final["message"].startswith("rank 1: training data:"), final["message"]
    # No record, not even an empty folder: it failed while scanning the data, as one
    # process would.
    assert not (tmp_path / "out" / "runs").exists() or not list((tmp_path / "out" / "runs").iterdir())


def _stop_rank_main(rank: int, port: int, train: str, val: str, out: str, results: str) -> None:
    """One rank of a 2-process run asked to stop (rank 0, as `dftui stop` does) after its
    first epoch; rank 0's end of run is slow (a slow disk), and each rank notes when it
    was done."""
    import os
    import time

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    from dftui.core import distributed
    from dftui.core import train as train_mod
    from dftui.core.config import TrainConfig
    from dftui.core.events import EpochEnd
    from dftui.core.train import StopFlag, fit

    done: dict[str, float] = {}
    release = train_mod._release

    def slow_release(trainer) -> None:
        time.sleep(1.5)
        release(trainer)
        done["rank0_written"] = time.time()

    train_mod._release = slow_release
    stop = StopFlag()

    def emit(event) -> None:
        if rank == 0 and isinstance(event, EpochEnd):
            stop.request("stopped")

    distributed.init_from_env("cpu")
    config = TrainConfig(train_dir=Path(train), val_dir=Path(val), epochs=5, batch_size=8,
                         img_size=32, workers=0, pretrained="none", device="cpu",
                         out_dir=Path(out), runs_dir=Path(out) / "runs")
    final = fit(config, emit, stop)
    done["returned"] = time.time()
    distributed.shutdown()
    Path(results, f"rank{rank}.json").write_text(json.dumps({**done, "status": final.status}))


@pytest.mark.slow
def test_an_agreed_stop_ends_every_rank_after_rank_0_has_written_the_run(dataset, tmp_path):
    """A rank that left as soon as the stop was agreed made torchrun's agent end the
    others (any exit but 0 is a failure to it: SIGTERM to the survivors) while rank 0 was
    still writing the record, and its closed connections could abort rank 0's gloo
    (SIGABRT, seen in CI). Every rank now waits for rank 0 at the end of an agreed run."""
    import torch.multiprocessing as mp

    from dftui.cli.launch import free_port

    mp.spawn(_stop_rank_main, args=(free_port(), str(dataset["train"]), str(dataset["val"]),
                                    str(tmp_path / "out"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["status"] == rank1["status"] == "stopped"
    assert rank1["returned"] >= rank0["rank0_written"] - 0.05
