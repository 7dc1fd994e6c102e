"""A standard pre-norm ViT encoder (paper §3.1: TubeViT keeps the ViT unchanged).

Parameter names follow the timm ViT convention (``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv``,
``blocks.{i}.attn.proj``, ``blocks.{i}.mlp.fc1``, ``blocks.{i}.mlp.fc2``) so that image-ViT
weights map by renaming. Tokens are ``[B, N, d]`` throughout.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


# Above this many tokens the explicit [N, N] attention matrix costs more memory than it saves time.
EXPLICIT_ATTENTION_MAX_TOKENS = 2048


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d_head)) v`` over ``[B, heads, N, d_head]``.

    PyTorch's SDPA dispatcher everywhere (flash attention on CUDA), except bf16 on CPU up to 2048
    tokens: there the plain two-matmul form trains about 2.8x faster than SDPA's CPU flash kernel
    at 539 tokens (its backward is the slow part) and infers at least as fast, at the same accuracy
    (docs/BENCHMARKS.md, Model). Its ``[N, N]`` matrix is why it stops at 2048 tokens.
    """
    n = q.shape[-2]
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and n <= EXPLICIT_ATTENTION_MAX_TOKENS:
        attn = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1)  # [B, heads, N, N]
        return F.dropout(attn, dropout_p) @ v if dropout_p else attn @ v
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and PyTorch's fused SDPA kernels."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # [B, N, 3d] -> [3, B, heads, N, d/heads]
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = attention(q, k, v, self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(b, n, d)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability ``p``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``: the two-line pre-norm residual."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, layer_scale: float | None = None, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim, drop)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
