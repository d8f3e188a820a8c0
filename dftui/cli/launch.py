"""``dftui train --nproc-per-node N``: one training process per device, under torchrun.

The launcher checks what it can before any process starts (devices, batch split, the
rendezvous port), makes the run folder (on the machine with node rank 0), then hands over
to ``torch.distributed.run`` - PyTorch's elastic launcher, with its own option names - which
starts ``python -m dftui train ...`` once per device. Those processes join the process
group (dftui.core.distributed) and run ``fit()``; rank 0 writes the run record. When they
end, the launcher completes the record with what only it sees: a rank killed by a signal,
or the message a rank on this machine failed with."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from dftui.core.errors import describe_error

# Options of the launcher itself, not passed on to the training processes.
LAUNCH_DESTS = ("nproc_per_node", "nnodes", "node_rank", "rdzv_endpoint", "rdzv_timeout")
DEFAULT_RDZV_TIMEOUT_S = 300
RUN_DIR_ENV = "DFTUI_RUN_DIR"  # the record folder the launcher made, for rank 0
PREPARED_ENV = "DFTUI_LAUNCH_RUN_DIR"  # a folder prepared by `--detach` (core/background.py)
LAUNCHER_PID_ENV = "DFTUI_LAUNCHER_PID"
SETTINGS_ENV = "DFTUI_LAUNCH_SETTINGS"  # rank 0 reads the settings from this prepared folder
BACKEND_ENV = "DFTUI_DIST_BACKEND"
CPP_LOG_ENV = "TORCH_CPP_LOG_LEVEL"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "several GPUs or machines (torchrun)",
        "One process per device; --batch-size is the global batch, split evenly over all "
        "processes. Options named as torchrun's.",
    )
    g.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="processes on this machine, one per GPU (or CPU processes with --device cpu)")
    g.add_argument("--nnodes", type=int, default=1, metavar="N", help="machines taking part (default: 1)")
    g.add_argument("--node-rank", type=int, default=0, metavar="R",
                   help="this machine's number, 0 to nnodes-1; 0 holds the run record and weights")
    g.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                   help="address of the machine with --node-rank 0, where all meet (required with "
                        "--nnodes > 1; default on one machine: a free port on 127.0.0.1)")
    g.add_argument("--rdzv-timeout", type=int, default=DEFAULT_RDZV_TIMEOUT_S, metavar="SECONDS",
                   help="how long to wait for every machine to join (default: %(default)s)")
    g.add_argument("--sync-bn", action="store_true",
                   help="synchronised batch norm across processes (CUDA GPUs only)")
    g.add_argument("--freeze-bn", action="store_true",
                   help="keep batch-norm statistics fixed (eval mode) while training")


def wanted(args: argparse.Namespace) -> bool:
    """A launch is asked for, and this process is not already one of torchrun's."""
    # Not dftui.core.distributed.env_info: that imports torch, which must wait (see
    # quiet_store_logs).
    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    return (args.nproc_per_node != 1 or args.nnodes != 1) and not under_torchrun


class LaunchError(Exception):
    """A launch that cannot work; the message says what to change."""


def worker_argv(args: argparse.Namespace, parser: argparse.ArgumentParser, resume: Path | None) -> list[str]:
    """The ``train`` command line each process runs: the options given, minus the launcher's."""
    out = ["train"]
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk of its options
        dest = action.dest
        if not action.option_strings or dest in LAUNCH_DESTS or dest in ("help", "resume", "detach"):
            continue
        value = getattr(args, dest, action.default)
        if value == action.default or value is None:
            continue
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            out.append(flag)
        elif isinstance(action, argparse.BooleanOptionalAction):  # --x / --no-x
            out.append(action.option_strings[0] if value else action.option_strings[1])
        else:
            out += [flag, str(value)]
    if resume is not None:
        out += ["--resume", str(resume)]
    return out


