"""Batching: collate that skips unreadable samples, a seeded sharded sampler, the DataLoader
builder, and a failure-fraction guard.

Reproducibility: the sampler (which runs in the main process, also with persistent workers) draws
one seed per item from ``(seed, epoch, index)``; the worker builds a ``torch.Generator`` from it
and the dataset draws all augmentation from that generator. So an item's clip, crop, flip and
RandAugment ops depend only on (seed, epoch, index), not on the number of workers or on which
worker ran it, and resuming mid-epoch (``set_epoch(epoch, skip=...)``) reproduces the rest of the
epoch exactly.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from tubevit.defaults import MAX_FAIL_FRACTION

__all__ = ["FailureCounter", "ShardedSampler", "build_loader", "collate", "item_seed", "plan_cpu", "usable_cores"]

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; a container's limit shows here)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def plan_cpu(workers: int, *, device_type: str, processes_per_host: int = 1, sources: int = 1,
             cores: int | None = None, threads: int = -1) -> tuple[int, int]:
    """``(loader workers per source, torch threads)`` for one training process.

    The host's cores are split evenly between the training processes on it (one per GPU with
    torchrun). ``workers < 0`` chooses: on a GPU the step needs about one core to launch kernels,
    so every other core decodes; on a CPU the step and the loader share the cores, half each
    (the pipeline benchmark's fed/memory fraction is highest there on the 2-core reference
    machine). Torch gets the cores the workers leave (at least 1): each worker is one busy
    process (one FFmpeg thread, one torch thread), so more intra-op threads would only
    oversubscribe. An explicit ``workers`` is kept as given. ``threads`` (``TrainConfig.threads``)
    overrides the torch side: 0 = every core of the process's share, even those the workers hold
    (right when the loader costs little: the built-in 64 px data, where the demo's workers are
    mostly idle and two threads train 1.4x faster than one), ``n > 0`` = n."""
    cores = cores if cores is not None else usable_cores()
    per_proc = max(1, cores // max(1, processes_per_host))
    if workers < 0:
        budget = per_proc - 1 if device_type == "cuda" else per_proc // 2
        workers = max(1, budget // max(1, sources)) if per_proc > 1 else 0
    if threads < 0:
        threads = max(1, per_proc - workers * max(1, sources))
    elif threads == 0:
        threads = per_proc
    return workers, threads


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends only on (seed, epoch, index)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF, index]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


class ShardedSampler(Sampler):
    """Seeded (optionally shuffled) order over a dataset, sharded across ranks like
    ``DistributedSampler``: rank ``r`` of ``w`` takes positions ``r, r + w, ...`` of the epoch's
    permutation, padded by wrapping so every rank sees the same number of items (``drop_last``
    trims instead). Yields ``(index, item_seed)`` pairs that :class:`_Seeded` unpacks.
    """

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.skip = 0, 0
        if drop_last:
            self.per_rank = size // world_size
        else:
            self.per_rank = math.ceil(size / world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch (new permutation) and skip this rank's first ``skip`` items (resume)."""
        self.epoch, self.skip = epoch, skip

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, -1 & 0xFFFFFFFF))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank * self.world_size
        if total > len(order):  # pad by wrapping, as DistributedSampler does
            order = (order * math.ceil(total / max(len(order), 1)))[:total]
        return order[:total][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.indices()[self.skip :]:
            yield i, item_seed(self.seed, self.epoch, i)

    def __len__(self) -> int:
        return max(self.per_rank - self.skip, 0)


class _Seeded(Dataset):
    """Wraps a dataset so that ``[(index, seed)]`` returns ``(index, item)`` with the item's
    randomness drawn from a generator seeded by ``seed`` (collate needs the index to report
    failures)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        if seed is not None and hasattr(self.dataset, "get"):
            return index, self.dataset.get(index, torch.Generator().manual_seed(seed))
        if seed is not None:
            # Foreign dataset drawing from the global RNG: seed it without leaking state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return index, self.dataset[index]
        return index, self.dataset[index]


def collate(items: list) -> dict:
    """Batch dataset items, dropping ``None`` (unreadable) ones and flattening views.

    ``items`` are item dicts or ``(index, item)`` pairs (as the loader built here passes them).
    Returns ``{"video" | "image": [sum V, ...], "label": [sum V], "index": [sum V],
    "view": [sum V], "source": str, "num_samples": int, "skipped": list[int], "short": list[int]}``
    (``short``: indices of the videos shorter than one clip, whose clips loop): label and index
    are repeated per view so multi-view logits can be grouped back by ``index``. A batch in which
    every item failed has no ``video``/``image`` key and ``num_samples == 0``.
    """
    skipped, good = [], []
    for entry in items:
        index, item = entry if isinstance(entry, tuple) else (None, entry)
        if item is None:
            if index is not None:
                skipped.append(int(index))
            else:
                skipped.append(-1)  # index unknown: the dataset was not wrapped
        else:
            good.append(item)
    batch = {"skipped": skipped, "num_samples": len(good),
             "short": [int(it["index"]) for it in good if it.get("short")]}
    if not good:
        batch.update(
            label=torch.zeros(0, dtype=torch.long), index=torch.zeros(0, dtype=torch.long),
            view=torch.zeros(0, dtype=torch.long), source=None,
        )
        return batch
    key = "video" if "video" in good[0] else "image"
    sources = {it["source"] for it in good}
    if len(sources) != 1 or any(key not in it for it in good):
        raise ValueError(f"a batch must come from one source, got {sorted(sources)}")
    data = [it[key] for it in good]
    counts = [d.shape[0] for d in data]
    batch[key] = torch.cat(data)  # [sum V, C, (T,) H, W]
    batch["label"] = torch.repeat_interleave(torch.tensor([it["label"] for it in good]), torch.tensor(counts))
    batch["index"] = torch.repeat_interleave(torch.tensor([it["index"] for it in good]), torch.tensor(counts))
    batch["view"] = torch.cat([torch.as_tensor(it["view"], dtype=torch.long) for it in good])
    batch["source"] = sources.pop()
    if "augment" in good[0]:  # augment_on="device": the drawn RandAugment ops, [sum V, L, 2]
        batch["augment"] = torch.cat([it["augment"] for it in good])
    return batch


def _worker_init(worker_id: int) -> None:
    # torch seeds each worker (base_seed + id); give numpy and `random` distinct seeds too, so
    # any third-party augmentation in a worker does not repeat across workers.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    workers: int = 0,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
    distributed: bool | None = None,
    prefetch_factor: int = 2,
) -> DataLoader:
    """DataLoader with :class:`ShardedSampler`, :func:`collate`, pinned memory when CUDA is
    available, persistent workers and per-worker seeding.

    ``distributed=None`` shards across ranks when ``torch.distributed`` is initialised (each rank
    reads its own shard). ``loader.sampler.set_epoch(e)`` selects the epoch; :class:`JointLoader`
    calls it for you. ``batch_size`` counts samples; an evaluation batch holds ``batch_size x V``
    views.
    """
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    sampler = ShardedSampler(
        len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world, drop_last=drop_last
    )
    extra = {}
    if workers > 0:
        extra = dict(persistent_workers=True, prefetch_factor=prefetch_factor, worker_init_fn=_worker_init)
    return DataLoader(
        _Seeded(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        **extra,
    )


class FailureCounter:
    """Counts unreadable samples and stops the run above ``max_fraction`` of those seen.

    Call :meth:`update` with every batch (it reads ``num_samples`` and ``skipped``). The check
    starts after ``min_samples`` so that one bad file in the first batch does not end a run;
    :meth:`check` with ``final=True`` applies it regardless (end of an evaluation). Counts are
    kept per epoch (:meth:`new_epoch`) and in total; training skips with one warning per file,
    evaluation reports :attr:`failed` and never substitutes.
    """

    def __init__(self, max_fraction: float = MAX_FAIL_FRACTION, *, min_samples: int = 100, name: str = "data"):
        if not 0 <= max_fraction <= 1:
            raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}")
        self.max_fraction, self.min_samples, self.name = max_fraction, min_samples, name
        self.seen = self.failed = 0
        self.epoch_seen = self.epoch_failed = 0
        self.failed_indices: list[int] = []

    def update(self, batch: dict) -> None:
        failed = len(batch.get("skipped", []))
        self.add(batch.get("num_samples", 0) + failed, batch.get("skipped", []))

    def add(self, attempted: int, failed_indices) -> None:
        failed_indices = list(failed_indices)
        self.seen += attempted
        self.epoch_seen += attempted
        self.failed += len(failed_indices)
        self.epoch_failed += len(failed_indices)
        self.failed_indices.extend(failed_indices)
        self.check()

    @property
    def fraction(self) -> float:
        return self.failed / self.seen if self.seen else 0.0

    def check(self, final: bool = False) -> None:
        if (final or self.seen >= self.min_samples) and self.fraction > self.max_fraction:
            raise RuntimeError(
                f"{self.name}: {self.failed} of {self.seen} samples could not be read "
                f"({self.fraction:.1%} > the allowed {self.max_fraction:.1%}); first failures: "
                f"{self.failed_indices[:10]}. Check the data root and the files (see the "
                f"warnings above), or raise the allowed failure fraction"
            )

    def new_epoch(self) -> tuple[int, int]:
        """Return ``(failed, seen)`` for the epoch that ended and start counting a new one."""
        out = (self.epoch_failed, self.epoch_seen)
        if self.epoch_failed:
            log.warning("%s: skipped %d of %d samples this epoch", self.name, *out)
        self.epoch_seen = self.epoch_failed = 0
        return out
