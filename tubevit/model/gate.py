"""The gated shortcut of image-to-video scaling (paper §3.6, Eq. 8).

At layer ``s`` the raw tube tokens ``z0`` are added back through a learned gate::

    z_s = MLP(LN(y_s)) + y_s + tanh(alpha) * z0

i.e. ``z_s = Block_s(z_{s-1}) + tanh(alpha) * z0``. ``alpha`` starts at 0, so at the start the
network is exactly the ungated one (``tanh(0) * z0`` is an exact zero). Scalar by default; one
alpha per channel as an option (the paper does not say which it used).

``z0`` is the encoder input, tube tokens *with* the fixed position embedding: in ViT's notation
(Dosovitskiy et al., Eq. 1), which the paper's equations follow, ``z_0 = [x E] + E_pos``.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class GatedShortcut(nn.Module):
    def __init__(self, dim: int, per_channel: bool = False):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(dim if per_channel else ()))

    def forward(self, z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """``z, z0 [B, N, d]`` -> ``z + tanh(alpha) * z0``."""
        return z + torch.tanh(self.alpha) * z0
