"""Image-to-video scaling (paper §3.6, Eq. 8): a large video model from a trained small TubeViT and a
large image ViT, training only the top layers.

:func:`scale_up` builds it:

1. The backbone (blocks, final norm) and the image tube come from the large image ViT, converted
   as in :mod:`tubevit.convert.image_vit` (its 16x16 patch kernel is the 1x16x16 tube exactly).
2. Every video tube (the tubes more than one frame deep) comes from the small TubeViT, kept as
   trained, and reaches the large width by space-to-depth instead of new weights (channel map
   below). The small model's own image tube and its backbone are not used.
3. The tokenizer and blocks[:s] are frozen and run under ``no_grad`` (``freeze_until=s``); a gated
   shortcut adds the encoder input z0 (tube tokens + fixed position) to the output of block s,
   ``alpha = 0`` at the start, so the network is then exactly the converted image ViT on images.
4. Only blocks[s:], the final norm, the gate, pooling and heads train. Pooling and heads are new
   (the small model's are of the small width); the heads are the small model's names and sizes.

Channel map (small width ``d_s``, large width ``d_l``). A small tube whose convolution has
``c_s`` output channels (``d_s``, or ``d_s / S_s`` with its own space-to-depth factor ``S_s``)
becomes, in the large model, a space-to-depth tube with an extra factor ``E``: its convolution
keeps the small kernel's first ``c_l = d_l / (S_s * E)`` output channels (and biases), and packs
``S_s * E`` neighbours, neighbour-major, to ``d_l`` channels. ``E`` is the smallest factor with
``c_l <= c_s``, ``d_l`` divisible by ``S_s * E`` and whose prime factors can be placed on the axes:
each, in the order t, h, w, goes to the first axis whose stride it still divides (the packed neighbours sit at
``stride / f``). When ``d_l`` is a multiple of ``d_s`` (e.g. 384 -> 768, ``E = 2``) every small
channel is used once per neighbour and nothing is dropped. When it is not (B -> H, 768 -> 1280:
``E = 2``, ``c_l = 640``) the last ``c_s - c_l`` kernel channels (128 of 768) are left out: a fixed,
non-learned selection. The effective kernel (and so the token centres used by the position
embedding) grows with the packing; the token grid and count stay those of the small tube.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import torch

from tubevit.convert.formats import ConversionError, detect_format, read_file
from tubevit.convert.image_vit import convert_image_vit, load_converted
from tubevit.model.config import ModelConfig
from tubevit.model.presets import SIZES, preset_config
from tubevit.model.tokenizer import resize_kernel
from tubevit.model.tubes import TubeSpec, image_tube_index
from tubevit.model.tubevit import TubeViT

log = logging.getLogger("tubevit.convert")


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def widen_spec(spec: TubeSpec, extra: int) -> TubeSpec:
    """``spec`` with its space-to-depth factor multiplied by ``extra``, spread over t, h, w."""
    s2d = list(spec.s2d)
    for p in _prime_factors(extra):
        for a in range(3):
            if spec.stride[a] % (s2d[a] * p) == 0:
                s2d[a] *= p
                break
        else:
            raise ConversionError(f"tube {spec.label}: cannot place a space-to-depth factor {extra} on strides "
                                  f"{spec.stride} (each axis factor must divide its stride)")
    return TubeSpec(spec.kernel, spec.stride, spec.offset, tuple(s2d), spec.name)


def channel_plan(spec: TubeSpec, c_small: int, d_large: int) -> tuple[TubeSpec, int]:
    """``(widened spec, c_l)``: the smallest extra space-to-depth factor E that divides ``d_large``
    into ``c_l <= c_small`` channels per neighbour and fits the tube's strides (module doc)."""
    for extra in range(1, d_large + 1):
        total = spec.s2d_factor * extra
        if d_large % total or d_large // total > c_small:
            continue
        try:
            return widen_spec(spec, extra), d_large // total
        except ConversionError:
            continue
    raise ConversionError(f"tube {spec.label}: no space-to-depth factor that fits strides {spec.stride} maps its "
                          f"{c_small} channels to width {d_large}")


