"""Sharded training checkpoints (FSDP2 runs): a folder written with ``torch.distributed.checkpoint``
(DCP), every rank writing its own shard, readable at any world size.

Layout of ``OUT/last.dcp/`` (and ``best.dcp/``)::

    .metadata, __0_0.distcp, __1_0.distcp, ...   DCP: {"model": ..., "optim": ..., ["ema": ...]}
    trainer.pt                                  rank 0: everything that is not a sharded tensor
                                                (format, config, model_config, class_names, step,
                                                epoch, scheduler, rng, data_state, best_top1, metrics)

A checkpoint is complete or absent: the ranks write into ``OUT/.last.dcp.tmp``, and rank 0 then
moves the previous folder aside, renames the new one into place and deletes the old one
(:func:`latest`, used by resume and export, also finds a folder left aside by a crash between the
two renames). ``trainer.pt`` is written last, so a folder without it is never taken for a
checkpoint.

Loading reshards: DCP maps each saved shard onto however the loading process(es) hold the
tensors, so a 2-process run resumes in 1 process (plain tensors) or in 4 (other shards), and
:func:`consolidate` reads the whole model into one process with no process group (``tubevit
export``, evaluation).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["FORMAT", "META", "consolidate", "is_sharded_checkpoint", "latest", "load_sharded", "save_sharded"]

FORMAT = "tubevit-dcp/1"
META = "trainer.pt"
SUFFIX = ".dcp"


def is_sharded_checkpoint(path: str | Path) -> bool:
    """A folder holding a complete sharded checkpoint (DCP metadata and ``trainer.pt``)."""
    p = Path(path)
    return p.is_dir() and (p / META).is_file() and (p / ".metadata").is_file()


def latest(out: str | Path, name: str = "last") -> Path | None:
    """``OUT/<name>.dcp`` if complete, else the copy a crash left aside mid-swap, else None."""
    out = Path(out)
    for cand in (out / f"{name}{SUFFIX}", out / f".{name}{SUFFIX}.old"):
        if is_sharded_checkpoint(cand):
            return cand
    return None


def _dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier() -> None:
    if _dist():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if _dist() else 0


def _state(model: nn.Module, optimizer: torch.optim.Optimizer | None, ema=None) -> tuple[dict, dict, dict | None]:
    """(model, optimizer) state dicts keyed by parameter names, as this process holds them (shards
    under FSDP2, whole tensors otherwise): DCP saves and loads those in place."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        return get_model_state_dict(model), {}, None
    msd, osd = get_state_dict(model, optimizer)
    return msd, osd, (ema.state_dict() if ema is not None else None)


def save_sharded(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, meta: Mapping,
                 *, ema=None) -> Path:
    """Collective: every rank calls it. ``meta`` (plain values and small tensors) is written by
    rank 0 as ``trainer.pt``. Returns the final folder."""
    import torch.distributed.checkpoint as dcp

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    old = folder.with_name(f".{folder.name}.old")
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    msd, osd, esd = _state(model, optimizer, ema)
    state = {"model": msd, "optim": osd}
    if esd is not None:
        state["ema"] = esd
    dcp.save(state, checkpoint_id=str(tmp), no_dist=not _dist())  # every rank writes its shard; rank 0 the metadata
    if _rank() == 0:
        from tubevit.engine.checkpoint import atomic_save

        # "format" names this folder's kind; the training checkpoint's own format is kept beside it
        # for the consolidated dict (read by tubevit.io like a last.pt).
        atomic_save({**meta, "format": FORMAT, "checkpoint_format": meta.get("format"), "ema": esd is not None},
                    tmp / META)
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return folder


def read_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    if not is_sharded_checkpoint(folder):
        raise FileNotFoundError(f"{folder} is not a complete sharded checkpoint (no .metadata or {META}); "
                                f"pass the last.dcp folder of an fsdp=true run")
    meta = torch.load(folder / META, map_location="cpu", weights_only=True)
    # Readers see a training checkpoint's metadata: its own format, not the folder kind's.
    from tubevit.engine.checkpoint import FORMAT as CHECKPOINT_FORMAT

    meta["format"] = meta.pop("checkpoint_format", None) or CHECKPOINT_FORMAT
    return meta


def load_sharded(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, *, ema=None) -> dict:
    """Load the shards into ``model`` / ``optimizer`` / ``ema`` however they are held now (sharded
    over any number of ranks, or whole in one process); returns the ``trainer.pt`` dict.
    Collective when a process group is up."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_state_dict

    meta = read_meta(folder)
    msd, osd, esd = _state(model, optimizer, ema if meta.get("ema") else None)
    state = {"model": msd}
    if optimizer is not None:
        state["optim"] = osd
    if esd is not None:
        state["ema"] = esd
    dcp.load(state, checkpoint_id=str(folder), no_dist=not _dist())
    if optimizer is None:
        set_model_state_dict(model, state["model"])
    else:
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    if esd is not None:
        ema.load_state_dict(state["ema"])
    return meta


def consolidate(folder: str | Path, *, ema: bool = False) -> dict:
    """A sharded checkpoint as one single-file checkpoint dict (weights only, no optimizer), read
    in this process without a process group: what ``tubevit export`` and evaluation take.
    ``ema=True``: the EMA weights instead of the trained ones."""
    import torch.distributed.checkpoint as dcp

    from tubevit.model.config import ModelConfig
    from tubevit.model.tubevit import TubeViT

    folder = Path(folder)
    meta = read_meta(folder)
    model = TubeViT(ModelConfig.from_dict(dict(meta["model_config"])))
    key = "ema" if ema else "model"
    if ema and not meta.get("ema"):
        raise ValueError(f"{folder} holds no EMA weights (the run had ema_decay 0)")
    sd = {k: torch.empty_like(v) for k, v in model.state_dict().items()}
    if ema:
        # EMA state: {"decay", "shadow": {name: tensor}} (tubevit.engine.ema); buffers are not averaged
        state = {"ema": {"shadow": {k: sd[k] for k in _ema_keys(model)}}}
        dcp.load(state, checkpoint_id=str(folder), no_dist=True)
        sd.update(state["ema"]["shadow"])
        rest = {k: v for k, v in sd.items() if k not in state["ema"]["shadow"]}
        if rest:
            dcp.load({"model": rest}, checkpoint_id=str(folder), no_dist=True)
            sd.update(rest)
    else:
        state = {"model": sd}
        dcp.load(state, checkpoint_id=str(folder), no_dist=True)
    ckpt = {k: v for k, v in meta.items() if k not in ("scheduler", "rng", "scaler")}
    ckpt["model"] = sd
    ckpt["sharded_from"] = str(folder)
    if ckpt.get("format") == FORMAT:  # the consolidated dict is a training checkpoint
        from tubevit.engine.checkpoint import FORMAT as CHECKPOINT_FORMAT

        ckpt["format"] = meta.get("checkpoint_format") or CHECKPOINT_FORMAT
    ckpt.pop("checkpoint_format", None)
    return ckpt


def _ema_keys(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]
