"""Optimizer and learning-rate schedule (paper §5, Table 10: Adam with weight decay, cosine decay
after a linear warm-up).

AdamW over the parameters that require gradients only (frozen layers, e.g. image-to-video scaling
with ``--freeze-until``, are left out), in two groups: with weight decay for matrices and
kernels, without for biases, norm scales, anything 0-/1-D and the names the model lists in
``no_weight_decay()`` (the pooling probe); with ``optim.layer_decay`` each group is split per
layer with a decayed learning rate (:func:`param_groups`). The schedule is a pure function of the step
(:func:`lr_factor`), wrapped in a ``LambdaLR`` so it checkpoints like any torch scheduler.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from tubevit.configs.schema import OptimConfig

__all__ = ["LR_SCALINGS", "build_optimizer", "build_scheduler", "clean_name", "layer_id", "lr_factor",
           "param_groups", "scaled_lr", "warmup_steps"]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def clean_name(name: str) -> str:
    """A parameter name without the DDP / compile / FSDP wrapper prefixes."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def _no_decay_names(model: nn.Module) -> set[str]:
    for m in model.modules():  # the TubeViT inside any wrapper
        if hasattr(m, "no_weight_decay"):
            return set(m.no_weight_decay())
    return set()


def layer_id(name: str, depth: int, gate_layer: int | None = None) -> int:
    """Depth of a parameter for layer-wise lr decay: 0 for the tubes and embedding
    (``tokenizer.*``), ``i + 1`` for ``blocks.i``, the gate with the block it follows, and
    ``depth + 1`` for the final norm, pooling and heads (everything else)."""
    name = clean_name(name)
    if name.startswith("tokenizer."):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    if name.startswith("gate.") and gate_layer is not None:
        return gate_layer + 1
    return depth + 1


def _depth(model: nn.Module) -> tuple[int, int | None]:
    for m in model.modules():
        if hasattr(m, "blocks") and hasattr(m, "cfg"):
            return len(m.blocks), getattr(m.cfg, "gate_layer", None)
    return 0, None


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """``[{params: decayed}, {params: not decayed, weight_decay: 0}]`` over trainable parameters.

    ``layer_decay < 1`` (BEiT / VideoMAE fine-tuning): each group is split by :func:`layer_id`
    and carries ``lr_scale = layer_decay ** (depth + 1 - layer_id)``, so the heads train at the
    full rate, block ``i`` at ``layer_decay ** (depth - i)`` of it and the tubes at
    ``layer_decay ** (depth + 1)``.
    """
    skip = _no_decay_names(model)
    depth, gate = _depth(model)
    groups: dict[tuple[bool, int], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        name = clean_name(name)
        decayed = not (p.ndim <= 1 or name.endswith(".bias") or name in skip)
        lid = layer_id(name, depth, gate) if layer_decay != 1.0 else depth + 1
        groups.setdefault((decayed, lid), []).append(p)
    if not groups:
        raise ValueError("the model has no trainable parameters (is every layer frozen?)")
    if layer_decay == 1.0:
        return [
            {"params": groups.get((True, depth + 1), []), "weight_decay": weight_decay, "name": "decay", "lr_scale": 1.0},
            {"params": groups.get((False, depth + 1), []), "weight_decay": 0.0, "name": "no_decay", "lr_scale": 1.0},
        ]
    out = []
    for (decayed, lid), params in sorted(groups.items(), key=lambda kv: (kv[0][1], not kv[0][0])):
        out.append({"params": params, "weight_decay": weight_decay if decayed else 0.0,
                    "name": f"{'decay' if decayed else 'no_decay'}/layer{lid}",
                    "lr_scale": layer_decay ** (depth + 1 - lid)})
    return out


LR_SCALINGS = ("sqrt", "linear", "none")


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    """The peak lr of a run whose optimizer steps see ``global_batch`` clips: ``cfg.lr`` is
    quoted for ``cfg.lr_ref_batch`` and scales by the square root (default; Adam) or linearly."""
    if cfg.lr_scaling not in LR_SCALINGS:
        raise ValueError(f"optim.lr_scaling must be one of {LR_SCALINGS}, got {cfg.lr_scaling!r}")
    if cfg.lr_ref_batch <= 0 or cfg.lr_scaling == "none":
        return cfg.lr
    ratio = global_batch / cfg.lr_ref_batch
    return cfg.lr * (math.sqrt(ratio) if cfg.lr_scaling == "sqrt" else ratio)


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float | None = None) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` at peak ``lr`` (default ``cfg.lr``; the trainer passes
    :func:`scaled_lr`), each group at ``lr * lr_scale`` (layer decay; the schedule scales every
    group alike); the fused kernel when every parameter is on a GPU."""
    peak = cfg.lr if lr is None else lr
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    for g in groups:
        g["lr"] = peak * g["lr_scale"]
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr if lr is None else lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused or None)


def warmup_steps(cfg: OptimConfig, total_steps: int) -> int:
    """Configured warm-up, or ``warmup_fraction`` of the run when it is -1; never more than the run."""
    w = int(round(cfg.warmup_fraction * total_steps)) if cfg.warmup_steps < 0 else cfg.warmup_steps
    return max(0, min(w, total_steps))


def lr_factor(step: int, total_steps: int, warmup: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based, the step about to run):
    linear from 1/warmup to 1 over ``warmup`` steps, then cosine down to ``min_ratio`` at the
    last step."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(total_steps - warmup - 1, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
    warm = warmup_steps(cfg, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warm, cfg.min_lr_ratio)
    )
