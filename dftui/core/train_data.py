"""The training run's data: the two folder scans, then the loaders (shards with several
processes, per-sample augmentation seeds) and the per-epoch reseeding that keeps the shuffle
order independent of where a run resumed."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dftui.core import distributed
from dftui.core.abort import RunAborted, StoppedBeforeStart
from dftui.core.config import TrainConfig
from dftui.core.data import (
    DataError,
    DatasetScan,
    FaceDataset,
    Preprocessing,
    ScanCancelled,
    build_transform,
    display_path,
    make_loader,
    scan_folder,
)
from dftui.core.events import Emit, LogMessage
from dftui.core.machine import default_workers

MAX_LOGGED_SKIPS = 20  # skipped images named one by one in the log; the rest are counted


def _scan(path: Path, role: str, emit: Emit, stop: threading.Event | None = None) -> DatasetScan:
    try:
        scan = scan_folder(path, stop=stop)
    except DataError as exc:
        raise RunAborted(f"{role} data: {exc}") from None
    except ScanCancelled:
        raise StoppedBeforeStart() from None
    for warning in scan.warnings:
        emit(LogMessage("warning", f"{role} data: {warning}"))
    for path_, reason in scan.unreadable[:MAX_LOGGED_SKIPS]:
        emit(LogMessage("warning", f"skipping unreadable image {display_path(path_)}: {reason}"))
    if len(scan.unreadable) > MAX_LOGGED_SKIPS:
        emit(LogMessage("warning", f"... and {len(scan.unreadable) - MAX_LOGGED_SKIPS} more"))
    return scan


@dataclass(frozen=True)
class Scans:
    """The training and validation folders as scanned (images, counts, unreadable files)."""

    train: DatasetScan
    val: DatasetScan


def scan_data(config: TrainConfig, emit: Emit, stop: threading.Event | None) -> Scans:
    train = _scan(Path(config.train_dir), "training", emit, stop)
    return Scans(train, _scan(Path(config.val_dir), "validation", emit, stop))


class _SeededIndex(int):
    """A sample index that carries the seed for that sample's random augmentation."""

    seed: int

    def __new__(cls, index: int, seed: int) -> _SeededIndex:
        obj = super().__new__(cls, index)
        obj.seed = seed
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (_SeededIndex, (int(self), self.seed))


class _SeededSampler:
    """Wraps the shuffling sampler: the i-th sample of epoch e gets seed (run seed, e, i).

    Persistent loader workers keep their random state from one epoch to the next, so the
    flips of epoch 5 depend on everything the workers drew since the run started; a resumed
    run would draw differently. Seeding per sample makes augmentation the same with any
    number of workers and across resumes."""

    def __init__(self, inner: Any, seed: int, rank: int = 0, world: int = 1) -> None:
        self.inner = inner
        self.base = seed
        self.epoch = 0
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Any:
        # A rank's k-th sample is position k·W + r of the epoch's whole order (see
        # distributed.ShardedShuffle): the same sample gets the same seed as in a
        # single-process run, whatever the number of processes.
        for pos, index in enumerate(self.inner):
            pos = pos * self.world + self.rank
            yield _SeededIndex(index, hash((self.base, self.epoch, pos)) & 0x7FFFFFFF)


class _SeededFaceDataset(FaceDataset):
    """FaceDataset that seeds torch, numpy and random from a _SeededIndex (worker side)."""

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        seed = getattr(index, "seed", None)
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        return super().__getitem__(int(index))


@dataclass
class Loaders:
    """The training and validation loaders of one process."""

    train: Any  # torch DataLoader
    val: Any
    workers: int
    # Validation steps every rank takes: as many as the largest shard (rank 0's).
    val_batches: int
    shards: distributed.ShardedShuffle | None  # this rank's share of the training set
    seeded: _SeededSampler | None  # per-sample augmentation seeds (workers, augmentation on)
    # The shuffle's own generator: a multi-worker loader also draws its workers' base seed
    # from loader.generator, on the first epoch a process runs but not on later ones
    # (persistent workers), so a shared generator would shuffle a resumed epoch
    # differently from the same epoch in an uninterrupted run.
    shuffle_gen: torch.Generator | None

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Reseed for ``epoch``: its order depends on the run's seed and the epoch only."""
        seed = seed * 1000 + epoch
        self.train.generator.manual_seed(seed)
        if self.shuffle_gen is not None:
            self.shuffle_gen.manual_seed(seed)
        if self.shards is not None:
            self.shards.set_epoch(epoch)  # DistributedSampler's set_epoch
        if self.seeded is not None:
            self.seeded.epoch = epoch


def build_loaders(
    config: TrainConfig, scans: Scans, pre: Preprocessing, device: torch.device,
    dist: distributed.DistInfo, batch_per_process: int, train_sampler: Any = None,
) -> Loaders:
    """``train_sampler``: one process's training order in place of the plain shuffle (the
    class-balanced draws); its ``generator`` is reseeded every epoch as the shuffle's is."""
    cfg = config
    workers = default_workers() if cfg.workers is None else cfg.workers
    draft = pre.input_size
    # Random augmentation in worker processes is seeded per sample (see _SeededSampler);
    # without workers it draws from this process's RNG, saved in resume.pt.
    seeded = cfg.augment != "none" and workers > 0
    dataset_cls = _SeededFaceDataset if seeded else FaceDataset
    train_data = dataset_cls(scans.train.samples, build_transform(pre, cfg.augment), draft)
    val_data = FaceDataset(scans.val.samples, build_transform(pre), draft)
    shards: distributed.ShardedShuffle | None = None
    val_sampler: Any = None
    if dist.enabled:
        shards = distributed.ShardedShuffle(len(train_data), dist.rank, dist.world, cfg.seed)
        train_sampler = shards
        val_sampler = distributed.Shard(len(val_data), dist.rank, dist.world)
    train_loader = make_loader(
        train_data, batch_per_process, True, workers, cfg.seed, device, cfg.mp_context,
        sampler=train_sampler,
    )
    seeded_sampler: _SeededSampler | None = None
    batch_sampler = getattr(train_loader, "batch_sampler", None)
    if seeded and batch_sampler is not None and hasattr(batch_sampler, "sampler"):
        seeded_sampler = _SeededSampler(batch_sampler.sampler, cfg.seed, dist.rank, dist.world)
        batch_sampler.sampler = seeded_sampler
    shuffle_gen: torch.Generator | None = None
    sampler = getattr(train_loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "generator"):
        shuffle_gen = torch.Generator()
        sampler.generator = shuffle_gen
    val_loader = make_loader(
        val_data, batch_per_process, False, workers, cfg.seed, device, cfg.mp_context,
        sampler=val_sampler,
    )
    largest_shard = -(-len(val_data) // dist.world)  # ceiling divisions
    val_batches = -(-largest_shard // batch_per_process)
    return Loaders(train_loader, val_loader, workers, val_batches, shards, seeded_sampler, shuffle_gen)
