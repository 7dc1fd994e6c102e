"""Joint image + video loading (paper §3.3: one model trained on images and videos together).

Each step takes one homogeneous batch from one source (a video set or an image set, each with its
own batch size), chosen by :func:`source_for_step`, a pure function of (seed, step), as in
PolyViT/scenic. So the schedule needs no state: resuming at step N recomputes which batch every
source is on (how many times it was chosen before N), positions its sampler there, and reproduces
the remaining run exactly. Under ``torch.distributed`` every rank computes the same source for a
step (so all ranks run the same head) and reads its own shard of that source.
"""

from __future__ import annotations

import logging
from typing import Iterator, Mapping, Sequence

from torch.utils.data import DataLoader

__all__ = ["JointLoader", "source_for_step", "source_counts"]

log = logging.getLogger(__name__)

_MASK = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    # A counter-based hash: uniform 64-bit output for consecutive inputs, no state to carry.
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _normalise(weights) -> list[float]:
    w = list(weights.values()) if isinstance(weights, Mapping) else list(weights)
    if not w or any(x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
    return [float(x) for x in w]


def source_for_step(seed: int, step: int, weights: Sequence[float] | Mapping[str, float]) -> int:
    """The index of the source that step ``step`` draws from: source ``i`` with probability
    ``weights[i] / sum(weights)``, independently per step, identically for every call with the
    same (seed, step, weights)."""
    w = _normalise(weights)
    u = _splitmix64(_splitmix64(seed & _MASK) ^ (step & _MASK)) / 2.0**64  # uniform in [0, 1)
    total, acc = sum(w), 0.0
    for i, x in enumerate(w):
        acc += x / total
        if u < acc and x > 0:
            return i
    return max(i for i, x in enumerate(w) if x > 0)  # u rounding past the last boundary


def source_counts(seed: int, steps: int, weights, start: int = 0) -> list[int]:
    """How many of the steps ``start .. start + steps - 1`` draw from each source."""
    n = len(_normalise(weights))
    counts = [0] * n
    for step in range(start, start + steps):
        counts[source_for_step(seed, step, weights)] += 1
    return counts


class JointLoader:
    """Iterates forever over ``(step, source_name, batch)``, starting at ``start_step``.

    ``loaders`` maps source names to DataLoaders (built with :func:`build_loader`, whose sampler
    has ``set_epoch(epoch, skip)``); ``weights`` maps the same names to sampling weights. When a
    source runs out, its next epoch starts with a new permutation (``set_epoch(epoch + 1)``); with
    persistent workers the workers stay up. A loader whose sampler cannot skip is fast-forwarded
    by drawing and discarding batches (correct, but it decodes them).
    """

    def __init__(
        self,
        loaders: Mapping[str, DataLoader],
        weights: Mapping[str, float],
        seed: int,
        start_step: int = 0,
    ):
        if set(loaders) != set(weights):
            raise ValueError(f"loaders {sorted(loaders)} and weights {sorted(weights)} must name the same sources")
        self.names = list(loaders)
        self.loaders = dict(loaders)
        self.weights = [float(weights[n]) for n in self.names]
        _normalise(self.weights)
        for name in self.names:
            if len(self.loaders[name]) == 0:
                raise ValueError(f"source {name!r} has no batches (dataset smaller than one batch?)")
        self.seed, self.start_step = seed, start_step

    def position(self, step: int) -> dict[str, tuple[int, int]]:
        """``{name: (epoch, batch_in_epoch)}`` of the batch each source yields next at ``step``."""
        counts = source_counts(self.seed, step, self.weights)
        out = {}
        for name, count in zip(self.names, counts):
            n = self._batches_per_epoch(name)
            out[name] = divmod(count, n)
        return out

    def _batches_per_epoch(self, name: str) -> int:
        loader = self.loaders[name]
        sampler = loader.sampler
        skip = getattr(sampler, "skip", 0)
        if skip:  # len() reflects a resume skip; count a full epoch
            sampler.skip = 0
            n = len(loader)
            sampler.skip = skip
            return n
        return len(loader)

    def _start(self, name: str, epoch: int, batch: int):
        loader = self.loaders[name]
        sampler = loader.sampler
        if hasattr(sampler, "set_epoch"):
            try:
                sampler.set_epoch(epoch, skip=batch * loader.batch_size)
                return iter(loader)
            except TypeError:  # e.g. torch's DistributedSampler: epoch only
                sampler.set_epoch(epoch)
        it = iter(loader)
        if batch:
            log.warning("source %s: fast-forwarding %d batches by decoding them", name, batch)
        for _ in range(batch):
            next(it)
        return it

    def __iter__(self) -> Iterator[tuple[int, str, dict]]:
        pos = self.position(self.start_step)
        epochs = {name: pos[name][0] for name in self.names}
        iters = {}
        step = self.start_step
        while True:
            name = self.names[source_for_step(self.seed, step, self.weights)]
            if name not in iters:
                iters[name] = self._start(name, epochs[name], pos[name][1])
            try:
                batch = next(iters[name])
            except StopIteration:
                epochs[name] += 1
                iters[name] = self._start(name, epochs[name], 0)
                batch = next(iters[name])
            yield step, name, batch
            step += 1
