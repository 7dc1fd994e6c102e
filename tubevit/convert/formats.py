"""Reading image-ViT checkpoints in the formats people have, into one canonical naming.

Formats, detected from the keys (never from the file name):

* ``timm``: ``patch_embed.proj.weight``, ``cls_token``, ``pos_embed``, ``blocks.{i}.norm1``,
  ``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``, ``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1|fc2``,
  ``norm``, ``head`` (or ``fc_norm`` / ``attn_pool`` variants).
* ``hf``: Hugging Face ``transformers`` ViT (``ViTModel`` / ``ViTForImageClassification``):
  ``vit.embeddings.patch_embeddings.projection``, separate ``attention.attention.query|key|value``
  (fused here into one qkv), ``layernorm_before|after``, ``vit.layernorm``, ``classifier``.
* ``npz``: original Google ViT / AugReg (``vit_jax``) and big_vision: ``embedding/kernel`` (HWIO),
  ``Transformer/encoderblock_{i}/LayerNorm_0``, ``MultiHeadDotProductAttention_1/query|key|value``
  (kernels ``[d, heads, hd]``), ``.../out`` (``[heads, hd, d]``), ``MlpBlock_3/Dense_0|1``,
  ``Transformer/encoder_norm``, ``head``, ``cls``, ``Transformer/posembed_input``. big_vision's
  scanned layout (``Transformer/encoderblock/...`` with a leading depth axis) is unstacked.
* ``tubevit``: a state dict in this library's own naming (``tokenizer.tubes.{i}.weight``).

Files: ``.safetensors`` (``safetensors``), ``.pth`` / ``.pt`` / ``.bin`` (``torch.load`` with
``weights_only=True``; a ``state_dict`` / ``model`` / ``module`` wrapper and a DDP ``module.``
prefix are unwrapped), ``.npz`` (``numpy.load`` with ``allow_pickle=False``).

:func:`to_canonical` turns any image-ViT format into the timm naming (the canonical one), with
torch tensors in timm's layouts, and returns the list of fix-ups it made, each one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

FORMATS = ("timm", "hf", "npz", "tubevit")
StateDict = dict[str, torch.Tensor]


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message names the keys at fault."""


def _preview(keys, n: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# --------------------------------------------------------------------------- detection

def detect_format(keys) -> str:
    """``timm`` / ``hf`` / ``npz`` / ``tubevit`` from a state dict's keys (or the dict itself)."""
    keys = list(keys)
    if any(k.startswith("tokenizer.") for k in keys) and any(k.startswith("blocks.") for k in keys):
        return "tubevit"
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in keys):
        return "hf"
    if any(k == "embedding/kernel" or k.endswith("/embedding/kernel") for k in keys) or \
            any("Transformer/encoderblock" in k for k in keys):
        return "npz"
    if "patch_embed.proj.weight" in keys:
        return "timm"
    raise ConversionError(
        "cannot tell the checkpoint format from its keys (expected timm 'patch_embed.proj.weight', Hugging Face "
        "'vit.embeddings.patch_embeddings.projection.weight', Google ViT 'embedding/kernel' or TubeViT "
        f"'tokenizer.tubes.*'); its keys start: {_preview(keys)}"
    )


# --------------------------------------------------------------------------- files

def _unwrap(obj) -> dict:
    """Find the state dict inside what ``torch.load`` returned."""
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = dict(obj)
    else:
        for name in ("state_dict", "model", "module", "model_state", "params"):
            if isinstance(obj, Mapping) and isinstance(obj.get(name), Mapping):
                return _unwrap(obj[name])
        raise ConversionError(
            "the file holds no state dict: expected a mapping of names to tensors, or one under 'state_dict', "
            f"'model' or 'module'; found {type(obj).__name__}"
            + (f" with keys {_preview(obj.keys())}" if isinstance(obj, Mapping) else "")
        )
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _flatten_npz(arrays: Mapping) -> StateDict:
    out: StateDict = {}
    for k, v in arrays.items():
        name = k[len("params/"):] if k.startswith("params/") else k
        if not isinstance(v, torch.Tensor):
            v = torch.from_numpy(np.array(v, dtype=np.float32 if v.dtype.kind == "f" else v.dtype))
        out[name] = v.float() if v.is_floating_point() else v
    return out


def read_file(path, *, reader: str = "tubevit convert"):
    """``(state_dict, ModelFile)`` of any file or folder (read by :func:`tubevit.io.read_model_file`:
    safe, checksum verified for tubevit files, one-line errors). The state dict is in the file's own
    naming, unwrapped from ``state_dict`` / ``model`` / ``module`` wrappers."""
    from tubevit.io import read_model_file

    mf = read_model_file(path, reader=reader)
    if mf.state_dict is None:
        sd = _unwrap(mf.raw)
    elif Path(path).suffix.lower() == ".npz":
        sd = _flatten_npz(mf.state_dict)
    else:
        sd = dict(mf.state_dict)
    return sd, mf


