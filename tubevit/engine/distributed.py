"""Distributed training: ``torchrun --nproc_per_node=N -m tubevit train ...``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` then joins the process
group (gloo on CPU, NCCL on GPU) and picks this rank's device. Every rank reads its own shard of
each source (the data loader's sampler), every rank computes the same joint schedule (so all run
the same head in a step), gradients are averaged by DDP (or sharded by FSDP for the large and huge
presets), and rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["DistInfo", "setup", "teardown", "wrap_model", "unwrap", "all_reduce_flag", "barrier", "resolve_device"]


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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device cuda requested but CUDA is not available; use --set device=cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def setup(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank, world, local, dev)


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, *, fsdp: bool = False, find_unused: bool = True) -> nn.Module:
    """DDP (or FSDP) around ``model`` when distributed; the model itself otherwise.

    ``find_unused``: in joint training a step uses one head and, for images, only the 2D tube, so
    the other parameters get no gradient in that step; DDP must be told.
    """
    if not info.enabled:
        return model
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        from tubevit.model.vit import Block

        return FSDP(
            model, auto_wrap_policy=ModuleWrapPolicy({Block}), use_orig_params=True,
            device_id=info.device if info.device.type == "cuda" else None,
        )
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(model: nn.Module) -> nn.Module:
    """The TubeViT inside DDP / torch.compile wrappers (FSDP is handled by the state-dict helpers)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def full_state_dict(model: nn.Module) -> dict:
    """The whole model's state dict on CPU (gathered from every rank under FSDP; rank 0 gets it)."""
    inner = unwrap(model)
    try:
        from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel as FSDP, StateDictType
    except ImportError:  # pragma: no cover
        FSDP = None
    if FSDP is not None and isinstance(inner, FSDP):
        cfg = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
        with FSDP.state_dict_type(inner, StateDictType.FULL_STATE_DICT, cfg):
            sd = inner.state_dict()
        return {k.replace("_fsdp_wrapped_module.", ""): v for k, v in sd.items()}
    return {k: v.detach().cpu().clone() for k, v in inner.state_dict().items()}


def all_reduce_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if it is true on any (agreeing on when to stop)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
