"""One optimizer step: autocast forward through the batch's head, loss (label smoothing or
Mixup/CutMix soft targets), backward over ``grad_accum`` micro-batches (DDP syncs only on the
last; FSDP2 reduce-scatters after each, keeping gradients sharded), unscale (fp16), clip, optimizer and schedule step.

Nothing here reads a value back to the host: losses stay on the device and the trainer syncs
them at log intervals only.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from tubevit.data.transforms import MixupCutmix
from tubevit.model.precision import autocast, grad_scaler

__all__ = ["Micro", "TrainStep", "soft_cross_entropy"]

# (head name, input [B, C, (T,) H, W], labels [B]) of one micro-batch.
Micro = tuple[str, torch.Tensor, torch.Tensor]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets ``[B, K]`` (rows sum to 1), averaged over the batch."""
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


class TrainStep:
    """Holds what a step needs; ``__call__(micros, generator)`` runs one optimizer step and returns
    the per-micro-batch losses as device tensors (unscaled, before the 1/accum factor)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        *,
        device: torch.device,
        num_classes: dict[str, int],
        precision: str = "fp32",
        clip_grad: float = 0.0,
        label_smoothing: float = 0.0,
        mix: MixupCutmix | None = None,
    ):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.device, self.precision = device, precision
        self.num_classes = dict(num_classes)
        self.clip_grad, self.label_smoothing, self.mix = clip_grad, label_smoothing, mix
        self.scaler = grad_scaler(device, precision)  # fp16 only; bf16 has fp32's exponent range
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.last_grad_norm: torch.Tensor | None = None  # before clipping; a device tensor

    def loss(self, head: str, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.mix is not None:
            x, target = self.mix(x, y, self.num_classes[head], generator=generator)
        with autocast(self.device, self.precision):
            logits = self.model(x, head=head)
        logits = logits.float()  # the loss in fp32 whatever the autocast dtype
        if self.mix is not None:
            return soft_cross_entropy(logits, target.to(logits.device))
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def __call__(self, micros: Sequence[Micro], generator: torch.Generator | None = None) -> list[torch.Tensor]:
        losses = []
        n = len(micros)
        for i, (head, x, y) in enumerate(micros):
            last = i == n - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                loss = self.loss(head, x, y, generator)
                self.scaler.scale(loss / n).backward()
            losses.append(loss.detach())
        self.scaler.unscale_(self.optimizer)
        if self.clip_grad > 0:
            # Under FSDP2 the gradients are DTensor shards: the norm is reduced over every rank's
            # shard (the whole model's norm), and every rank scales its shard by the same factor.
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad, foreach=True)
            self.last_grad_norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return losses
