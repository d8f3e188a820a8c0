"""Rank, world size and the few collectives ``fit()`` needs, over ``torch.distributed``.

A run started by torchrun (``dftui train --nproc-per-node N``) finds RANK, WORLD_SIZE and
LOCAL_RANK in its environment; ``init_from_env`` joins the process group (NCCL for CUDA,
gloo for the CPU). Without them the run has world size 1 and every helper here returns its
input untouched, so a single-process run does exactly what it did before.

Every collective here must be called by every rank in the same order; the engine keeps
that order by calling them at fixed points of the loop (each batch, each epoch end)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch

# A collective that waits longer than this for a peer fails instead of hanging the run
# (a rank killed in the middle of a step, a machine that dropped off the network).
DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "DFTUI_DIST_TIMEOUT"


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None  # "nccl" | "gloo" | None (world size 1)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def env_info() -> DistInfo | None:
    """The rank torchrun gave this process, or None when it was not started by torchrun."""
    try:
        rank = int(os.environ["RANK"])
        world = int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        return None
    return DistInfo(rank=rank, world=world, local_rank=local)


def timeout_s() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun set up (MASTER_ADDR/PORT, RANK, WORLD_SIZE)."""
    import torch.distributed as dist

    info = env_info()
    if info is None or info.world <= 1:
        return SINGLE
    backend = "nccl" if device_type == "cuda" else "gloo"
    if dist.is_initialized():
        return DistInfo(info.rank, info.world, info.local_rank, dist.get_backend())
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s()))
    return DistInfo(info.rank, info.world, info.local_rank, backend)


def current() -> DistInfo:
    """This process's place, once ``init_from_env`` ran; world size 1 otherwise."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    info = env_info() or SINGLE
    return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank, dist.get_backend())


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a peer already gone must not turn an outcome into a crash
            pass


def _device() -> torch.device:
    import torch.distributed as dist

    # NCCL reduces tensors on the GPU; gloo on the CPU.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_floats(values: list[float]) -> list[float]:
    """Element-wise sum over all ranks (float64)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu().tolist()]


def any_true(*flags: bool) -> list[bool]:
    """For each flag, whether it is set on at least one rank (one all-reduce for all)."""
    total = sum_floats([1.0 if f else 0.0 for f in flags])
    return [v > 0 for v in total]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (picklable objects; small ones)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def wait_for_peers() -> None:
    """A barrier at the end of a run every rank ended together; a peer lost on the way
    out is not an error any more (the run's outcome is already decided and recorded)."""
    try:
        barrier()
    except Exception:  # noqa: BLE001 - gloo and NCCL report a lost peer in many types
        pass


def average_bn_stats(model: torch.nn.Module) -> None:
    """Average batch-norm running statistics over the ranks (timm's ``--dist-bn reduce``).

    Each rank normalises with its own batch and keeps its own running estimates; at the end
    of an epoch they are averaged, so every rank validates, and rank 0 saves, one set of
    statistics estimated from all ranks' data."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    device = _device()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            for buf in (module.running_mean, module.running_var):
                if buf is None:
                    continue
                t = buf.detach().to(device, dtype=torch.float64)
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                buf.copy_((t / world).to(buf.device, dtype=buf.dtype))


def is_peer_failure(exc: BaseException) -> bool:
    """An error that means another rank of the run is gone (killed, crashed, unreachable),
    not a fault of this one: the run is interrupted and stays resumable."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    # gloo reports a lost peer as a RuntimeError naming its transport ("gloo/transport/tcp
    # ... Connection reset by peer", "... Timed out waiting ... for recv").
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        word in text for word in ("gloo", "nccl", "connection reset", "connection closed",
                                  "closed by peer", "broken pipe")
    )


class ShardedShuffle:
    """The single-process shuffle, cut into one shard per rank (a DistributedSampler that
    keeps the engine's own seeding).

    Epoch e shuffles with ``torch.randperm(n)`` from a generator seeded ``seed * 1000 + e`` -
    the very order a single-process run draws - pads it with its head to a multiple of the
    world size, and gives rank r the positions r, r + W, r + 2W, ... So the k-th step of W
    processes with b images each sees the same W·b images as the k-th step of one process
    with batch W·b; ``set_epoch`` must be called every epoch (the engine does), and the
    order does not depend on where a run resumed."""

    def __init__(self, size: int, rank: int, world: int, seed: int) -> None:
        self.size, self.rank, self.world, self.seed = size, rank, world, seed
        self.epoch = 0
        self.num_samples = -(-size // world)  # ceil

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        pad = self.num_samples * self.world - self.size
        order += (order * (pad // max(1, self.size) + 1))[:pad]
        return order

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Any:
        return iter(self.order()[self.rank :: self.world])


class Shard:
    """Validation: rank r takes samples r, r + W, ... in order, with no padding, so the
    gathered predictions cover every image exactly once."""

    def __init__(self, size: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, size, world))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Any:
        return iter(self.indices)
