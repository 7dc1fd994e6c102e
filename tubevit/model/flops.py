"""Forward cost of a model on one view, in FLOPs = 2 x multiply-adds.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no memory, no
compute), under the MATH attention backend: the fused CPU/GPU attention kernels are opaque to
the counter, and the math backend exposes attention as the two batched matrix products it is.
``analytic_flops`` is the same count in closed form, and the tests hold the two together.
"""

from __future__ import annotations

import copy

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tubevit.model.tubes import TubeLayout


def count_flops(model: torch.nn.Module, input_shape, head: str | None = None) -> int:
    """FLOPs of one forward on a single input of shape ``(C, T, H, W)`` or ``(C, H, W)``."""
    meta = model if next(model.parameters()).device.type == "meta" else copy.deepcopy(model).to("meta")
    meta.eval()
    x = torch.empty((1, *input_shape), device="meta")
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(x, head=head)
    return int(counter.get_total_flops())


def analytic_flops(cfg, layout: TubeLayout, num_classes: int) -> int:
    """Closed-form FLOPs of one forward (2 per multiply-add; biases, norms, softmax not counted)."""
    d, hid, n = cfg.width, cfg.mlp_dim, layout.total
    flops = 0
    for spec, grid in zip(layout.specs, layout.grids):
        k = spec.kernel[0] * spec.kernel[1] * spec.kernel[2] * cfg.in_chans
        # A space-to-depth tube computes S outputs of d/S channels per token.
        positions = grid[0] * grid[1] * grid[2] * spec.s2d_factor
        flops += 2 * k * (d // spec.s2d_factor) * positions
    per_block = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * hid
    flops += cfg.depth * per_block
    # Attention pooling: probe query, keys/values of all tokens, one query's attention, output.
    flops += 2 * d * d + 2 * n * d * 2 * d + 2 * 2 * n * d + 2 * d * d
    return flops + 2 * d * num_classes


__all__ = ["count_flops", "analytic_flops"]
