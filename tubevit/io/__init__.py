"""Model files: the only code that reads or writes them, with one versioned metadata schema.

=====================  ==========================================  =====================================
kind                   written by                                   holds
=====================  ==========================================  =====================================
training checkpoint    ``tubevit train`` (last.pt, best.pt)          weights, optimizer, RNG, data state
weights .safetensors   ``tubevit export``, ``save_pretrained(X.st)``  weights + schema in the header
folder                 ``TubeViT.save_pretrained(dir)``             config.json + model.safetensors
converted              ``tubevit convert``                          image-ViT weights for a TubeViT
=====================  ==========================================  =====================================

Every file carries the schema of :mod:`tubevit.io.schema` (model config, class names,
preprocessing, provenance, checksum). :func:`read_model_file` reads each kind (and foreign
image-ViT files for ``convert``); tensor shapes are checked against the config before a model is
built; the checksum is verified on every load. See docs/PRETRAINED.md ("The file contract").
"""

from tubevit.io.checksum import tensor_checksum, verify_checksum
from tubevit.io.errors import ModelFileError
from tubevit.io.files import atomic_save, atomic_write, load_torch
from tubevit.io.model_file import (CONVERTED, HF_FOLDER, IMAGE_VIT, ModelFile, attach_meta, build_model, check_shapes,
                                   meta_for_model, read_model_file)
from tubevit.io.save import save_checkpoint, save_pretrained, write_folder, write_weights
from tubevit.io.schema import FORMAT, TRAINING_CHECKPOINT, WEIGHTS, ModelMeta, Preprocessing

__all__ = [
    "CONVERTED", "FORMAT", "HF_FOLDER", "IMAGE_VIT", "TRAINING_CHECKPOINT", "WEIGHTS", "ModelFile", "ModelFileError",
    "ModelMeta", "Preprocessing", "atomic_save", "atomic_write", "attach_meta", "build_model", "check_shapes",
    "load_torch", "meta_for_model", "read_model_file", "save_checkpoint", "save_pretrained", "tensor_checksum",
    "verify_checksum", "write_folder", "write_weights",
]
