"""The evaluator end to end: real tiny mp4s through tubevit.data, an unreadable file, precision
modes, failure fraction, bounded view batches, and two processes with torch.distributed."""

from __future__ import annotations

import json
import math
import os
import socket

import pytest
import torch
import torch.nn as nn

from tubevit.data import VideoDataset, build_loader
from tubevit.evaluate.evaluator import TooManyFailures, evaluate, forward_views
from tubevit.evaluate.multiview import aggregate_views

REQUIRED = ("top1", "top5", "videos", "skipped", "views", "per_class", "confusion", "num_classes")


def _dataset(tiny_data, val=None, clips=2, crops=3):
    return VideoDataset.from_annotations(val or tiny_data["val"], tiny_data["root"], frames=tiny_data["frames"],
                                         stride=1, size=tiny_data["size"], train=False, clips=clips, crops=crops)


def test_evaluate_end_to_end_counts_the_unreadable_file(tiny_data, tiny_model):
    ds = _dataset(tiny_data)
    assert len(ds) == 9 and ds.views == 6
    model = tiny_model()
    r = evaluate(model, build_loader(ds, batch_size=4, shuffle=False), max_fail_fraction=0.2)
    for k in REQUIRED:
        assert k in r
    assert r["videos"] == 8 and r["skipped"] == 1
    assert r["skipped_files"][0]["index"] == 8 and r["skipped_files"][0]["path"].endswith("broken.mp4")
    assert r["views"] == 6 and r["total_views"] == 48 and r["incomplete"] == 0
    assert 0.0 <= r["top1"] <= r["top5"] <= 1.0
    assert r["top5"] == 1.0  # 4 classes: the label is always in the top 5
    assert r["num_classes"] == 4 and len(r["per_class"]) == 4
    assert sum(map(sum, r["confusion"])) == 8
    json.dumps(r)  # serialisable

    # Same numbers computed by hand: every view through the model, averaged per video.
    model.eval()
    logits, vids, views, labels = [], [], [], []
    with torch.no_grad():
        for i in range(8):
            item = ds[i]
            out = model(item["video"])
            logits.append(out)
            vids += [i] * out.shape[0]
            views += item["view"].tolist()
            labels += [item["label"]] * out.shape[0]
    s = aggregate_views(vids, views, torch.cat(logits), labels=labels)
    top1 = (s.scores.argmax(1) == s.labels).float().mean().item()
    assert r["top1"] == pytest.approx(top1)
    cm = torch.zeros(4, 4, dtype=torch.long)
    for p, y in zip(s.scores.argmax(1).tolist(), s.labels.tolist()):
        cm[y, p] += 1
    assert r["confusion"] == cm.tolist()


def test_too_many_failures_stops_with_a_clear_error(tiny_data, tiny_model):
    ds = _dataset(tiny_data, clips=1, crops=1)
    with pytest.raises(TooManyFailures, match="broken.mp4"):
        evaluate(tiny_model(), build_loader(ds, batch_size=3, shuffle=False), max_fail_fraction=0.05)


# Per-video score tolerance of the low-precision runs against fp32. The scores (mean logits of
# a randomly initialised tiny model) are ~0.2 in spread and <0.5 in size; bf16 keeps 8 mantissa
# bits (a relative rounding of 2^-9 ~ 2e-3 per value), fp16 11 bits (~2.4e-4), and the two blocks'
# matmuls and norms accumulate a few such roundings. Measured on this data: bf16 differs by at most
# 3e-3, fp16 by 2e-4. We allow ~3x that; a model returning other logits (random, another view's,
# an unaggregated one) is off by ~0.1 or more.
LOW_PRECISION_ATOL = {"bf16": 1e-2, "fp16": 1e-3}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_modes_and_view_batches(tiny_data, tiny_model, precision):
    ds = _dataset(tiny_data, val=tiny_data["val_clean"], clips=2, crops=1)
    model = tiny_model()
    model.train()
    ref = forward_views(model, build_loader(ds, batch_size=4, shuffle=False)).scores
    assert model.training  # mode restored
    low = forward_views(model, build_loader(ds, batch_size=4, shuffle=False), precision=precision,
                        view_batch=3).scores
    assert low.videos.tolist() == ref.videos.tolist() == list(range(8))
    atol = LOW_PRECISION_ATOL[precision]
    torch.testing.assert_close(low.scores, ref.scores, atol=atol, rtol=0)
    # Top-1 must agree wherever the fp32 winner leads by more than the tolerance on both scores.
    top2 = ref.scores.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * atol
    assert int(clear.sum()) >= 6, "too few clear-cut videos for the top-1 check to mean anything"
    assert torch.equal(low.scores.argmax(1)[clear], ref.scores.argmax(1)[clear])
    # The summary of evaluate() carries that precision and those predictions.
    r = evaluate(model, build_loader(ds, batch_size=4, shuffle=False), precision=precision, view_batch=3)
    assert r["videos"] == 8 and r["skipped"] == 0 and r["precision"] == precision
    pred = low.scores.argmax(1)
    assert r["top1"] == pytest.approx((pred == low.labels).float().mean().item())
    cm = torch.zeros(4, 4, dtype=torch.long)
    for y, p in zip(low.labels.tolist(), pred.tolist()):
        cm[y, p] += 1
    assert r["confusion"] == cm.tolist()


