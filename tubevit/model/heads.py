"""Readout (paper §3.1, Table 12: "Attention Pooling + FC") and one linear head per dataset (§3.5).

There is no CLS token. A learned query attends over all tokens (multi-head attention pooling),
giving one ``[B, d]`` vector that every dataset's linear head reads. Unlike big_vision's MAP head
there is no MLP after the attention: the paper says "Attention Pooling + FC", and without the MLP
the parameter counts come out at the paper's (B 90.4M vs 90M, L 310M vs 311M; docs/MODEL.md). Joint image+video training sends each batch through its own head.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class AttentionPool(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.probe = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.probe, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, N, d]`` -> pooled ``[B, d]``."""
        b, n, d = x.shape
        h = self.num_heads
        q = self.q(self.probe).reshape(1, h, 1, d // h).expand(b, -1, -1, -1)  # [B, h, 1, d/h]
        k, v = self.kv(x).reshape(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)  # [B, h, N, d/h] each
        y = F.scaled_dot_product_attention(q, k, v).reshape(b, d)
        return self.proj(y)


def init_head(head: nn.Linear) -> None:
    """A classifier's init: small truncated-normal weights (std 0.02, the timm ViT convention)
    and zero bias, so the logits start near 0 and the loss at init is ln K (docs/TRAINING.md)."""
    nn.init.trunc_normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)


class DatasetHeads(nn.ModuleDict):
    """One ``Linear(d, classes)`` per dataset name (state-dict keys ``heads.{name}.weight``),
    with dropout before it (§5: 0.3 for SSv2, 0.2 for Charades)."""

    def __init__(self, dim: int, num_classes: dict[str, int], dropout: float = 0.0):
        if not num_classes:
            raise ValueError("give at least one head, e.g. num_classes={'k400': 400}")
        super().__init__({name: nn.Linear(dim, int(n)) for name, n in num_classes.items()})
        self.dropout = float(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every head to :func:`init_head`. The model calls this after its model-wide init, which
        would otherwise leave xavier-uniform weights here (std ~0.1 for 192 -> 10: logits of
        std ~1 at init, a loss above ln K and a head that dominates the first updates)."""
        for head in self.values():
            init_head(head)

    @property
    def names(self) -> list[str]:
        return list(self.keys())

    def resolve(self, head: str | None) -> str:
        if head is None:
            if len(self) == 1:
                return next(iter(self.keys()))
            raise ValueError(f"this model has several heads {self.names}; pass head=NAME")
        if head not in self:
            raise ValueError(f"unknown head {head!r}; this model has heads {self.names}")
        return head

    def forward(self, pooled: torch.Tensor, head: str | None = None) -> torch.Tensor:
        pooled = F.dropout(pooled, self.dropout, self.training)
        return self[self.resolve(head)](pooled)
