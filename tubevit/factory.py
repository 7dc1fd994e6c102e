"""Building models by name or from a file, above both ``model/`` (the architecture) and
``convert/`` (foreign weights), so neither has to import the other's callers.

* :func:`create_model`: a preset, optionally initialised from ``pretrained`` (an image ViT in any
  supported format, a ``tubevit convert`` output, or a TubeViT file of the same architecture);
* :func:`from_pretrained`: the model a whole-model file describes (training checkpoint, export,
  save_pretrained folder), with its heads, class names and preprocessing, in eval mode.
"""

from __future__ import annotations

from typing import Mapping

import torch

from tubevit.io import build_model, read_model_file
from tubevit.model.presets import preset_config
from tubevit.model.tubevit import TubeViT

__all__ = ["create_model", "from_pretrained", "model_for_run"]


def create_model(
    name: str = "tubevit_base",
    *,
    num_classes: int | Mapping[str, int] | None = None,
    tubes=None,
    tokenizer: str | None = None,
    device: str | torch.device | None = None,
    pretrained: str | None = None,
    inflate: str = "central",
    keep_classifier: bool = False,
    **overrides,
) -> TubeViT:
    """Build a preset (``tubevit_tiny``, ``_small``, ``_base``, ``_large``, ``_huge``).

    ``num_classes`` is an int (one head named ``default``) or ``{dataset: classes}``; any
    ``ModelConfig`` field can be overridden by keyword. ``device="meta"`` builds without
    allocating memory, for inspecting the large presets.

    ``pretrained`` is an image ViT checkpoint (timm / Hugging Face ``.safetensors|.pth|.bin`` or
    save_pretrained folder, Google ``.npz``; converted on the fly, video tubes inflated by
    ``inflate`` = ``central`` | ``average``), a ``tubevit convert`` output, or a TubeViT file of
    this architecture (its heads are kept where name and size agree); only ``pool.*``, ``heads.*``
    and ``gate.*`` may be new. ``keep_classifier`` keeps the image classifier as the head
    ``imagenet``. The file's preprocessing (mean/std) becomes ``model.pretrained_cfg``. See docs/PRETRAINED.md.
    """
    if num_classes is not None:
        overrides["num_classes"] = {"default": int(num_classes)} if isinstance(num_classes, int) else dict(num_classes)
    if tubes is not None:
        overrides["tubes"] = tubes
    if tokenizer is not None:
        overrides["tokenizer"] = tokenizer
    cfg = preset_config(name, **overrides)
    if device is not None:
        with torch.device(device):
            model = TubeViT(cfg)
    else:
        model = TubeViT(cfg)
    if pretrained is not None:
        from tubevit.convert.image_vit import load_pretrained

        load_pretrained(model, pretrained, inflate=inflate, keep_classifier=keep_classifier,
                        reader="create_model(pretrained=)")
    return model


def from_pretrained(path, *, device: str | torch.device | None = None) -> TubeViT:
    """The TubeViT stored in ``path`` (``last.pt``/``best.pt``, an exported ``.safetensors``, or a
    save_pretrained folder), strictly loaded, in eval mode, with ``class_names`` and
    ``pretrained_cfg`` (mean, std, clip settings) from the file. The checksum is verified and the
    tensor shapes are checked against the config before anything is built."""
    reader = "tubevit.from_pretrained"
    model = build_model(read_model_file(path, reader=reader), reader=reader)
    return model.to(device) if device is not None else model


def model_for_run(model_cfg, *, preset: str, init_from: str = "", inflate: str = "central",
                  scale_from: str = "") -> TubeViT:
    """The initial model of a training run: ``TubeViT(model_cfg)``, loaded from ``init_from``
    (any file ``create_model(pretrained=)`` takes), or with ``scale_from`` the §3.6 scaled model
    (``tubevit.convert.scaling.scaled_model``: the small model's tubes, ``init_from``'s blocks).
    The trainer calls this and only receives a model."""
    if scale_from:
        from tubevit.convert.scaling import scaled_model

        return scaled_model(scale_from, init_from, model_cfg, preset=preset,
                            where=f"--scale-from {scale_from} --init-from {init_from} --model {preset}")
    model = TubeViT(model_cfg)  # model.freeze_until / gate_layer (§3.6) act inside the model
    if init_from:
        from tubevit.convert.image_vit import load_pretrained

        load_pretrained(model, init_from, inflate=inflate, reader="tubevit train --init-from")
    return model