# --------------------------------------------------------------------------- canonical (timm) naming

def _timm_to_canonical(sd: StateDict) -> tuple[StateDict, list[str]]:
    notes: list[str] = []
    out = dict(sd)
    if "fc_norm.weight" in out:
        # avg-pool timm models put their final norm after pooling (fc_norm) and have none on the
        # tokens. TubeViT pools by attention, so the closest use of those weights is per token.
        if "norm.weight" in out:
            raise ConversionError("checkpoint has both 'norm' and 'fc_norm'; TubeViT has one final norm")
        for p in ("weight", "bias"):
            out[f"norm.{p}"] = out.pop(f"fc_norm.{p}")
        notes.append("fc_norm (timm avg-pool head norm) used as the per-token final norm before attention pooling")
    pool = sorted(k for k in out if k.startswith("attn_pool."))
    if pool:
        for k in pool:
            out.pop(k)
        notes.append(f"dropped timm's MAP head attn_pool.* ({len(pool)} tensors): its LN+MLP has no TubeViT "
                     "counterpart; pool.* is new")
    reg = [k for k in out if k == "reg_token"]
    if reg:
        raise ConversionError("timm register tokens (reg_token) are not supported: TubeViT has no extra tokens")
    return out, notes


_HF_LAYER = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}


def _hf_to_canonical(sd: StateDict) -> tuple[StateDict, list[str]]:
    notes: list[str] = []
    sd = {(k[len("vit."):] if k.startswith("vit.") else k): v for k, v in sd.items()}
    out: StateDict = {}
    qkv: dict[tuple[int, str, str], torch.Tensor] = {}
    unknown = []
    for k, v in sd.items():
        if k == "embeddings.patch_embeddings.projection.weight":
            out["patch_embed.proj.weight"] = v
        elif k == "embeddings.patch_embeddings.projection.bias":
            out["patch_embed.proj.bias"] = v
        elif k == "embeddings.cls_token":
            out["cls_token"] = v
        elif k == "embeddings.position_embeddings":
            out["pos_embed"] = v
        elif k == "embeddings.mask_token":
            notes.append("dropped embeddings.mask_token (masked-image-modeling only)")
        elif k.startswith("layernorm."):
            out["norm." + k.split(".", 1)[1]] = v
        elif k.startswith("classifier."):
            out["head." + k.split(".", 1)[1]] = v
        elif k.startswith("pooler."):
            notes.append(f"dropped {k} (HF ViTModel's tanh pooler on the cls token; TubeViT has no cls token)")
        elif (m := re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)", k)):
            i, name, p = int(m[1]), m[2], m[3]
            if (q := re.fullmatch(r"attention\.attention\.(query|key|value)", name)):
                qkv[(i, q[1], p)] = v
            elif name in _HF_LAYER:
                out[f"blocks.{i}.{_HF_LAYER[name]}.{p}"] = v
            else:
                unknown.append(k)
        else:
            unknown.append(k)
    if unknown:
        raise ConversionError(f"unexpected Hugging Face ViT keys (not a plain ViT?): {_preview(unknown)}")
    layers = sorted({i for i, _, _ in qkv})
    for i in layers:
        for p in ("weight", "bias"):
            parts = [qkv.get((i, n, p)) for n in ("query", "key", "value")]
            if all(t is None for t in parts):
                continue
            if any(t is None for t in parts):
                raise ConversionError(f"layer {i}: query/key/value {p} incomplete")
            # timm's fused qkv is [q; k; v] on the output axis.
            out[f"blocks.{i}.attn.qkv.{p}"] = torch.cat(parts, 0)
    if layers:
        notes.append(f"fused separate query/key/value into qkv in {len(layers)} layers")
    return out, notes


_NPZ_BLOCK = re.compile(r"Transformer/encoderblock_(\d+)/(.+)")


def _unstack_scanned(sd: StateDict) -> tuple[StateDict, list[str]]:
    """big_vision's ``scan`` layout stores all blocks in ``Transformer/encoderblock/...`` with a
    leading depth axis; split it into ``encoderblock_{i}``."""
    scanned = [k for k in sd if k.startswith("Transformer/encoderblock/")]
    if not scanned:
        return sd, []
    out = {k: v for k, v in sd.items() if k not in scanned}
    depth = sd[scanned[0]].shape[0]
    for k in scanned:
        rest = k[len("Transformer/encoderblock/"):]
        for i in range(depth):
            out[f"Transformer/encoderblock_{i}/{rest}"] = sd[k][i]
    return out, [f"unstacked big_vision's scanned encoder ({depth} layers)"]


