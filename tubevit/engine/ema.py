"""An exponential moving average of the trained weights (Polyak averaging; the ``ema_decay`` of
most ViT and VideoMAE fine-tuning recipes): after every optimizer step
``shadow = decay * shadow + (1 - decay) * param`` for every trainable parameter. Buffers and
frozen parameters are not averaged (they do not train), so the EMA model is the trained model
with its trainable parameters replaced by the shadow.

Under FSDP2 the shadow tensors are DTensor shards like the parameters they follow, so the EMA
costs 1/N of a model per rank and is saved shard by shard in the sharded checkpoint.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn

__all__ = ["EMA"]


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            self.shadow = {n: p.detach().clone() for n, p in self.params.items()}
        self._local = not any(hasattr(p, "full_tensor") for p in self.params.values())

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average (call after ``optimizer.step()``)."""
        shadow, params = list(self.shadow.values()), [p.detach() for p in self.params.values()]
        if self._local:
            torch._foreach_lerp_(shadow, params, 1.0 - self.decay)
        else:  # DTensor shards: elementwise on the local shard, no communication
            for s, p in zip(shadow, params):
                s.lerp_(p, 1.0 - self.decay)

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """The model carries the EMA weights inside the ``with`` block (validation), its own after."""
        saved = {n: p.detach().clone() for n, p in self.params.items()}
        try:
            for n, p in self.params.items():
                p.copy_(self.shadow[n])
            yield
        finally:
            for n, p in self.params.items():
                p.copy_(saved[n])

    def full(self) -> dict[str, torch.Tensor]:
        """Whole CPU tensors (gathered from the shards under FSDP2: collective)."""
        return {n: (s.full_tensor() if hasattr(s, "full_tensor") else s).detach().cpu().clone()
                for n, s in self.shadow.items()}

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": dict(self.shadow)}

    @torch.no_grad()
    def load_state_dict(self, state) -> None:
        missing = sorted(set(self.shadow) - set(state["shadow"]))
        if missing:
            raise ValueError(f"the checkpoint's EMA lacks {len(missing)} parameters (e.g. {missing[0]}); "
                             f"resume with the model it was trained with")
        for n, s in self.shadow.items():
            src = state["shadow"][n]
            if hasattr(s, "full_tensor") and not hasattr(src, "full_tensor"):
                from torch.distributed.tensor import distribute_tensor

                src = distribute_tensor(src.to(s.device), s.device_mesh, s.placements)
            s.copy_(src)
