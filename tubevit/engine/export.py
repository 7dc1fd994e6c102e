"""Sharing trained weights: a training checkpoint -> ``.safetensors`` with the configuration in
the file's metadata (string -> string, so JSON): ``format``, ``model_config`` (the ModelConfig),
``class_names`` ({head: [names]}), ``config`` (the whole training config) and ``step``."""

from __future__ import annotations

import json
from pathlib import Path

from tubevit.engine.checkpoint import FORMAT, load_checkpoint, model_config_of
from tubevit.model.config import ModelConfig
from tubevit.model.tubevit import TubeViT

__all__ = ["export_checkpoint", "load_exported"]


def export_checkpoint(checkpoint, output, *, ema: bool = False) -> tuple[Path, int]:
    """``checkpoint``: a .pt, a sharded .dcp folder or a run folder (its newest checkpoint).
    ``ema=True`` exports the EMA of the weights (runs with ``optim.ema_decay``)."""
    from safetensors.torch import save_file

    ckpt = load_checkpoint(checkpoint)
    if ema:
        ckpt = _with_ema(ckpt, checkpoint)
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"the output should end in .safetensors, got {output}")
    # safetensors refuses shared or non-contiguous storage: give every tensor its own copy.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in ckpt["model"].items()}
    meta = {
        "format": FORMAT,
        "model_config": json.dumps(model_config_of(ckpt).to_dict()),
        "class_names": json.dumps(ckpt.get("class_names", {})),
        "config": json.dumps(ckpt["config"]),
        "step": str(ckpt.get("step", 0)),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(output), metadata=meta)
    return output, len(tensors)


def _with_ema(ckpt: dict, where) -> dict:
    if ckpt.get("sharded_from"):
        from tubevit.io.sharded import consolidate

        return consolidate(ckpt["sharded_from"], ema=True)
    if not ckpt.get("ema"):
        raise ValueError(f"{where} holds no EMA of the weights (the run had optim.ema_decay 0); export without --ema")
    return {**ckpt, "model": {**ckpt["model"], **ckpt["ema"]}}


def load_exported(path) -> tuple[TubeViT, dict]:
    """``(model in eval mode, metadata with JSON fields decoded)``; strict load."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; write it with tubevit export CKPT {path.name}")
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata() or {})
    if "model_config" not in meta:
        raise ValueError(f"{path} has no model_config metadata; was it written by tubevit export?")
    info = {k: json.loads(v) if k in ("model_config", "class_names", "config") else v for k, v in meta.items()}
    model = TubeViT(ModelConfig.from_dict(info["model_config"]))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), info