def _small_tubes(small: TubeViT) -> list[tuple[TubeSpec, torch.Tensor, torch.Tensor]]:
    """Each tube of the small model as (spec with its s2d, kernel, bias), kernels materialised."""
    tok = small.tokenizer
    out = []
    for i, spec in enumerate(tok.specs):
        w = tok.tubes[i].weight
        if w is None:  # interpolated tokenizer: the tube's kernel is the resized shared kernel
            w = resize_kernel(tok.kernel, spec.kernel)
        out.append((spec, w.detach().clone(), tok.tubes[i].bias.detach().clone()))
    return out


def load_small(small, *, reader: str = "scale_up (--scale-from)") -> TubeViT:
    """A TubeViT as is, or rebuilt from a whole-model file (training checkpoint, export, folder)."""
    if isinstance(small, TubeViT):
        return small
    from tubevit.io import build_model, read_model_file

    mf = read_model_file(small, reader=reader)
    if not mf.is_tubevit or mf.kind == "converted":
        raise ConversionError(f"{small}: is {mf.describe()}; --scale-from needs a trained TubeViT (a tubevit "
                              "training checkpoint, export or save_pretrained folder)")
    return build_model(mf, reader=reader)


def _large_config(sd: Mapping[str, torch.Tensor], large_model: str | None, **overrides) -> ModelConfig:
    """The large model's size: a named preset, or the preset whose width and depth match."""
    if large_model is None:
        from tubevit.convert.formats import to_canonical

        canon = to_canonical(sd)[0]
        width = canon["patch_embed.proj.weight"].shape[0]
        depth = 1 + max(int(k.split(".")[1]) for k in canon if k.startswith("blocks."))
        match = [n for n, (w, dp, _, _) in SIZES.items() if (w, dp) == (width, depth)]
        if not match:
            raise ConversionError(f"no preset has width {width} and depth {depth}; pass large_model=NAME "
                                  "with num_heads/mlp_dim overrides")
        large_model = match[0]
    return preset_config(large_model, **overrides)