def parse_endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LaunchError(f"rendezvous endpoint {text!r} is not HOST:PORT (e.g. 10.0.0.1:29500)")
    return host.strip("[]"), int(port)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port_free(port: int) -> None:
    """The rendezvous store listens on every interface of node 0; fail now if it cannot."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError as exc:
            raise LaunchError(
                f"port {port} is in use on this machine ({describe_error(exc)}; another run?); "
                "choose another port in --rdzv-endpoint"
            ) from None


def check_devices(device: str, nproc: int) -> str:
    """The backend for ``device``; LaunchError when this machine cannot host ``nproc``."""
    import torch

    if device == "mps":
        raise LaunchError("Apple MPS has no multi-process backend; use --device cpu for several processes")
    if device.startswith("cuda:"):
        raise LaunchError(
            f"device {device!r}: with --nproc-per-node each process takes its own GPU "
            "(cuda:0, cuda:1, ...); use --device cuda (limit them with CUDA_VISIBLE_DEVICES)"
        )
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise LaunchError("--device cuda, but this machine has no CUDA GPU; use --device cpu")
        if nproc > count:
            raise LaunchError(
                f"{nproc} processes asked on this machine, but it has {count} CUDA "
                f"GPU{'s' if count > 1 else ''}; use --nproc-per-node {count} or fewer"
            )
        return "nccl"
    cores = os.cpu_count() or 1
    if nproc > cores:
        raise LaunchError(
            f"{nproc} CPU processes asked on this machine, but it has {cores} cores; use "
            f"--nproc-per-node {cores} or fewer"
        )
    return "gloo"


def quiet_store_logs() -> str | None:
    """The store's C++ side logs each failed connection attempt with a stack trace; the
    launcher reports the outcome in one line instead. Must run before torch loads (it reads
    the level then); returns the user's own setting, which the training processes get back."""
    user = os.environ.get(CPP_LOG_ENV)
    if "torch" not in sys.modules and user is None:
        os.environ[CPP_LOG_ENV] = "FATAL"
    return user


def launch(
    args: argparse.Namespace, config: Any, resume_dir: Path | None, parser: argparse.ArgumentParser,
    user_cpp_log: str | None = None,
) -> int:
    from dftui.cli import fail

    try:
        plan = _plan(args, config)
    except LaunchError as exc:
        return fail(str(exc))
    run_dir: Path | None = None
    prepared = os.environ.pop(PREPARED_ENV, None)
    if args.node_rank == 0:
        if prepared:
            run_dir = Path(prepared).resolve()  # made, with its run.json, by --detach
        elif resume_dir is not None:
            run_dir = Path(resume_dir).resolve()
        else:
            from dftui.core.runs import new_run_dir, runs_root

            root = runs_root(config.runs_dir)
            try:
                run_dir = new_run_dir(root, config.backbone).resolve()
            except OSError as exc:
                return fail(f"cannot create the run record folder in {root} ({describe_error(exc)}); "
                            "set DFTUI_HOME to a writable folder")
    argv = worker_argv(args, parser, run_dir if resume_dir is not None else None)
    if resume_dir is not None and args.node_rank != 0:
        argv += ["--resume", str(args.resume)]  # only rank 0 reads it
    env: dict[str, str | None] = {BACKEND_ENV: plan["backend"], CPP_LOG_ENV: user_cpp_log,
                                  LAUNCHER_PID_ENV: str(os.getpid())}
    if run_dir is not None and resume_dir is None:
        env[RUN_DIR_ENV] = str(run_dir)
    if prepared:
        env[SETTINGS_ENV] = str(run_dir)
    if "OMP_NUM_THREADS" not in os.environ:
        # torchrun would set 1; a CPU run on a many-core machine wants its share.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.nproc_per_node))
    failures, error = _run_torchrun(plan, argv, env)
    return _outcome(run_dir, failures, error)


