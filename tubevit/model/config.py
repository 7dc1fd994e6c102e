"""The model's configuration: every model default lives here, once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    # Backbone width d. Must be a multiple of 6 for the 3-axis sin-cos embedding (§3.3).
    width: int = 768
    # Number of transformer blocks (B 12, L 24, H 32; §5 Table 10).
    depth: int = 12
    # Attention heads; width must divide evenly.
    num_heads: int = 12
    # Hidden width of each block's MLP (4x width in every paper size).
    mlp_dim: int = 3072
    # A named tube set (paper, two_tube, image2d, charades, dense) or a list of tube dicts
    # {kernel, stride, offset, s2d, name}; see tubevit.model.tubes.
    tubes: Any = "paper"
    # The paper's tubes are laid out in pixels for 224 x 224 frames. "auto" scales a named set's
    # spatial strides and offsets from 224 to the training frame size (data.size; the trainer
    # resolves it into an explicit tube list, so config.yaml and checkpoints rebuild it exactly);
    # a number scales by that factor. The 1x16x16 image tube is never scaled. See
    # tubevit.model.tubes.scale_tube and docs/MODEL.md, "Size-aware tube sets".
    tube_scale: float | str = "auto"
    # Scale the spatial kernel sizes too (off: the kernels, hence the weights, stay the paper's).
    tube_scale_kernels: bool = False
    # multi | s2d | interpolated (§3.4). s2d with the paper set is the paper's main model.
    tokenizer: str = "s2d"
    # One linear head per dataset (§3.5): {"k400": 400, "imagenet": 1000}.
    num_classes: dict = field(default_factory=lambda: {"default": 1000})
    # RGB input.
    in_chans: int = 3
    # ViT convention (timm, big_vision): biased qkv projection.
    qkv_bias: bool = True
    # Dropout inside blocks (attention output and MLP); 0 in the paper's recipe.
    dropout: float = 0.0
    # Dropout on attention weights.
    attn_dropout: float = 0.0
    # Stochastic depth, rising linearly to this rate at the last block.
    drop_path: float = 0.0
    # Dropout before each head (§5: 0.3 SSv2, 0.2 Charades).
    head_dropout: float = 0.0
    # LayerScale init value (None: no layer scale, as in the original ViT).
    layer_scale: float | None = None
    # Position embedding (Table 7a ablation): sincos_centres (the paper's: fixed sin-cos at each
    # tube's centre in input pixels/frames, 84.5) | sincos_grid (the same sin-cos at each token's
    # index in its own tube's grid, i.e. without stride and offset, 77.7) | learned (a learned
    # table per axis over integer centre coordinates, 79.2) | none (78.6). See model/pos_embed.py.
    pos_embed: str = "sincos_centres"
    # Table 7d: in eval mode multiply every tube's spatial stride by this (< 1: more tokens than in
    # training, the same weights); training is unaffected. 1 = evaluate as trained.
    eval_stride_scale: float = 1.0
    # tau of the sin-cos position embedding (§3.3, Eq. 6).
    pos_tau: float = 10000.0
    # The sin-cos embedding fills 6 channels per frequency, so it needs width % 6 == 0. The paper's
    # L and H widths (1024, 1280) are not multiples of 6 (they leave 4 and 2 channels over); with
    # this set, those last width % 6 channels carry no position (zero). Off: such a width is an error.
    pos_zero_fill: bool = False
    # LayerNorm epsilon; 1e-6 as in ViT/big_vision, so imported image ViTs match exactly.
    norm_eps: float = 1e-6
    # Recompute block activations in backward to save memory.
    grad_checkpointing: bool = False
    # Image-to-video scaling (§3.6, Eq. 8). The tokenizer and blocks[:freeze_until] are frozen
    # (requires_grad False) and run under no_grad, so they store no activations; 0 freezes nothing.
    freeze_until: int = 0
    # Index of the block whose output gets the gated shortcut tanh(alpha) * z0 (None: no gate). The
    # paper puts it at the first trained layer, i.e. gate_layer == freeze_until.
    gate_layer: int | None = None
    # One alpha per channel instead of one scalar (the paper does not say which it used).
    gate_per_channel: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not isinstance(self.tubes, str):
            d["tubes"] = [t.to_dict() if hasattr(t, "to_dict") else dict(t) for t in self.tubes]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; valid keys: {sorted(valid)}")
        return cls(**d)

    def replace(self, **changes) -> "ModelConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; valid keys: "
                             f"{sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)
