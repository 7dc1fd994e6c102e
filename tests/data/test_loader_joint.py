"""collate, sharded seeded sampling, worker-independent augmentation, failure guard, joint schedule."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from tubevit.data.joint import JointLoader, source_counts, source_for_step
from tubevit.data.loader import FailureCounter, ShardedSampler, build_loader, collate


class Toy(Dataset):
    """Items like the real datasets; `bad` indices are unreadable; values come from the generator."""

    def __init__(self, n, views=1, bad=(), name="toy", key="video"):
        self.n, self.views, self.bad, self.name, self.key = n, views, set(bad), name, key

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.get(i)

    def get(self, i, generator=None):
        if i in self.bad:
            return None
        noise = torch.rand((), generator=generator)
        data = torch.full((self.views, 3, 2, 4, 4), float(i)) + noise
        return {self.key: data, "label": i % 3, "index": i, "view": torch.arange(self.views), "source": self.name}


def test_collate_flattens_views_and_records_skips():
    ds = Toy(6, views=3, bad={2})
    batch = collate([(i, ds[i]) for i in (0, 2, 5)])
    assert batch["video"].shape == (6, 3, 2, 4, 4)
    assert batch["label"].tolist() == [0, 0, 0, 2, 2, 2]
    assert batch["index"].tolist() == [0, 0, 0, 5, 5, 5]
    assert batch["view"].tolist() == [0, 1, 2, 0, 1, 2]
    assert batch["skipped"] == [2] and batch["num_samples"] == 2 and batch["source"] == "toy"
    empty = collate([(2, None)])
    assert empty["num_samples"] == 0 and "video" not in empty and empty["skipped"] == [2]
    with pytest.raises(ValueError, match="one source"):
        collate([Toy(1, name="a")[0], Toy(1, name="b")[0]])


def test_sharded_sampler_partitions_and_reshuffles():
    shards = [list(ShardedSampler(10, shuffle=True, seed=1, rank=r, world_size=3)) for r in range(3)]
    idx = [i for s in shards for i, _ in s]
    assert all(len(s) == 4 for s in shards)  # ceil(10 / 3), padded by wrapping
    assert set(idx) == set(range(10)) and len(idx) == 12
    s = ShardedSampler(10, shuffle=True, seed=1)
    e0 = [i for i, _ in s]
    s.set_epoch(1)
    e1 = [i for i, _ in s]
    assert sorted(e0) == sorted(e1) == list(range(10)) and e0 != e1
    s.set_epoch(1, skip=4)
    assert [i for i, _ in s] == e1[4:] and len(s) == 6
    assert [i for i, _ in ShardedSampler(5, shuffle=False, drop_last=True, rank=1, world_size=2)] == [1, 3]


def test_loader_results_do_not_depend_on_workers():
    ds = Toy(8)
    runs = []
    for workers in (0, 2):
        loader = build_loader(ds, batch_size=3, workers=workers, shuffle=True, seed=7)
        runs.append([(b["index"].tolist(), b["video"][:, 0, 0, 0, 0].tolist()) for b in loader])
    assert runs[0] == runs[1]
    assert len(runs[0]) == 3 and sorted(i for idx, _ in runs[0] for i in idx) == list(range(8))


def test_loader_counts_failures_and_guard_trips():
    loader = build_loader(Toy(10, bad={1, 4, 7}), batch_size=4, shuffle=False)
    counter = FailureCounter(max_fraction=0.5, min_samples=1, name="toy-train")
    for batch in loader:
        counter.update(batch)
    assert counter.failed == 3 and counter.seen == 10 and sorted(counter.failed_indices) == [1, 4, 7]
    assert counter.new_epoch() == (3, 10) and counter.epoch_failed == 0
    strict = FailureCounter(max_fraction=0.2, min_samples=1, name="toy-eval")
    with pytest.raises(RuntimeError, match=r"toy-eval: 1 of 4 samples could not be read"):
        for batch in loader:
            strict.update(batch)
    lenient_start = FailureCounter(max_fraction=0.2, min_samples=100)
    lenient_start.add(4, [1])  # below min_samples: no verdict yet
    with pytest.raises(RuntimeError):
        lenient_start.check(final=True)


def test_source_for_step_pure_and_proportional():
    w = {"video": 3.0, "image": 1.0}
    a = [source_for_step(0, s, w) for s in range(4000)]
    assert a == [source_for_step(0, s, w) for s in range(4000)]
    assert a != [source_for_step(1, s, w) for s in range(4000)]
    frac = a.count(0) / len(a)
    assert abs(frac - 0.75) < 0.03  # binomial sd ~0.007
    assert set(source_for_step(5, s, [0.0, 1.0, 0.0]) for s in range(200)) == {1}
    assert source_counts(0, 4000, w) == [a.count(0), a.count(1)]
    with pytest.raises(ValueError):
        source_for_step(0, 0, [0.0, 0.0])


def _joint(start_step=0, workers=0):
    loaders = {
        "video": build_loader(Toy(7, name="video"), batch_size=2, shuffle=True, seed=3, workers=workers),
        "image": build_loader(Toy(5, name="image", key="image"), batch_size=2, shuffle=True, seed=4, workers=workers),
    }
    return JointLoader(loaders, {"video": 2.0, "image": 1.0}, seed=11, start_step=start_step)


def _take(joint, n):
    out = []
    for step, name, batch in joint:
        key = "video" if "video" in batch else "image"
        out.append((step, name, batch["index"].tolist(), batch[key].flatten()[0].item()))
        if len(out) == n:
            return out


def test_joint_loader_homogeneous_batches_and_exact_resume():
    full = _take(_joint(), 30)  # several epochs of both sources (4 and 3 batches per epoch)
    assert [s for s, *_ in full] == list(range(30))
    assert all(name == ("video", "image")[source_for_step(11, s, [2.0, 1.0])] for s, name, *_ in full)
    # an epoch of the video source is 4 batches (2, 2, 2, 1) covering its 7 items once
    video = [idx for _, n, idx, _ in full if n == "video"]
    assert [len(b) for b in video[:8]] == [2, 2, 2, 1] * 2
    for epoch in (video[:4], video[4:8]):
        assert sorted(i for b in epoch for i in b) == list(range(7))
    assert video[:4] != video[4:8]  # reshuffled
    resumed = _take(_joint(start_step=13), 17)
    assert resumed == full[13:]  # same sources, same samples, same augmentation randomness


def test_joint_loader_validates():
    loaders = {"a": build_loader(Toy(4), batch_size=2, shuffle=False)}
    with pytest.raises(ValueError, match="same sources"):
        JointLoader(loaders, {"b": 1.0}, seed=0)


def test_plan_cpu_splits_cores_between_loader_and_step():
    from tubevit.data.loader import plan_cpu

    # 2-core CPU machine: one worker, one torch thread (the pipeline benchmark's setting)
    assert plan_cpu(-1, device_type="cpu", cores=2) == (1, 1)
    assert plan_cpu(-1, device_type="cpu", cores=16) == (8, 8)
    assert plan_cpu(-1, device_type="cpu", cores=1) == (0, 1)  # nothing to spare: load in-process
    # GPU host with 8 ranks on 96 cores: 12 each, 11 decode, 1 launches kernels
    assert plan_cpu(-1, device_type="cuda", processes_per_host=8, cores=96) == (11, 1)
    # two sources share the budget; explicit counts are kept and torch gets what is left
    assert plan_cpu(-1, device_type="cuda", cores=12, sources=2) == (5, 2)
    assert plan_cpu(3, device_type="cpu", cores=16) == (3, 13)
    assert plan_cpu(0, device_type="cpu", cores=4) == (0, 4)
    assert plan_cpu(8, device_type="cpu", cores=4) == (8, 1)
    # threads (TrainConfig.threads): 0 = the process's whole share of cores, n = n; workers unchanged
    assert plan_cpu(1, device_type="cpu", cores=2, sources=2, threads=0) == (1, 2)  # the demo
    assert plan_cpu(-1, device_type="cuda", processes_per_host=8, cores=96, threads=0) == (11, 12)
    assert plan_cpu(-1, device_type="cpu", cores=16, threads=3) == (8, 3)