def _npz_to_canonical(sd: StateDict) -> tuple[StateDict, list[str]]:
    sd, notes = _unstack_scanned(sd)
    out: StateDict = {}
    unknown = []
    blocks: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if (m := _NPZ_BLOCK.fullmatch(k)):
            blocks.setdefault(int(m[1]), {})[m[2]] = v
        elif k == "embedding/kernel":
            out["patch_embed.proj.weight"] = v.permute(3, 2, 0, 1)  # HWIO -> OIHW
        elif k == "embedding/bias":
            out["patch_embed.proj.bias"] = v
        elif k == "cls":
            out["cls_token"] = v.reshape(1, 1, -1)
        elif k in ("Transformer/posembed_input/pos_embedding", "pos_embedding"):
            out["pos_embed"] = v.reshape(1, -1, v.shape[-1])
        elif k.startswith("Transformer/encoder_norm/"):
            out["norm." + {"scale": "weight", "bias": "bias"}[k.rsplit("/", 1)[1]]] = v
        elif k in ("head/kernel", "head/bias"):
            out["head." + ("weight" if k.endswith("kernel") else "bias")] = v.T if k.endswith("kernel") else v
        elif k.startswith("pre_logits/"):
            out["pre_logits." + k.split("/", 1)[1]] = v  # handled (dropped) by the converter
        elif k.startswith("MAPHead_0/"):
            notes.append(f"dropped {k} (big_vision MAP head; pool.* is new)")
        else:
            unknown.append(k)
    if unknown:
        raise ConversionError(f"unexpected Google ViT .npz keys: {_preview(unknown)}")
    for i, b in sorted(blocks.items()):
        out.update(_npz_block(i, b))
    return out, notes


def _npz_block(i: int, b: dict[str, torch.Tensor]) -> StateDict:
    # vit_jax names the sub-modules LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2,
    # MlpBlock_3; big_vision LayerNorm_0/1, MultiHeadDotProductAttention_0, MlpBlock_0. Match by
    # kind and order, not by number.
    def modules(kind):
        return sorted({re.match(rf"({kind}_\d+)/", k)[1] for k in b if re.match(rf"{kind}_\d+/", k)},
                      key=lambda s: int(s.rsplit("_", 1)[1]))

    lns, attn, mlp = modules("LayerNorm"), modules("MultiHeadDotProductAttention"), modules("MlpBlock")
    if len(lns) != 2 or len(attn) != 1 or len(mlp) != 1:
        raise ConversionError(f"encoderblock_{i}: expected 2 LayerNorms, 1 attention and 1 MLP block, found "
                              f"{lns + attn + mlp}")
    p = f"blocks.{i}."
    out: StateDict = {}
    used = set()

    def get(name):
        used.add(name)
        if name not in b:
            raise ConversionError(f"missing Transformer/encoderblock_{i}/{name}")
        return b[name]

    for ln, ours in zip(lns, ("norm1", "norm2")):
        out[p + ours + ".weight"], out[p + ours + ".bias"] = get(f"{ln}/scale"), get(f"{ln}/bias")
    a = attn[0]
    qkv_w, qkv_b = [], []
    for n in ("query", "key", "value"):
        kern = get(f"{a}/{n}/kernel")  # [d, heads, hd]
        qkv_w.append(kern.reshape(kern.shape[0], -1).T)  # -> [heads*hd, d]
        qkv_b.append(get(f"{a}/{n}/bias").reshape(-1))
    out[p + "attn.qkv.weight"], out[p + "attn.qkv.bias"] = torch.cat(qkv_w, 0), torch.cat(qkv_b, 0)
    kern = get(f"{a}/out/kernel")  # [heads, hd, d]
    out[p + "attn.proj.weight"] = kern.reshape(-1, kern.shape[-1]).T
    out[p + "attn.proj.bias"] = get(f"{a}/out/bias")
    for dense, ours in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
        out[p + f"mlp.{ours}.weight"] = get(f"{mlp[0]}/{dense}/kernel").T
        out[p + f"mlp.{ours}.bias"] = get(f"{mlp[0]}/{dense}/bias")
    extra = set(b) - used
    if extra:
        raise ConversionError(f"unexpected keys in Transformer/encoderblock_{i}: {_preview(extra)}")
    return out


def npz_num_heads(sd: Mapping[str, torch.Tensor]) -> int | None:
    """The head count, which only the Google format records (query kernel ``[d, heads, hd]``)."""
    for k, v in sd.items():
        if re.search(r"MultiHeadDotProductAttention_\d+/query/kernel$", k):
            return int(v.shape[-2])
    return None


def to_canonical(sd: Mapping[str, torch.Tensor], fmt: str | None = None) -> tuple[StateDict, str, list[str]]:
    """Any image-ViT format -> ``(timm-named state dict, format, fix-up notes)``."""
    fmt = fmt or detect_format(sd.keys())
    if fmt == "tubevit":
        raise ConversionError("this is already a TubeViT state dict, not an image ViT")
    reader = {"timm": _timm_to_canonical, "hf": _hf_to_canonical, "npz": _npz_to_canonical}[fmt]
    out, notes = reader(dict(sd))
    return out, fmt, notes
