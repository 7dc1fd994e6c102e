"""Format detection and file reading for every checkpoint format (made here, never downloaded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tubevit.convert import ConversionError, detect_format, read_file, to_canonical


def _files(tmp_path, sd, vit):
    hf = vit.to_hf(sd)
    npz = vit.to_npz(sd)
    paths = {}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "timm.safetensors"))
    paths["timm.safetensors"] = "timm"
    torch.save({"state_dict": sd}, tmp_path / "timm.pth")
    paths["timm.pth"] = "timm"
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "ddp.pt")
    paths["ddp.pt"] = "timm"
    save_file({k: v.contiguous() for k, v in hf.items()}, str(tmp_path / "hf.safetensors"))
    paths["hf.safetensors"] = "hf"
    torch.save(hf, tmp_path / "pytorch_model.bin")
    paths["pytorch_model.bin"] = "hf"
    np.savez(tmp_path / "augreg.npz", **npz)
    paths["augreg.npz"] = "npz"
    return paths


def test_detect_each_format_in_memory(timm_sd, vit):
    assert detect_format(timm_sd) == "timm"
    assert detect_format(vit.to_hf(timm_sd)) == "hf"
    assert detect_format(vit.to_npz(timm_sd)) == "npz"
    # ViTModel (no classification wrapper) has no "vit." prefix.
    assert detect_format({k[4:] if k.startswith("vit.") else k: v for k, v in vit.to_hf(timm_sd).items()}) == "hf"
    import tubevit

    assert detect_format(tubevit.create_model("tubevit_tiny", depth=1, device="meta").state_dict()) == "tubevit"


def test_detect_each_format_from_files(tmp_path, timm_sd, vit):
    for name, fmt in _files(tmp_path, timm_sd, vit).items():
        sd, _ = read_file(tmp_path / name)
        assert detect_format(sd) == fmt, name
        canon, got, _ = to_canonical(sd)
        assert got == fmt
        # Every format reads back to the same timm-named tensors.
        for k in ("patch_embed.proj.weight", "blocks.1.attn.qkv.weight", "blocks.0.attn.proj.weight",
                  "blocks.1.mlp.fc2.weight", "norm.bias"):
            torch.testing.assert_close(canon[k], timm_sd[k], rtol=0, atol=0, msg=f"{name}: {k}")


def test_npz_variants_big_vision(tmp_path, timm_sd, vit):
    npz = vit.to_npz(timm_sd)
    # big_vision: params/ prefix, LayerNorm_0/1, MultiHeadDotProductAttention_0, MlpBlock_0, scanned blocks.
    bv = {}
    for k, v in npz.items():
        k = (k.replace("LayerNorm_2", "LayerNorm_1").replace("MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0")
             .replace("MlpBlock_3", "MlpBlock_0"))
        bv["params/" + k] = v
    scanned = {k: v for k, v in bv.items() if "encoderblock_" not in k}
    for k in [k for k in bv if "encoderblock_0/" in k]:
        rest = k.split("encoderblock_0/")[1]
        scanned["params/Transformer/encoderblock/" + rest] = np.stack([bv[k], bv[k.replace("_0/", "_1/", 1)]])
    np.savez(tmp_path / "bv.npz", **scanned)
    canon, fmt, notes = to_canonical(read_file(tmp_path / "bv.npz")[0])
    assert fmt == "npz" and any("scanned" in n for n in notes)
    for k in ("blocks.1.attn.qkv.weight", "blocks.0.norm2.weight", "blocks.1.mlp.fc1.bias"):
        torch.testing.assert_close(canon[k], timm_sd[k], rtol=0, atol=0)


def test_unknown_format_names_keys(tmp_path):
    with pytest.raises(ConversionError, match="conv1.weight"):
        detect_format({"conv1.weight": torch.zeros(1)})
    np.savez(tmp_path / "x.npz", foo=np.zeros(1))
    with pytest.raises(ConversionError, match="foo"):
        to_canonical(read_file(tmp_path / "x.npz")[0])
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing.pth")


def test_unexpected_hf_key_is_named(timm_sd, vit):
    hf = vit.to_hf(timm_sd)
    hf["vit.encoder.layer.0.attention.attention.rel_pos"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="rel_pos"):
        to_canonical(hf)


def test_timm_variants(timm_sd):
    sd = dict(timm_sd)
    sd["fc_norm.weight"], sd["fc_norm.bias"] = sd.pop("norm.weight"), sd.pop("norm.bias")
    sd["attn_pool.latent"] = torch.zeros(1, 1, 192)
    canon, _, notes = to_canonical(sd)
    assert "norm.weight" in canon and not any(k.startswith("attn_pool") for k in canon)
    assert any("fc_norm" in n for n in notes) and any("attn_pool" in n for n in notes)
    with pytest.raises(ConversionError, match="reg_token"):
        to_canonical({**timm_sd, "reg_token": torch.zeros(1, 4, 192)})
