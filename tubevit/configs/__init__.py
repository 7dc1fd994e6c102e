"""Typed training configuration: dataclasses with the defaults (schema.py) and their resolution
from presets, YAML files, shortcut flags and ``--set`` overrides (load.py)."""

from tubevit.configs.load import apply_updates, config_from_dict, load_config, parse_set, save_config, validate
from tubevit.configs.schema import (
    AGGREGATIONS, PRECISIONS, DataConfig, EvalConfig, OptimConfig, SourceConfig, TrainConfig, default_config,
)

__all__ = [
    "AGGREGATIONS", "PRECISIONS", "DataConfig", "EvalConfig", "OptimConfig", "SourceConfig", "TrainConfig",
    "apply_updates", "config_from_dict", "default_config", "load_config", "parse_set", "save_config", "validate",
]
