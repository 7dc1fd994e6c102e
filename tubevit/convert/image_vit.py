"""Image ViT -> TubeViT weights (paper §4: every result starts from an image-pretrained ViT).

:func:`convert_image_vit` is a pure ``state_dict -> state_dict`` function (plus a report of what
it did); :func:`load_converted` loads its result strictly; :func:`load_pretrained` does both from
a file. ``tubevit.create_model(..., pretrained=PATH)``, ``tubevit train --init-from PATH`` and
``tubevit convert`` all go through them.

What maps where:

* The transformer blocks and the final norm are copied unchanged (TubeViT keeps the ViT, §3.1;
  the names are timm's on both sides).
* The patch kernel ``[d, 3, ph, pw]`` becomes the 1-frame image tube exactly when the sizes agree
  (16x16 -> 1x16x16); otherwise it is PI-resized (FlexiViT) to the tube's size. Every other tube
  is derived from it: PI-resize to the tube's ``(kh, kw)``, then inflate over ``kt`` frames with
  ``central`` or ``average`` (:mod:`tubevit.convert.kernels`). A space-to-depth tube (``d/S``
  output channels) takes the group mean of the patch kernel's channels (``group_average``). The
  ``interpolated`` tokenizer's single 8x8x8 kernel is chosen so that its resize to the image tube
  is the least-squares closest to the patch kernel (``interpolated_base``); it cannot be exact.
  Tube biases follow the same channel mapping.
* Dropped, each said in one log line: the learned position table (TubeViT's is fixed sin-cos,
  §3.3), the cls token (TubeViT pools by attention), the classifier unless ``keep_classifier``
  (then it becomes ``heads.{head_name}``), a pre-logits layer, HF's pooler.
* New (initialised fresh, asserted exactly at load): ``pool.*``, ``heads.*`` and ``gate.*``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from tubevit.convert.formats import (ConversionError, StateDict, _preview, detect_format, npz_num_heads, read_file,
                                     to_canonical)
from tubevit.convert.kernels import group_average, interpolated_base, pi_resize, tube_from_patch
from tubevit.convert.source_info import config_for, id2label, preprocessing_for
from tubevit.io import CONVERTED, HF_FOLDER, ModelMeta, write_weights
from tubevit.io.model_file import config_from_meta, expected_shapes
from tubevit.model.config import ModelConfig
from tubevit.model.tokenizer import INTERP_BASE_KERNEL, resolve_specs
from tubevit.model.tubes import get_tube_set, image_tube_index

log = logging.getLogger("tubevit.convert")

# Keys a converted image ViT never provides: the readout, the per-dataset heads and the gate.
NEW_PREFIXES = ("pool.", "heads.", "gate.")


@dataclass
class Conversion:
    """A converted state dict and what happened to every key."""

    state_dict: StateDict
    source_format: str
    copied: list[str] = field(default_factory=list)   # taken over from the checkpoint (renamed)
    derived: list[str] = field(default_factory=list)  # computed: tubes other than the exact image tube
    notes: list[str] = field(default_factory=list)    # one line per drop / fix-up

    def log(self) -> None:
        for line in self.notes:
            log.info("convert (%s): %s", self.source_format, line)
        if self.derived:
            log.info("convert (%s): derived from the patch kernel: %s", self.source_format, ", ".join(self.derived))


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConversionError(msg)


def convert_image_vit(
    state_dict: Mapping[str, torch.Tensor],
    cfg: ModelConfig,
    *,
    inflate: str = "central",
    keep_classifier: bool = False,
    head_name: str = "imagenet",
    fmt: str | None = None,
) -> Conversion:
    """Convert an image-ViT state dict (timm, HF or Google .npz naming) for a TubeViT of config ``cfg``."""
    sd, fmt, notes = to_canonical(state_dict, fmt)
    conv = Conversion({}, fmt, notes=list(notes))
    out = conv.state_dict

    # ---- shapes the config must agree with
    _check("patch_embed.proj.weight" in sd, f"no patch kernel in the {fmt} checkpoint")
    patch = sd.pop("patch_embed.proj.weight")
    bias = sd.pop("patch_embed.proj.bias", None)
    if bias is None:
        bias = patch.new_zeros(patch.shape[0])
        conv.notes.append("the patch embedding has no bias; tube biases set to zero")
    d, c, ph, pw = patch.shape
    _check(d == cfg.width, f"checkpoint width {d} != model width {cfg.width}; pick the preset of that width")
    _check(c == cfg.in_chans, f"checkpoint takes {c} input channels, model {cfg.in_chans}")
    depth = 1 + max((int(m[1]) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    _check(depth == cfg.depth, f"checkpoint has {depth} blocks, model {cfg.depth}; pass depth={depth} or the matching preset")
    mlp = sd.get("blocks.0.mlp.fc1.weight")
    _check(mlp is None or mlp.shape[0] == cfg.mlp_dim, f"checkpoint MLP width {None if mlp is None else mlp.shape[0]} "
           f"!= model mlp_dim {cfg.mlp_dim}")
    heads = npz_num_heads(state_dict) if fmt == "npz" else None
    _check(heads is None or heads == cfg.num_heads, f"checkpoint has {heads} attention heads, model {cfg.num_heads}")

    # ---- dropped
    if (pos := sd.pop("pos_embed", None)) is not None:
        conv.notes.append(f"dropped the learned position table pos_embed {list(pos.shape)}: TubeViT's position "
                          "embedding is fixed sin-cos at tube centres (§3.3)")
    if (cls := sd.pop("cls_token", None)) is not None:
        conv.notes.append(f"dropped the cls token {list(cls.shape)}: TubeViT reads out by attention pooling")
    pre = sorted(k for k in sd if k.startswith("pre_logits."))
    if pre:
        _check(not keep_classifier, "the classifier reads a pre-logits layer TubeViT does not have; it cannot be kept")
        for k in pre:
            sd.pop(k)
        conv.notes.append("dropped the pre-logits (representation) layer")
    hw, hb = sd.pop("head.weight", None), sd.pop("head.bias", None)
    if keep_classifier:
        _check(hw is not None and hw.ndim == 2, "keep_classifier: the checkpoint has no classifier")
        out[f"heads.{head_name}.weight"] = hw
        out[f"heads.{head_name}.bias"] = hb if hb is not None else hw.new_zeros(hw.shape[0])
        conv.copied += [f"heads.{head_name}.weight", f"heads.{head_name}.bias"]
        conv.notes.append(f"kept the classifier ({hw.shape[0]} classes) as heads.{head_name}")
    elif hw is not None and hw.ndim == 2 and hw.shape[0] > 0:
        conv.notes.append(f"dropped the classifier head ({hw.shape[0]} classes); pass keep_classifier to keep it")

    # ---- blocks and final norm: same names on both sides, each checked against the model's own
    # keys and shapes, so a key the model does not have is refused by name before anything is written.
    want = expected_shapes(cfg)
    unknown, wrong = [], []
    for k in sorted(sd):
        if k.startswith("blocks.") or k in ("norm.weight", "norm.bias"):
            v = sd.pop(k)
            if k not in want:
                unknown.append(k)
            elif tuple(v.shape) != want[k]:
                wrong.append(f"{k} {list(v.shape)} vs model {list(want[k])}")
            out[k] = v
            conv.copied.append(k)
    unknown += sorted(sd)
    hint = (" (the checkpoint has LayerScale; build the model with layer_scale set)"
            if any(".ls1." in k or ".ls2." in k for k in unknown) else "")
    _check(not unknown, f"unexpected keys in the {fmt} checkpoint (no TubeViT counterpart): {_preview(unknown)}{hint}")
    _check(not wrong, f"{fmt} checkpoint tensors of another shape than the model's: {'; '.join(wrong[:4])}")
    missing = [k for k in want if (k.startswith("blocks.") or k.startswith("norm.")) and k not in out]
    _check(not missing, f"the {fmt} checkpoint lacks {_preview(missing)}")

    # ---- tubes
    _convert_tubes(conv, patch, bias, cfg, inflate)
    conv.state_dict = {k: v.contiguous() for k, v in out.items()}
    return conv


def _convert_tubes(conv: Conversion, patch: torch.Tensor, bias: torch.Tensor, cfg: ModelConfig, inflate: str) -> None:
    out = conv.state_dict
    specs = resolve_specs(get_tube_set(cfg.tubes), cfg.tokenizer)
    img = image_tube_index(specs)
    ph, pw = patch.shape[-2:]
    if img is None:
        conv.notes.append("the tube set has no 1-frame tube: every tube is derived, none is exact")
    if cfg.tokenizer == "interpolated":
        # One shared kernel; make its resize to the image tube as close to the patch kernel as it can be.
        target = specs[img].kernel[1:] if img is not None else (ph, pw)
        base2d = pi_resize(patch, target)
        out["tokenizer.kernel"] = interpolated_base(base2d, INTERP_BASE_KERNEL, inflate)
        conv.derived.append("tokenizer.kernel")
        for i in range(len(specs)):
            out[f"tokenizer.tubes.{i}.bias"] = bias.clone()
            conv.copied.append(f"tokenizer.tubes.{i}.bias")
        conv.notes.append("interpolated tokenizer: the shared 8x8x8 kernel is the least-squares fit whose resize to "
                          "the image tube matches the patch kernel (not exact: a resized 8x8 kernel cannot be)")
        return
    for i, spec in enumerate(specs):
        s = spec.s2d_factor
        w, b = group_average(patch, s), group_average(bias, s)
        key = f"tokenizer.tubes.{i}"
        if i == img and s == 1 and tuple(spec.kernel[1:]) == (ph, pw):
            out[key + ".weight"] = w.unsqueeze(2)  # [d, 3, 16, 16] -> [d, 3, 1, 16, 16], exact
            conv.copied.append(key + ".weight")
        else:
            out[key + ".weight"] = tube_from_patch(w, spec.kernel, inflate)
            conv.derived.append(key + ".weight")
            if i == img:
                conv.notes.append(f"image tube {spec.label}: "
                                  + (f"space-to-depth x{s} takes the group mean of the patch kernel's channels; "
                                     if s > 1 else "")
                                  + (f"PI-resized from the {ph}x{pw} patch kernel" if tuple(spec.kernel[1:]) != (ph, pw)
                                     else "not exact"))
        out[key + ".bias"] = b
        (conv.derived if s > 1 else conv.copied).append(key + ".bias")


# --------------------------------------------------------------------------- loading

def expected_new_keys(model: torch.nn.Module, provided) -> set[str]:
    """The keys the model has and a converted image ViT does not provide: pool.*, heads.*, gate.*."""
    provided = set(provided)
    return {k for k in model.state_dict() if k.startswith(NEW_PREFIXES) and k not in provided}


def load_converted(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Load strictly, except for exactly the new keys (``pool.*``, ``heads.*``, ``gate.*``), which
    keep their fresh initialisation. Anything else missing, unexpected or of the wrong shape is an
    error naming the keys. Returns the sorted new keys (also logged)."""
    own = model.state_dict()
    new = expected_new_keys(model, state_dict)
    missing = set(own) - set(state_dict) - new
    unexpected = set(state_dict) - set(own)
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {_preview(missing)}")
    if unexpected:
        hint = (" (the checkpoint has LayerScale; build the model with layer_scale set)"
                if any(".ls1." in k or ".ls2." in k for k in unexpected) else "")
        problems.append(f"not in the model: {_preview(unexpected)}{hint}")
    bad = [f"{k} {list(v.shape)} vs model {list(own[k].shape)}" for k, v in state_dict.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        problems.append("shape mismatch: " + "; ".join(bad[:6]) + (" ..." if len(bad) > 6 else ""))
    if problems:
        raise ConversionError("cannot load the converted weights: " + " | ".join(problems))
    result = model.load_state_dict(dict(state_dict), strict=False)
    assert set(result.missing_keys) == new and not result.unexpected_keys, result
    new_sorted = sorted(new)
    groups = sorted({k.split(".")[0] + ".*" if not k.startswith("heads.") else ".".join(k.split(".")[:2]) + ".*"
                     for k in new_sorted})
    log.info("loaded pretrained weights; %d new keys initialised fresh: %s", len(new_sorted), ", ".join(groups))
    return new_sorted


def load_pretrained(
    model: torch.nn.Module,
    source,
    *,
    inflate: str = "central",
    keep_classifier: bool = False,
    head_name: str = "imagenet",
    reader: str = "load_pretrained",
) -> list[str]:
    """Load into ``model``: an image ViT (timm / HF / .npz file or folder, converted on the fly), a
    converted TubeViT ``.safetensors``, or a TubeViT file of the same architecture (a training
    checkpoint or export: its heads are kept where name and size agree, the others stay new).
    ``source`` is a path or a state dict. Sets ``model.preprocessing`` from the file. Returns the new keys."""
    mf = None
    if isinstance(source, Mapping):
        sd = dict(source)
    else:
        sd, mf = read_file(source, reader=reader)
    if mf is not None and mf.is_tubevit:
        _check_same_geometry(mf.meta.model_config, model.cfg, source)
        if mf.kind != CONVERTED:
            sd = _matching_heads(sd, model, source)
        model.preprocessing = mf.meta.preprocessing
    elif detect_format(sd.keys()) != "tubevit":
        hf_cfg = mf.extra.get("config") if mf is not None and mf.kind == HF_FOLDER else None
        conv = convert_image_vit(sd, model.cfg, inflate=inflate, keep_classifier=keep_classifier, head_name=head_name)
        conv.log()
        sd = conv.state_dict
        model.preprocessing = preprocessing_for(conv.source_format, hf_cfg,
                                                mf.extra.get("preprocessor") if mf is not None else None)
        names = id2label(hf_cfg, int(sd[f"heads.{head_name}.weight"].shape[0])) if keep_classifier else None
        if names:
            model.class_names = {**(model.class_names or {}), head_name: names}
    for k in sd:
        if k.startswith("heads.") and k.endswith(".weight"):
            name = k[len("heads."):-len(".weight")]
            if name not in model.heads:
                model.add_head(name, sd[k].shape[0])
                log.info("added head %r (%d classes) for the kept classifier", name, sd[k].shape[0])
    return load_converted(model, sd)


def _matching_heads(sd: Mapping[str, torch.Tensor], model, source) -> dict:
    """A whole TubeViT's state dict with the heads the model does not have (by name and size) left out."""
    out = {}
    own = model.state_dict()
    for k, v in sd.items():
        if k.startswith("heads.") and (k not in own or tuple(own[k].shape) != tuple(v.shape)):
            log.info("%s: not loading %s %s (the model's head differs); it starts fresh", source, k, list(v.shape))
            continue
        out[k] = v
    return out


def _check_same_geometry(saved_config: Mapping, cfg: ModelConfig, source) -> None:
    """A TubeViT file carries the config it was made for; its tubes and size must be the model's."""
    saved = config_from_meta(saved_config, source).to_dict()
    ours = cfg.to_dict()
    diff = [k for k in ("tubes", "tokenizer", "width", "depth", "num_heads", "mlp_dim", "in_chans")
            if json.dumps(saved[k]) != json.dumps(ours[k])]
    if diff:
        raise ConversionError(f"{source} was made for a model with other {', '.join(diff)} "
                              f"({', '.join(f'{k}={saved[k]}' for k in diff)}); convert again for this model, or "
                              "build the model with those options")


def convert_checkpoint(
    src,
    out,
    *,
    model: str | None = None,
    tubes=None,
    tokenizer: str | None = None,
    inflate: str = "central",
    keep_classifier: bool = False,
    **overrides,
) -> dict:
    """``tubevit convert``: read ``src`` (any image-ViT file, or a Hugging Face / timm folder),
    convert for the preset ``model`` (default: the size from the folder's config.json or from the
    weights' shapes) and write ``out`` (.safetensors with the tubevit schema: model config,
    class names, mean/std of the source, provenance). Nothing is written on any error."""
    from tubevit.convert.formats import npz_num_heads, to_canonical

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ConversionError(f"write the converted weights to a .safetensors file, not {out.name}")
    if tubes is not None:
        overrides["tubes"] = tubes
    if tokenizer is not None:
        overrides["tokenizer"] = tokenizer
    sd, mf = read_file(src)
    if mf.is_tubevit:
        raise ConversionError(f"{src} is already {mf.describe()}; convert reads image ViTs (timm, Hugging Face, "
                              "Google .npz)")
    hf_cfg = mf.extra.get("config") if mf.kind == HF_FOLDER else None
    canon = to_canonical(sd)[0]
    model, cfg = config_for(model, canon, hf_config=hf_cfg if hf_cfg and "hidden_size" in hf_cfg else None,
                            heads=npz_num_heads(sd), **overrides)
    conv = convert_image_vit(sd, cfg, inflate=inflate, keep_classifier=keep_classifier)
    conv.log()
    names = {}
    if keep_classifier:
        k = int(conv.state_dict["heads.imagenet.weight"].shape[0])
        cfg = cfg.replace(num_classes={"imagenet": k})
        names = {"imagenet": id2label(hf_cfg, k) or [str(i) for i in range(k)]}
    prep = preprocessing_for(conv.source_format, hf_cfg, mf.extra.get("preprocessor"))
    meta = ModelMeta(CONVERTED, cfg.to_dict(), names, prep,
                     {"source": str(src), "source_format": conv.source_format, "inflate": inflate, "notes": conv.notes})
    write_weights(conv.state_dict, meta, out)
    return {"out": str(out), "source_format": conv.source_format, "model": model, "tokenizer": cfg.tokenizer,
            "inflate": inflate, "tensors": len(conv.state_dict), "copied": len(conv.copied),
            "derived": conv.derived, "notes": conv.notes, "mean": list(prep.mean), "std": list(prep.std),
            "new_keys": "pool.*, heads.*" + (" (heads.imagenet kept)" if keep_classifier else "")}