class _Reader(nn.Module):
    """Logits are the first K values of each view: lets a test set every view's logits."""

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x, head=None):
        return x.flatten(1)[:, : self.k] * self.w


def test_aggregation_modes_through_the_evaluator():
    # Video 0: one confident view for class 0, two lukewarm for class 1 (label 1).
    v0 = torch.tensor([[10.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    # Video 1: all views for class 0 (label 0).
    v1 = torch.tensor([[3.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    x = torch.stack([v0, v1]).reshape(2, 3, 2, 1, 1, 1)  # [B, V, C=2, T, H, W]
    loader = [(x, torch.tensor([1, 0]), torch.tensor([0, 1]))]
    a = evaluate(_Reader(2), loader, aggregation="mean_logits")
    b = evaluate(_Reader(2), loader, aggregation="mean_probs")
    assert a["top1"] == 0.5 and b["top1"] == 1.0
    assert a["views"] == 3 and a["videos"] == 2
    assert a["confusion"] == [[1, 0], [1, 0]] and b["confusion"] == [[1, 0], [0, 1]]
    assert math.isclose(a["top5"], 1.0)


_DIST_SCRIPT = """
import json, os, sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tubevit.data import VideoDataset, build_loader
from tubevit.evaluate.evaluator import evaluate
from tubevit.evaluate.loading import load_model


def worker(rank, world, port, ckpt, root, val, out, frames, size):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = load_model(ckpt).model
        # Pretend the parameters are sharded (FSDP): forward passes must then run in lock-step.
        import tubevit.evaluate.evaluator as ev
        ev._is_sharded = lambda m: True
        calls = []
        model.register_forward_hook(lambda m, i, o: calls.append(int(i[0].shape[0])))
        ds = VideoDataset.from_annotations(val, root, frames=frames, stride=1, size=size, train=False, clips=2, crops=1)
        r = evaluate(model, build_loader(ds, batch_size=2, shuffle=False), max_fail_fraction=0.5)
        r["forward_calls"] = calls
        with open(f"{out}.{rank}", "w") as f:
            json.dump(r, f)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    a = sys.argv[1:]
    mp.spawn(worker, args=(2, int(a[0]), a[1], a[2], a[3], a[4], int(a[5]), int(a[6])), nprocs=2, join=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_two_processes_match_one(tiny_data, tiny_ckpt, tmp_path):
    import subprocess
    import sys

    from tubevit.evaluate.loading import load_model

    script = tmp_path / "dist_eval.py"
    script.write_text(_DIST_SCRIPT)
    out = tmp_path / "r"
    args = [_free_port(), tiny_ckpt, tiny_data["root"], tiny_data["val"], out, tiny_data["frames"], tiny_data["size"]]
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"r.{i}").read_text()) for i in range(2))
    ds = VideoDataset.from_annotations(tiny_data["val"], tiny_data["root"], frames=tiny_data["frames"], stride=1,
                                       size=tiny_data["size"], train=False, clips=2, crops=1)
    ref = evaluate(load_model(tiny_ckpt).model, build_loader(ds, batch_size=2, shuffle=False), max_fail_fraction=0.5)
    # rank 0's last batch is the broken file alone: it runs one empty forward to keep in step.
    assert len(r0["forward_calls"]) == len(r1["forward_calls"]) == 3
    assert r0["forward_calls"][-1] == 0
    for r in (r0, r1):
        # 9 samples over 2 ranks: the sampler pads one repeat, which must count once.
        assert r["videos"] == 8 and r["skipped"] == 1
        assert r["top1"] == pytest.approx(ref["top1"]) and r["confusion"] == ref["confusion"]
        assert r["total_views"] >= ref["total_views"]


def test_views_are_batched_across_videos_and_loader_batches(tiny_data, tiny_model):
    """A 1-view evaluation with 2 videos per loader batch forwards chunks of view_batch views
    taken across videos, with the same per-video scores as one video at a time."""
    ds = _dataset(tiny_data, clips=1, crops=1)
    model = tiny_model()
    sizes = []
    hook = model.register_forward_hook(lambda m, i, o: sizes.append(int(i[0].shape[0])))
    r = evaluate(model, build_loader(ds, batch_size=2, shuffle=False), max_fail_fraction=0.2, view_batch=3)
    assert sizes == [3, 3, 2]  # 8 readable videos, 1 view each: 3 + 3 + 2 across loader batches of 2
    sizes.clear()
    default = evaluate(model, build_loader(ds, batch_size=2, shuffle=False), max_fail_fraction=0.2)
    assert sizes == [8]  # default chunk (32 views) gathers every loader batch
    sizes.clear()
    one = evaluate(model, build_loader(ds, batch_size=1, shuffle=False), max_fail_fraction=0.2, view_batch=1)
    hook.remove()
    assert sizes == [1] * 8
    assert r["confusion"] == default["confusion"] == one["confusion"]
    assert r["top1"] == one["top1"] and r["videos"] == one["videos"] == 8 and r["skipped"] == 1
