"""Fake image-ViT checkpoints in every format, built here from random weights (never downloaded),
and a reference image-ViT forward written independently of the library. Tests reach them through
the ``vit`` fixture (a namespace), so nothing depends on how pytest sets up sys.path."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

WIDTH, DEPTH, HEADS, MLP, PATCH, CLASSES = 192, 2, 3, 768, 16, 10


def timm_vit(seed: int = 0, width: int = WIDTH, depth: int = DEPTH, mlp: int = MLP, patch: int = PATCH,
             classes: int = CLASSES, grid: int = 14) -> dict[str, torch.Tensor]:
    """A random ViT in timm naming, with cls token, learned positions and a classifier."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.02, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    sd = {
        "cls_token": rnd(1, 1, width), "pos_embed": rnd(1, grid * grid + 1, width),
        "patch_embed.proj.weight": rnd(width, 3, patch, patch, std=0.05), "patch_embed.proj.bias": rnd(width),
        "norm.weight": rnd(width, std=0.1, mean=1.0), "norm.bias": rnd(width, std=0.1),
        "head.weight": rnd(classes, width), "head.bias": rnd(classes),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({
            p + "norm1.weight": rnd(width, std=0.1, mean=1.0), p + "norm1.bias": rnd(width, std=0.1),
            p + "attn.qkv.weight": rnd(3 * width, width, std=0.08), p + "attn.qkv.bias": rnd(3 * width, std=0.1),
            p + "attn.proj.weight": rnd(width, width, std=0.08), p + "attn.proj.bias": rnd(width, std=0.1),
            p + "norm2.weight": rnd(width, std=0.1, mean=1.0), p + "norm2.bias": rnd(width, std=0.1),
            p + "mlp.fc1.weight": rnd(mlp, width, std=0.08), p + "mlp.fc1.bias": rnd(mlp, std=0.1),
            p + "mlp.fc2.weight": rnd(width, mlp, std=0.04), p + "mlp.fc2.bias": rnd(width, std=0.1),
        })
    return sd


def to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm -> Hugging Face ViTForImageClassification naming (q, k, v split apart)."""
    out = {
        "vit.embeddings.cls_token": sd["cls_token"], "vit.embeddings.position_embeddings": sd["pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "vit.layernorm.weight": sd["norm.weight"], "vit.layernorm.bias": sd["norm.bias"],
        "classifier.weight": sd["head.weight"], "classifier.bias": sd["head.bias"],
    }
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p, h = f"blocks.{i}.", f"vit.encoder.layer.{i}."
        for t in ("weight", "bias"):
            q, k, v = sd[p + f"attn.qkv.{t}"].chunk(3, 0)
            out[h + f"attention.attention.query.{t}"] = q.clone()
            out[h + f"attention.attention.key.{t}"] = k.clone()
            out[h + f"attention.attention.value.{t}"] = v.clone()
            out[h + f"attention.output.dense.{t}"] = sd[p + f"attn.proj.{t}"]
            out[h + f"intermediate.dense.{t}"] = sd[p + f"mlp.fc1.{t}"]
            out[h + f"output.dense.{t}"] = sd[p + f"mlp.fc2.{t}"]
            out[h + f"layernorm_before.{t}"] = sd[p + f"norm1.{t}"]
            out[h + f"layernorm_after.{t}"] = sd[p + f"norm2.{t}"]
    return out


def to_npz(sd: dict[str, torch.Tensor], heads: int = HEADS) -> dict[str, np.ndarray]:
    """timm -> original Google ViT (vit_jax / AugReg) naming and layouts."""
    n = lambda t: t.detach().numpy().copy()  # noqa: E731
    d = sd["norm.weight"].shape[0]
    hd = d // heads
    out = {
        "cls": n(sd["cls_token"]), "Transformer/posembed_input/pos_embedding": n(sd["pos_embed"]),
        "embedding/kernel": n(sd["patch_embed.proj.weight"].permute(2, 3, 1, 0)),  # OIHW -> HWIO
        "embedding/bias": n(sd["patch_embed.proj.bias"]),
        "Transformer/encoder_norm/scale": n(sd["norm.weight"]), "Transformer/encoder_norm/bias": n(sd["norm.bias"]),
        "head/kernel": n(sd["head.weight"].T), "head/bias": n(sd["head.bias"]),
    }
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p, b = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        out[b + "LayerNorm_0/scale"], out[b + "LayerNorm_0/bias"] = n(sd[p + "norm1.weight"]), n(sd[p + "norm1.bias"])
        out[b + "LayerNorm_2/scale"], out[b + "LayerNorm_2/bias"] = n(sd[p + "norm2.weight"]), n(sd[p + "norm2.bias"])
        ws, bs = sd[p + "attn.qkv.weight"].chunk(3, 0), sd[p + "attn.qkv.bias"].chunk(3, 0)
        for name, w, bb in zip(("query", "key", "value"), ws, bs):
            out[b + f"MultiHeadDotProductAttention_1/{name}/kernel"] = n(w.T.reshape(d, heads, hd))
            out[b + f"MultiHeadDotProductAttention_1/{name}/bias"] = n(bb.reshape(heads, hd))
        out[b + "MultiHeadDotProductAttention_1/out/kernel"] = n(sd[p + "attn.proj.weight"].T.reshape(heads, hd, d))
        out[b + "MultiHeadDotProductAttention_1/out/bias"] = n(sd[p + "attn.proj.bias"])
        out[b + "MlpBlock_3/Dense_0/kernel"], out[b + "MlpBlock_3/Dense_0/bias"] = n(sd[p + "mlp.fc1.weight"].T), n(sd[p + "mlp.fc1.bias"])
        out[b + "MlpBlock_3/Dense_1/kernel"], out[b + "MlpBlock_3/Dense_1/bias"] = n(sd[p + "mlp.fc2.weight"].T), n(sd[p + "mlp.fc2.bias"])
    return out


def reference_vit_tokens(sd: dict[str, torch.Tensor], image: torch.Tensor, pos: torch.Tensor, heads: int = HEADS,
                         eps: float = 1e-6) -> torch.Tensor:
    """A plain image-ViT forward in timm naming, up to the final norm, with the learned position
    table replaced by ``pos [N, d]`` and no cls token: where the two architectures coincide."""
    w = sd["patch_embed.proj.weight"]
    x = F.conv2d(image, w, sd["patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2) + pos
    b, n, d = x.shape
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        q, k, v = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).chunk(3, -1)
        q, k, v = (t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, -1)
        x = x + F.linear((att @ v).transpose(1, 2).reshape(b, n, d), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(x, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
        x = x + F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                         sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    return F.layer_norm(x, (d,), sd["norm.weight"], sd["norm.bias"], eps)




@pytest.fixture(scope="session")
def vit():
    return types.SimpleNamespace(timm_vit=timm_vit, to_hf=to_hf, to_npz=to_npz, reference_tokens=reference_vit_tokens,
                                 WIDTH=WIDTH, DEPTH=DEPTH, HEADS=HEADS, MLP=MLP, CLASSES=CLASSES)


@pytest.fixture(scope="module")
def timm_sd():
    return timm_vit(0)
