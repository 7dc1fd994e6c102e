"""The writers: training checkpoint, shareable ``.safetensors``, ``save_pretrained`` folder. Each
stores the schema of :mod:`tubevit.io.schema` with the checksum of its tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from tubevit.io import files
from tubevit.io.checksum import tensor_checksum
from tubevit.io.errors import ModelFileError
from tubevit.io.model_file import meta_for_model
from tubevit.io.schema import FORMAT, TRAINING_CHECKPOINT, WEIGHTS, ModelMeta


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write a training checkpoint dict (``tubevit.engine.checkpoint`` lists its keys) atomically,
    stamped with the schema's ``format``, ``kind`` and the checksum of ``state["model"]``."""
    state["format"], state["kind"] = FORMAT, TRAINING_CHECKPOINT
    state["checksum"] = tensor_checksum(state["model"])
    return files.atomic_save(state, path)


def write_weights(state_dict: Mapping, meta: ModelMeta, path: str | Path) -> Path:
    """A ``.safetensors`` file with the schema in its header (the checksum is recomputed)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelFileError(f"write model weights to a .safetensors file (or a folder), not {path.name}")
    meta.checksum = tensor_checksum(state_dict)
    return files.write_safetensors(state_dict, meta.to_strings(), path)


def write_folder(state_dict: Mapping, meta: ModelMeta, folder: str | Path) -> Path:
    """The Hugging Face layout: ``config.json`` (the schema, plus ``model_type: tubevit``) and
    ``model.safetensors`` (the same schema in its header, so the file alone is complete too)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ModelFileError(f"{folder} is a file; save_pretrained writes a folder")
    write_weights(state_dict, meta, folder / files.WEIGHTS_NAME)
    config = {"model_type": "tubevit", "architectures": ["TubeViT"], **meta.to_json()}
    files.write_json(config, folder / files.CONFIG_NAME)
    return folder


def save_pretrained(model, folder: str | Path, *, provenance: Mapping | None = None) -> Path:
    """``model`` (its config, class names, preprocessing) as a folder, or as one file when
    ``folder`` ends in ``.safetensors``."""
    sd = {k: v for k, v in model.state_dict().items()}
    meta = meta_for_model(model, kind=WEIGHTS, provenance=provenance, state_dict=sd)
    if str(folder).endswith(".safetensors"):
        return write_weights(sd, meta, folder)
    return write_folder(sd, meta, folder)
