"""Fixed sin-cos position embedding at tube centres (paper §3.3, Eqs. 3-7).

Each token is embedded at the centre of its tube in input coordinates ``(t, y, x)`` (frame index,
pixel row, pixel column), which accounts for each tube's stride, offset and kernel: the variant
that gave 84.5 top-1 in Table 7a against 77.7 for the same embedding without stride and offset.

With ``tau = 10000`` and ``K = d // 6`` frequencies ``w_j = 1 / tau**(j / K)`` (the paper writes
``1/tau^j`` and leaves the normalisation of ``j`` open; dividing by K is the usual choice and keeps
the frequencies in (1/tau, 1]), channels ``6j .. 6j+5`` of a token are::

    sin(t w_j), cos(t w_j), sin(x w_j), cos(x w_j), sin(y w_j), cos(y w_j)

``d`` must be a multiple of 6, or ``zero_fill`` set: then the last ``d % 6`` channels are zero
(the paper's 1024 and 1280 widths are not multiples of 6 and the paper does not say what it did).
Because the table is computed, the model accepts any frame count
and frame size; nothing is stored in the state dict.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import torch


def check_width(dim: int, zero_fill: bool) -> None:
    if dim < 6 or (dim % 6 and not zero_fill):
        raise ValueError(
            f"width {dim} is not a multiple of 6, which the 3-axis sin-cos position embedding needs (§3.3, "
            f"six channels per frequency); use a multiple of 6 (192, 384, 768, ...) or set pos_zero_fill=True "
            f"to leave the last {dim % 6} channels without position, as the large and huge presets do"
        )


def sincos_from_centres(centres: torch.Tensor, dim: int, tau: float = 10000.0, zero_fill: bool = False) -> torch.Tensor:
    """``centres [N, 3]`` in ``(t, y, x)`` -> embedding ``[N, dim]`` (float64 for exactness)."""
    check_width(dim, zero_fill)
    k = dim // 6
    c = centres.to(torch.float64)
    omega = 1.0 / tau ** (torch.arange(k, dtype=torch.float64) / k)  # [K]
    t, y, x = (c[:, i, None] * omega for i in range(3))  # each [N, K]
    # [N, K, 6] -> [N, 6K]: the six channels of one frequency are adjacent (Eq. 7).
    emb = torch.stack([t.sin(), t.cos(), x.sin(), x.cos(), y.sin(), y.cos()], dim=-1).reshape(c.shape[0], 6 * k)
    return torch.nn.functional.pad(emb, (0, dim - 6 * k))


def _cacheable(table: torch.Tensor) -> bool:
    """Only a plain eager tensor may be kept. Under ``torch.export`` / ``torch.onnx.export`` (fake
    or functional tensors) or ``torch.compile`` (graph values) the table is a stand-in valid only
    inside that trace; caching it would make every later eager forward return a FakeTensor."""
    if type(table) is not torch.Tensor:  # FakeTensor, FunctionalTensor and other subclasses
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(table)


class PositionCache:
    """Computes the embedding for an input shape once and keeps it per (shape, device, dtype).

    Bounded (LRU) so that evaluating on many frame counts does not grow memory without limit.
    """

    def __init__(self, dim: int, tau: float = 10000.0, zero_fill: bool = False, max_entries: int = 32):
        check_width(dim, zero_fill)
        self.dim, self.tau, self.zero_fill, self.max_entries = dim, tau, zero_fill, max_entries
        self._cache: OrderedDict = OrderedDict()

    def get(self, key: tuple, centres_fn, device: torch.device, dtype: torch.dtype, *, zeros: int | None = None,
            raw: bool = False) -> torch.Tensor:
        """The sin-cos table of ``centres_fn()`` (``[N, 3]`` positions); ``zeros=N``: an all-zero
        ``[N, d]`` table (no position embedding); ``raw``: the positions themselves, floored, as
        ``dtype`` (the learned variant's indices)."""
        full_key = (key, str(device), dtype)
        hit = self._cache.get(full_key)
        if hit is not None:
            self._cache.move_to_end(full_key)
            return hit
        if zeros is not None:
            table = torch.zeros(zeros, self.dim, device=device, dtype=dtype)
        elif raw:
            table = torch.tensor(centres_fn(), dtype=torch.float64).floor().to(device=device, dtype=dtype)
        else:
            centres = torch.tensor(centres_fn(), dtype=torch.float64)
            table = sincos_from_centres(centres, self.dim, self.tau, self.zero_fill).to(device=device, dtype=dtype)
        if _cacheable(table):
            self._cache[full_key] = table
            if len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return table

    def clear(self) -> None:
        self._cache.clear()


def reference_embedding(t: float, y: float, x: float, dim: int, tau: float = 10000.0) -> list[float]:
    """Scalar closed form of Eq. 7 for one position: the definition the tests check against."""
    k = dim // 6
    out: list[float] = []
    for j in range(k):
        w = 1.0 / tau ** (j / k)
        out += [math.sin(t * w), math.cos(t * w), math.sin(x * w), math.cos(x * w), math.sin(y * w), math.cos(y * w)]
    return out + [0.0] * (dim - 6 * k)


def centres_key(input_thw: Sequence[int]) -> tuple:
    return tuple(int(v) for v in input_thw)


POS_EMBEDS = ("sincos_centres", "sincos_grid", "learned", "none")


class LearnedPosition(torch.nn.Module):
    """The "learned" row of Table 7a, for any input size: one learned table per axis indexed by
    the token's integer centre coordinate (frame, row, column; rounded down, clamped to the table),
    summed. The paper does not describe its learned variant; a per-token table would tie the
    model to one token count, which the computed embeddings avoid."""

    def __init__(self, dim: int, max_frames: int = 256, max_pixels: int = 512):
        super().__init__()
        self.t = torch.nn.Parameter(torch.zeros(max_frames, dim))
        self.y = torch.nn.Parameter(torch.zeros(max_pixels, dim))
        self.x = torch.nn.Parameter(torch.zeros(max_pixels, dim))
        for p in (self.t, self.y, self.x):
            torch.nn.init.trunc_normal_(p, std=0.02)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """``index [N, 3]`` integer ``(t, y, x)`` -> ``[N, d]``."""
        t = index[:, 0].clamp(0, self.t.shape[0] - 1)
        y = index[:, 1].clamp(0, self.y.shape[0] - 1)
        x = index[:, 2].clamp(0, self.x.shape[0] - 1)
        return self.t[t] + self.y[y] + self.x[x]