def _plan(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    nproc, nnodes, node_rank = args.nproc_per_node, args.nnodes, args.node_rank
    if nproc < 1:
        raise LaunchError(f"--nproc-per-node must be at least 1 (got {nproc})")
    if nnodes < 1:
        raise LaunchError(f"--nnodes must be at least 1 (got {nnodes})")
    if not 0 <= node_rank < nnodes:
        raise LaunchError(f"--node-rank must be 0 to {nnodes - 1} (got {node_rank})")
    if args.rdzv_timeout <= 0:
        raise LaunchError(f"--rdzv-timeout must be more than 0 seconds (got {args.rdzv_timeout})")
    device = config.device  # on other machines: from their own command line (args)
    backend = check_devices(device, nproc)
    world = nproc * nnodes
    if config.batch_size % world:
        raise LaunchError(
            f"batch size {config.batch_size} is the global batch and does not split evenly over "
            f"{world} processes; use a multiple of {world}"
        )
    from dftui.core.balance import processes_problem

    recipe_problem = processes_problem(config.balance, world)
    if recipe_problem:
        raise LaunchError(recipe_problem)
    if config.sync_bn and backend != "nccl":
        raise LaunchError(
            "synchronised batch norm needs CUDA GPUs (NCCL); on the CPU leave it off: the "
            "batch-norm statistics are then averaged over the processes at each epoch end"
        )
    if args.rdzv_endpoint:
        host, port = parse_endpoint(args.rdzv_endpoint)
    elif nnodes > 1:
        raise LaunchError(
            "--rdzv-endpoint HOST:PORT is needed with --nnodes > 1: the address of the machine "
            "started with --node-rank 0, the same on every machine"
        )
    else:
        host, port = "127.0.0.1", free_port()
    if node_rank == 0:
        check_port_free(port)
    return {"nproc": nproc, "nnodes": nnodes, "node_rank": node_rank, "world": world,
            "host": host, "port": port, "backend": backend, "timeout": args.rdzv_timeout}


def _run_torchrun(
    plan: dict[str, Any], argv: list[str], env: dict[str, str | None]
) -> tuple[dict[int, Any], str | None]:
    """Run the processes; (failed ranks, launcher error)."""
    import logging

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # The elastic agent logs every step and failure; dftui reports the outcome itself. (Its
    # loggers set their own level when made, so each is quietened, not only the parent.)
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    options = torchrun.get_args_parser().parse_args([
        "--nnodes", str(plan["nnodes"]),
        "--nproc-per-node", str(plan["nproc"]),
        "--node-rank", str(plan["node_rank"]),
        "--rdzv-backend", "static",
        "--rdzv-endpoint", f"{plan['host']}:{plan['port']}",
        "--rdzv-conf", f"timeout={plan['timeout']}",
        # A failed rank ends the run: a restart would begin again from scratch, not resume.
        "--max-restarts", "0",
        "--monitor-interval", "0.2",
        "--module", "dftui", *argv,
    ])
    saved = {key: os.environ.get(key) for key in env}
    _set_env(env)
    try:
        torchrun.run(options)
    except ChildFailedError as exc:
        return dict(exc.failures), None
    except (KeyboardInterrupt, SignalException):
        # Ctrl+C or a SIGTERM reached the launcher: torchrun passed it on to every rank,
        # which stop together at the next step (see fit) and record "interrupted".
        return {}, "interrupted"
    except Exception as exc:  # noqa: BLE001 - rendezvous and store errors come in many types
        return {}, _rendezvous_message(exc, plan)
    finally:
        _set_env(saved)
    return {}, None


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _rendezvous_message(exc: BaseException, plan: dict[str, Any]) -> str:
    from dftui.core.errors import first_line

    text = first_line(exc)
    where = f"{plan['host']}:{plan['port']}"
    if plan["node_rank"] == 0:
        return (
            f"the rendezvous at {where} did not complete within {plan['timeout']} s ({text}); "
            f"start the other machine(s) with --nnodes {plan['nnodes']}, --node-rank "
            f"{'1' if plan['nnodes'] == 2 else '1 to ' + str(plan['nnodes'] - 1)} and "
            f"--rdzv-endpoint {where}"
        )
    return (
        f"could not join the rendezvous at {where} within {plan['timeout']} s ({text}); "
        "start the machine with --node-rank 0 first, and check that the address and port are "
        "reachable from here"
    )


def describe_failure(rank: int, failure: Any) -> str:
    if failure.exitcode < 0:
        return f"rank {rank} (pid {failure.pid}) was killed by {failure.signal_name()}"
    message = failure.message if isinstance(failure.message, str) else ""
    if not message or message.startswith("To enable traceback"):
        return f"rank {rank} (pid {failure.pid}) exited with code {failure.exitcode}"
    return message if message.startswith("rank ") else f"rank {rank}: {message}"


def _outcome(run_dir: Path | None, failures: dict[int, Any], error: str | None) -> int:
    from dftui.cli import fail
    from dftui.core.runs import note_outcome

    # Ranks that ended by a signal, or with a message of their own; a rank that stopped
    # because a peer was lost exits with 130 and says nothing new.
    # SIGTERM/SIGINT are the agent's own shutdown of the survivors, not a cause.
    causes = [
        describe_failure(rank, f) for rank, f in sorted(failures.items())
        if f.exitcode not in (130, 2, -signal.SIGTERM, -signal.SIGINT)
    ]
    status = None
    if run_dir is not None:
        _end_unstarted(run_dir, "; ".join(causes) or error)
        status = note_outcome(run_dir, "; ".join(causes) or error)
        if status is None:
            try:
                run_dir.rmdir()  # made for the run, which never began: leave no empty record
            except OSError:
                pass
    if error == "interrupted":
        status = status or "interrupted"
    elif error is not None:
        return fail(error)
    if status is None:
        if causes:
            return fail("; ".join(causes))
        codes = {f.exitcode for f in failures.values()}
        if 130 in codes:
            status = "interrupted"
        elif codes:
            return fail(f"the training processes failed (exit codes {sorted(codes)})", 1)
        else:
            return 0
    if status == "finished":
        return 0
    if status in ("interrupted", "stopped"):
        if causes:
            sys.stderr.write(f"dftui: {'; '.join(causes)}\n")
        if run_dir is not None:
            sys.stderr.write(
                f"dftui: the run was {status}; resume with `dftui train --resume {run_dir}` "
                "(add --nproc-per-node N for several processes)\n"
            )
        else:
            sys.stderr.write(f"dftui: the run was {status}; resume it on the machine with node rank 0\n")
        return 130
    if causes:
        return fail("; ".join(causes), 1)
    return 1


def _end_unstarted(run_dir: Path, cause: str | None) -> None:
    """A record prepared by --detach that rank 0 never took over (its pid is still the
    launcher's): the run never began; record why, with an end record for watchers."""
    from dftui.core.background import _record_end
    from dftui.core.events import RunFailed
    from dftui.core.untrusted import read_json

    try:
        info = read_json(run_dir / "run.json", expect=None)  # untrusted: deep nesting too
    except (OSError, ValueError):
        return
    if isinstance(info, dict) and info.get("status") == "running" and info.get("pid") == os.getpid():
        _record_end(run_dir, RunFailed(message=cause or "the training processes did not start",
                                       run_dir=str(run_dir)))


def launcher_argv(args: argparse.Namespace) -> list[str]:
    """The launcher's own options, as given (for a detached launcher)."""
    return ["--nproc-per-node", str(args.nproc_per_node), "--nnodes", str(args.nnodes),
            "--node-rank", str(args.node_rank), "--rdzv-timeout", str(args.rdzv_timeout)] + (
        ["--rdzv-endpoint", args.rdzv_endpoint] if args.rdzv_endpoint else [])


def write_error_file(message: str) -> None:
    """Leave a rank's failure where torchrun's agent reads it (ProcessFailure.message)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"message": message, "timestamp": int(time.time())}),
                              encoding="utf-8")
    except OSError:
        pass
