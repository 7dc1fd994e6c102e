"""TubeViT model: tube geometry, tokenizers, position embedding, ViT encoder, readout, presets."""

from tubevit.model.config import ModelConfig
from tubevit.model.presets import SIZES, list_models, preset_config
from tubevit.model.tubes import TUBE_SETS, TubeLayout, TubeSpec, get_tube_set, tube_centres, tube_grid, tube_token_count
from tubevit.model.tubevit import TubeViT

__all__ = [
    "ModelConfig", "SIZES", "list_models", "preset_config", "TUBE_SETS", "TubeLayout", "TubeSpec", "get_tube_set",
    "tube_centres", "tube_grid", "tube_token_count", "TubeViT",
]
