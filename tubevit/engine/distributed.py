"""Distributed training: ``torchrun --nproc_per_node=N -m tubevit train ...``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` then joins the process
group (gloo on CPU, NCCL on GPU) and picks this rank's device. Every rank reads its own shard of
each source (the data loader's sampler), every rank computes the same joint schedule (so all run
the same head in a step), gradients are averaged by DDP, or parameters, gradients and optimizer state are sharded
by FSDP2 (``fsdp=true``; :func:`shard_model`). Rank 0 alone logs; single-file checkpoints are
written by rank 0, sharded ones (tubevit.io.sharded) by every rank.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from tubevit.devices import resolve_device

__all__ = [
    "DistInfo", "StopVote", "all_reduce_flag", "all_reduce_sum", "barrier", "full_state_dict", "is_sharded", "mixed_precision_policy",
    "setup", "shard_model", "teardown", "unwrap", "wrap_model",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, "--set device", local_rank=local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank, world, local, dev)


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, *, find_unused: bool = True) -> nn.Module:
    """DDP around ``model`` when distributed; the model itself otherwise (FSDP: :func:`shard_model`).

    ``find_unused``: in joint training a step uses one head and, for images, only the 2D tube, so
    the other parameters get no gradient in that step; DDP must be told.
    """
    if not info.enabled:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def mixed_precision_policy(device: torch.device, precision: str):
    """FSDP2's policy: on a GPU with bf16, parameters are all-gathered and computed in bf16 and
    gradients reduced in fp32 (summing many ranks' bf16 gradients would lose the small ones);
    otherwise the default (parameters in their own dtype; autocast still casts the matmuls)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if device.type == "cuda" and precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_model(model: nn.Module, info: DistInfo, precision: str = "fp32", *, force: bool = False) -> nn.Module:
    """FSDP2 (``fully_shard``) in place: each transformer block is one unit (its parameters are
    all-gathered just before it runs and freed after), then the root, which holds the tubes,
    tokenizer, gate, pooling and heads (small next to the blocks). Works with gloo on CPU.

    Gradients are reduce-scattered and averaged over ranks after every backward, so gradient
    accumulation stays sharded (no unsharded gradient is kept between micro-batches), and
    ``torch.nn.utils.clip_grad_norm_`` over the sharded (DTensor) gradients computes the norm of
    the whole model across ranks. One process (``info.enabled`` false) is left unsharded unless
    ``force`` (and a process group of one is up: the GPU check's 1-GPU FSDP2 step).
    """
    if not info.enabled and not (force and dist.is_initialized()):
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (dist.get_world_size(),))
    mp = mixed_precision_policy(info.device, precision)
    for blk in model.blocks:
        fully_shard(blk, mesh=mesh, mp_policy=mp)
    # The root's parameters are needed again right after the forward (heads -> loss -> backward):
    # keep them gathered rather than re-gathering at once.
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=False)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(unwrap(model), FSDPModule)


def unwrap(model: nn.Module) -> nn.Module:
    """The TubeViT inside DDP / torch.compile wrappers (FSDP2 shards the module in place)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def full_state_dict(model: nn.Module) -> dict:
    """The whole model's state dict on CPU (gathered from every rank when sharded: collective)."""
    inner = unwrap(model)
    if is_sharded(inner):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(inner, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu().clone() for k, v in inner.state_dict().items()}


def all_reduce_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if it is true on any (agreeing on when to stop)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_sum(value: int, info: DistInfo) -> int:
    """The sum over ranks of a per-rank count (one blocking collective: call it rarely)."""
    if not info.enabled:
        return int(value)
    t = torch.tensor([float(value)], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(round(t.item()))


class StopVote:
    """Ranks agree to stop (a SIGTERM/SIGINT seen by any of them) at the same step, within two
    steps of the signal, without a device sync: at every step boundary each rank posts a
    non-blocking MAX all-reduce of its local flag over a CPU (gloo) group and reads the result it
    posted one step earlier, which has long completed (every rank posts once per step, in lock
    step with the gradient reduction). No CUDA tensor is involved, so the host never waits for the
    GPU; the cost is one tiny CPU message per step, off the critical path.

    torchrun forwards SIGTERM to every worker and kills them 30 s later, so stopping at the next
    log step (the old rule, up to ``log_every`` steps away) could miss the signal checkpoint.
    One process: the local flag, read every step."""

    def __init__(self, info: DistInfo):
        self.enabled = info.enabled
        self._group = dist.new_group(backend="gloo") if self.enabled else None
        self._pending = None  # (work, tensor) posted at the previous step boundary

    def __call__(self, local: bool) -> bool:
        """Post this step's flag; True on every rank alike once any rank's flag of the previous
        step was set."""
        if not self.enabled:
            return local
        stop = False
        if self._pending is not None:
            work, flag = self._pending
            work.wait()
            stop = bool(flag.item() > 0)
        flag = torch.tensor([1.0 if local else 0.0])
        self._pending = (dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True), flag)
        return stop

    def close(self) -> None:
        """Complete the last posted vote (every rank posted it) and free the group."""
        if self._pending is not None:
            self._pending[0].wait()
            self._pending = None
        if self._group is not None:
            dist.destroy_process_group(self._group)
            self._group = None


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
