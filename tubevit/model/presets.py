"""Model sizes (paper §5, Table 10; tiny and small added for quick work, widths divisible by 6)."""

from __future__ import annotations

from tubevit.model.config import ModelConfig

# name: (width, depth, heads, mlp_dim). Widths 1024 and 1280 are not multiples of 6, so those
# presets zero-fill the width % 6 channels the sin-cos embedding leaves over (see ModelConfig).
SIZES = {
    "tubevit_tiny": (192, 12, 3, 768),
    "tubevit_small": (384, 12, 6, 1536),
    "tubevit_base": (768, 12, 12, 3072),
    "tubevit_large": (1024, 24, 16, 4096),
    "tubevit_huge": (1280, 32, 16, 5120),
}


def list_models() -> list[str]:
    return list(SIZES)


def preset_config(name: str, **overrides) -> ModelConfig:
    """The ModelConfig of a preset, with any field overridden (unknown fields are an error)."""
    if name not in SIZES:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}")
    width, depth, heads, mlp = SIZES[name]
    base = ModelConfig(width=width, depth=depth, num_heads=heads, mlp_dim=mlp, pos_zero_fill=width % 6 != 0)
    return base.replace(**overrides)