def scale_up(
    small,
    large,
    *,
    freeze_until: int,
    per_channel_gate: bool = False,
    gate: bool = True,
    large_model: str | None = None,
    **overrides,
) -> TubeViT:
    """Build the large video model of §3.6 (see the module doc for what comes from where).

    ``small``: a trained TubeViT or the path of its checkpoint (weights with their config).
    ``large``: an image-ViT state dict or path (timm / HF / npz), or a TubeViT of the large size.
    ``freeze_until``: the first trained block s; ``gate`` puts the shortcut there (Table 6 compares
    with and without). ``large_model`` names the large preset (found from width and depth when
    omitted); ``overrides`` are further ModelConfig fields (e.g. ``num_classes``).
    """
    small = load_small(small)
    small_tubes = _small_tubes(small)
    img_small = image_tube_index([s for s, _, _ in small_tubes])

    if isinstance(large, TubeViT):
        large_sd = {k: v.detach().clone() for k, v in large.state_dict().items()
                    if not k.startswith(("pool.", "heads.", "gate."))}
        base_cfg = large.cfg
    else:
        large_sd = read_file(large, reader="scale_up (--init-from)")[0] if isinstance(large, (str, Path)) else dict(large)
        if detect_format(large_sd.keys()) == "tubevit":
            raise ConversionError("`large` is a TubeViT state dict; pass the TubeViT model itself")
        base_cfg = _large_config(large_sd, large_model)
    d_l = base_cfg.width

    specs, kernels = [], []
    for spec, w, b in small_tubes:
        if spec.is_2d:
            continue  # the image tube is the large image ViT's own patch kernel
        new, c_l = channel_plan(spec, w.shape[0], d_l)
        specs.append(new)
        kernels.append((w[:c_l], b[:c_l]))
        log.info("scale_up: tube %s: %d -> %d kernel channels, space-to-depth %s -> %s (x%d neighbours = %d)",
                 spec.label, w.shape[0], c_l, spec.s2d, new.s2d, new.s2d_factor, d_l)
    img_spec = small_tubes[img_small][0].without_s2d() if img_small is not None else TubeSpec((1, 16, 16), (32, 16, 16))
    specs.append(img_spec)  # the image tube last, as in the paper's set

    overrides.setdefault("num_classes", dict(small.cfg.num_classes))
    cfg = base_cfg.replace(
        tubes=[s.to_dict() for s in specs], tokenizer="s2d", freeze_until=0,
        gate_layer=freeze_until if gate else None, gate_per_channel=per_channel_gate, grad_checkpointing=False,
        **overrides,
    )
    model = TubeViT(cfg)

    img_i = len(specs) - 1
    if isinstance(large, TubeViT):
        # Its image tube, blocks and norm; its own video tubes are replaced.
        src = large.tokenizer.image_tube
        if src is None:
            raise ConversionError("the large TubeViT has no 1-frame tube to take the image tube from")
        full = large_sd
    else:
        conv = convert_image_vit(large_sd, cfg.replace(gate_layer=None))
        for line in conv.notes:  # its derived video tubes are replaced by the small model's below
            log.info("scale_up: large image ViT (%s): %s", conv.source_format, line)
        src, full = img_i, conv.state_dict
    sd = {k: v for k, v in full.items() if not k.startswith("tokenizer.")}
    sd[f"tokenizer.tubes.{img_i}.weight"] = full[f"tokenizer.tubes.{src}.weight"]
    sd[f"tokenizer.tubes.{img_i}.bias"] = full[f"tokenizer.tubes.{src}.bias"]
    for i, (w, b) in enumerate(kernels):
        sd[f"tokenizer.tubes.{i}.weight"], sd[f"tokenizer.tubes.{i}.bias"] = w, b
    load_converted(model, sd)
    model.freeze_until(freeze_until)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("scale_up: width %d -> %d, %d blocks, frozen tokenizer + blocks[:%d], gate %s; %.1fM of %.1fM "
             "parameters train", small.cfg.width, d_l, cfg.depth, freeze_until,
             f"at block {freeze_until}" + (" (per channel)" if per_channel_gate else "") if gate else "off",
             trained / 1e6, sum(p.numel() for p in model.parameters()) / 1e6)
    return model


# Set by scale_up from the small model (tubes, tokenizer) or from freeze_until (the gate).
_SCALE_OWN = ("tubes", "tokenizer", "freeze_until", "gate_layer", "gate_per_channel", "grad_checkpointing")


def scaled_model(small, large, model_cfg: ModelConfig, *, preset: str, where: str = "") -> TubeViT:
    """``scale_up(small, large)`` at the size of ``preset`` with ``model_cfg``'s other fields
    (width, depth, heads, dropout, class counts, ...; its ``freeze_until`` is the first trained
    block, ``gate_layer`` None for no gate). Errors are ``ValueError`` prefixed by ``where`` (the
    flags that asked for it)."""
    m = model_cfg
    where = f"{where}: " if where else ""
    try:
        small = load_small(small, reader="tubevit train --scale-from")
    except ConversionError as err:
        raise ValueError(f"{where}{err}") from None
    if small.cfg.width >= m.width:
        raise ValueError(f"{where}the small model's width {small.cfg.width} is not below the model's width "
                         f"{m.width}; image-to-video scaling widens a smaller TubeViT (e.g. B -> --model "
                         f"tubevit_large or tubevit_huge)")
    if not 0 <= m.freeze_until < m.depth:
        raise ValueError(f"{where}--freeze-until {m.freeze_until} must be a block index below the depth {m.depth}")
    overrides = {k: v for k, v in m.to_dict().items() if k not in _SCALE_OWN}
    try:
        model = scale_up(small, large, freeze_until=m.freeze_until, gate=m.gate_layer is not None,
                         per_channel_gate=m.gate_per_channel, large_model=preset, **overrides)
    except ConversionError as err:
        raise ValueError(f"{where}{err}") from None
    model.set_grad_checkpointing(m.grad_checkpointing)
    model.cfg.grad_checkpointing = m.grad_checkpointing
    return model
