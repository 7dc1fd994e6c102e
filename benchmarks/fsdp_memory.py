"""Peak memory per rank under FSDP2 on CPU, against the model-state bound.

    torchrun --standalone --nproc_per_node=N benchmarks/fsdp_memory.py [--model tubevit_base]

Each rank builds the model, shards it with ``tubevit.engine.distributed.shard_model`` (each block
a unit, then the root; with N=1 the model stays whole, as the trainer does), runs a few AdamW
steps on a small clip and prints, for rank 0 and the max over ranks: the peak resident memory of
the training steps above what the process held before building the model (``VmHWM - VmRSS
before``, the high-water mark restarted after sharding through ``/proc/self/clear_refs``, the
whole model each rank built first given back with ``malloc_trim``), and the model
state bound ``(parameters + gradients + 2 AdamW moments) x 4 bytes / N``. The clip is kept
small so activations (which FSDP does not shard) are a small part; the gap between peak and the
bound is activations, the all-gathered block being computed and allocator slack.
Results are recorded in docs/BENCHMARKS.md ("FSDP2 memory").
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os

import torch
import torch.distributed as dist

from tubevit.bench.model import _status_mb
from tubevit.engine import distributed as D
from tubevit.engine.optim import build_optimizer
from tubevit.configs.schema import OptimConfig
from tubevit.model.presets import preset_config
from tubevit.model.tubevit import TubeViT


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="tubevit_base")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    info = D.setup("cpu")
    before = _status_mb("VmRSS")
    torch.manual_seed(0)
    model = TubeViT(preset_config(args.model, tubes="two_tube", num_classes={"video": 400}))
    n_params = sum(p.numel() for p in model.parameters())
    model = D.shard_model(model, info)
    opt = build_optimizer(model, OptimConfig())
    # Each rank built the whole model before sharding it; give that memory back and restart the
    # high-water mark, so the peak is the training steps' (sharded state + activations).
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    resident = _status_mb("VmRSS") - before
    x = torch.randn(1, 3, args.frames, args.size, args.size)
    y = torch.zeros(1, dtype=torch.long)
    for _ in range(args.steps):
        loss = torch.nn.functional.cross_entropy(model(x, head="video"), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters()], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    peak = _status_mb("VmHWM") - before
    t = torch.tensor([peak])
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    bound = 4 * n_params * 4 / info.world_size / 2**20
    if info.is_main:
        print(json.dumps({"model": args.model, "world_size": info.world_size, "params_M": round(n_params / 1e6, 1),
                          "state_bound_MB": round(bound), "resident_after_shard_MB": round(resident), "peak_rank0_MB": round(peak), "peak_max_MB": round(float(t)),
                          "clip": [args.frames, args.size, args.size]}), flush=True)
    D.teardown(info)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
