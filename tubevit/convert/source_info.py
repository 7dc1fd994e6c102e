"""What a source checkpoint says about itself besides its tensors: the model size (from a Hugging
Face ``config.json`` or from the weights' shapes), the class names (``id2label``) and the input
normalisation its weights expect (paper §4 starts from image ViTs; feeding them inputs normalised
otherwise than in their own training shifts every activation).

Mean/std by source, most specific first:

1. a ``preprocessor_config.json`` beside the weights (``image_mean`` / ``image_std``), or the
   ``pretrained_cfg`` (``mean`` / ``std``) of a timm hub folder's ``config.json``;
2. Google ``.npz`` (ViT, AugReg, big_vision) and Hugging Face ViT weights (``google/vit-*``, whose
   ``ViTImageProcessor`` defaults to 0.5): inputs in [-1, 1], mean = std = 0.5;
3. timm: its ViT default (``IMAGENET_INCEPTION_MEAN/STD`` = 0.5, the ``_cfg`` of
   ``vision_transformer.py``); DeiT and DINO weights use ImageNet statistics instead, which the
   weights alone cannot tell: set ``data.mean`` / ``data.std`` for those.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch

from tubevit.convert.formats import ConversionError
from tubevit.io.schema import INCEPTION_MEAN, INCEPTION_STD, Preprocessing
from tubevit.model.config import ModelConfig
from tubevit.model.presets import SIZES, preset_config

log = logging.getLogger("tubevit.convert")


def preprocessing_for(source_format: str, hf_config: Mapping | None = None,
                      preprocessor: Mapping | None = None) -> Preprocessing:
    """Mean/std of a source (module doc); clip settings are left unknown (an image model)."""
    if preprocessor and preprocessor.get("image_mean") and preprocessor.get("image_std"):
        return Preprocessing(preprocessor["image_mean"], preprocessor["image_std"], source="preprocessor_config.json")
    pcfg = (hf_config or {}).get("pretrained_cfg") or {}
    if pcfg.get("mean") and pcfg.get("std"):
        return Preprocessing(pcfg["mean"], pcfg["std"], source="config.json pretrained_cfg")
    if source_format in ("npz", "hf"):
        return Preprocessing(INCEPTION_MEAN, INCEPTION_STD, source=f"{source_format} default (inputs in [-1, 1])")
    if source_format == "timm":
        return Preprocessing(INCEPTION_MEAN, INCEPTION_STD, source="timm ViT default (0.5; DeiT/DINO: set data.mean/std)")
    return Preprocessing()


def hf_overrides(config: Mapping) -> dict:
    """ModelConfig fields from a Hugging Face ViT ``config.json``."""
    if config.get("model_type") not in (None, "vit"):
        raise ConversionError(f"config.json has model_type {config.get('model_type')!r}; only plain ViT ('vit') "
                              "folders are converted")
    out = {}
    for ours, theirs in (("width", "hidden_size"), ("depth", "num_hidden_layers"),
                         ("num_heads", "num_attention_heads"), ("mlp_dim", "intermediate_size"),
                         ("norm_eps", "layer_norm_eps"), ("qkv_bias", "qkv_bias")):
        if theirs in config:
            out[ours] = config[theirs]
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_python"):
        raise ConversionError(f"config.json has hidden_act {act!r}; TubeViT's MLP uses exact GELU")
    if int(config.get("num_channels", 3)) != 3:
        out["in_chans"] = int(config["num_channels"])
    return out


def id2label(config: Mapping | None, n: int) -> list[str] | None:
    """Class names from ``id2label`` when it names every one of ``n`` classes."""
    labels = (config or {}).get("id2label")
    if not isinstance(labels, Mapping) or len(labels) != n:
        return None
    try:
        return [str(labels[str(i)] if str(i) in labels else labels[i]) for i in range(n)]
    except KeyError:
        return None


def infer_size(canon: Mapping[str, torch.Tensor], heads: int | None = None) -> tuple[str, dict]:
    """``(preset name, overrides)`` from the timm-named tensors' shapes: width from the patch
    kernel, depth from the block indices, MLP width from fc1, heads from the file when it records
    them (Google format) or else the preset's."""
    width = int(canon["patch_embed.proj.weight"].shape[0])
    depth = 1 + max(int(k.split(".")[1]) for k in canon if k.startswith("blocks."))
    mlp = int(canon["blocks.0.mlp.fc1.weight"].shape[0]) if "blocks.0.mlp.fc1.weight" in canon else 4 * width
    for name, (w, d, h, m) in SIZES.items():
        if (w, d, m) == (width, depth, mlp) and heads in (None, h):
            return name, {}
    # No preset of this size: the closest width's preset with the size set explicitly.
    name = min(SIZES, key=lambda n: abs(SIZES[n][0] - width))
    over = {"width": width, "depth": depth, "mlp_dim": mlp, "num_heads": heads or max(1, width // 64),
            "pos_zero_fill": width % 6 != 0}
    log.info("convert: no preset has width %d, depth %d, MLP %d; using %s with those sizes", width, depth, mlp, name)
    return name, over


def config_for(model: str | None, canon: Mapping[str, torch.Tensor], *, hf_config: Mapping | None = None,
               heads: int | None = None, **overrides) -> tuple[str, ModelConfig]:
    """The target ModelConfig: the named preset, else the HF config.json's size, else the shapes'."""
    size: dict = {}
    if hf_config is not None:
        size = hf_overrides(hf_config)
    if model is None:
        model, shape_size = infer_size(canon, heads=size.get("num_heads", heads))
        size = {**shape_size, **size}
        if "width" in size:
            size.setdefault("pos_zero_fill", int(size["width"]) % 6 != 0)
    elif hf_config is not None:
        size = {k: v for k, v in size.items() if k in ("norm_eps", "qkv_bias", "in_chans")}
    return model, preset_config(model, **{**size, **overrides})
