"""One FSDP2 step in bf16 on the GPU(s) and a DCP save + load round trip (part of gpu_check.sh).

    torchrun --standalone --nproc_per_node=G benchmarks/gpu_fsdp_dcp.py OUT_DIR

With G = 1 the model is still sharded (a process group of one, ``shard_model(force=True)``), so
the FSDP2 path, its bf16/fp32-reduce policy and DCP run on one GPU. Prints one JSON line: loss,
gradient norm, step time, peak GPU memory, and whether the reloaded weights equal the saved ones.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

import torch
import torch.distributed as dist

from tubevit.configs.schema import OptimConfig
from tubevit.engine import distributed as D
from tubevit.engine.optim import build_optimizer
from tubevit.io import sharded
from tubevit.model.precision import autocast
from tubevit.model.presets import preset_config
from tubevit.model.tubevit import TubeViT


def main(out: str) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(dev)
    dist.init_process_group("nccl", timeout=datetime.timedelta(minutes=5))
    info = D.DistInfo(rank, world, dev.index, dev)

    def build():
        torch.manual_seed(0)
        m = TubeViT(preset_config("tubevit_base", num_classes={"video": 400})).to(dev)
        return D.shard_model(m, info, "bf16", force=True)

    model = build()
    opt = build_optimizer(model, OptimConfig())
    x = torch.randn(4, 3, 32, 224, 224, device=dev)
    y = torch.randint(0, 400, (4,), device=dev)
    times = []
    for _ in range(3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with autocast(dev, "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x, head="video").float(), y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    folder = sharded.save_sharded(os.path.join(out, "gpu_check.dcp"), model, opt, {"step": 3})
    fresh = build()
    fresh_opt = build_optimizer(fresh, OptimConfig())
    sharded.load_sharded(folder, fresh, fresh_opt)
    same = all(torch.equal(a.full_tensor(), b.full_tensor())
               for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    if rank == 0:
        print(json.dumps({"world_size": world, "loss": float(loss), "grad_norm": float(norm.full_tensor()),
                          "step_s": round(min(times[1:]), 4), "peak_gpu_GB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                          "dcp_round_trip_equal": bool(same)}), flush=True)
    dist.destroy_process_group()
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
