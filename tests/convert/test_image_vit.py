"""Image ViT -> TubeViT: exact image tube, forward equal to a reference image ViT, strict loading,
``create_model(pretrained=...)`` and the ``tubevit convert`` command, for every format."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import tubevit
from tubevit.cli import main
from tubevit.convert import ConversionError, convert_image_vit, load_converted, pi_resize, read_file

FORMATS = ("timm", "hf", "npz")


def _in_format(vit, sd, fmt):
    if fmt == "timm":
        return dict(sd)
    if fmt == "hf":
        return vit.to_hf(sd)
    return {k: torch.from_numpy(v) for k, v in vit.to_npz(sd).items()}


def _model(vit, **kw):
    kw.setdefault("depth", vit.DEPTH)
    return tubevit.create_model("tubevit_tiny", num_classes={"k400": 7}, **kw).eval()


@pytest.mark.parametrize("tokenizer", ["s2d", "multi"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_image_tube_is_the_patch_kernel(vit, timm_sd, fmt, tokenizer):
    model = _model(vit, tokenizer=tokenizer)
    conv = convert_image_vit(_in_format(vit, timm_sd, fmt), model.cfg)
    i = model.tokenizer.image_tube
    assert torch.equal(conv.state_dict[f"tokenizer.tubes.{i}.weight"][:, :, 0], timm_sd["patch_embed.proj.weight"])
    assert torch.equal(conv.state_dict[f"tokenizer.tubes.{i}.bias"], timm_sd["patch_embed.proj.bias"])
    assert f"tokenizer.tubes.{i}.weight" in conv.copied
    assert set(conv.derived) >= {f"tokenizer.tubes.{j}.weight" for j in range(4) if j != i}


@pytest.mark.parametrize("fmt", FORMATS)
def test_converted_image_forward_equals_the_reference_image_vit(vit, timm_sd, fmt):
    """Where the two architectures coincide (no cls token; the position table is TubeViT's fixed
    one on both sides), the encoder tokens of an image are those of the original image ViT."""
    model = _model(vit)
    load_converted(model, convert_image_vit(_in_format(vit, timm_sd, fmt), model.cfg).state_dict)
    image = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(5))
    pos = model.position_embedding(image, image.dtype)  # [20, 192]
    with torch.no_grad():
        ours = model.forward_features(image)
        ref = vit.reference_tokens(timm_sd, image, pos)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", ["average", "central"])
def test_video_tube_of_a_static_clip_matches_the_resized_image_kernel(vit, timm_sd, strategy):
    """The 4x12x12 tube on a clip of equal frames responds like the PI-resized 2D kernel."""
    model = _model(vit, tokenizer="multi")
    load_converted(model, convert_image_vit(timm_sd, model.cfg, inflate=strategy).state_dict)
    frame = torch.randn(1, 3, 64, 64)
    clip = frame.unsqueeze(2).expand(-1, -1, 20, -1, -1)
    tube = model.tokenizer.tubes[2]  # 4x12x12, stride (16, 32, 32), offset (0, 16, 16)
    with torch.no_grad():
        tokens = tube(clip)  # [1, nt*nh*nw, d]
        w12 = pi_resize(timm_sd["patch_embed.proj.weight"], (12, 12))
        ref = F.conv2d(frame[:, :, 16:, 16:], w12, timm_sd["patch_embed.proj.bias"], stride=32).flatten(2).transpose(1, 2)
    assert tokens.shape == (1, 2 * ref.shape[1], ref.shape[2])  # two temporal positions, t-major
    for t in range(2):
        torch.testing.assert_close(tokens[:, t * ref.shape[1]:(t + 1) * ref.shape[1]], ref, rtol=1e-5, atol=1e-5)


def test_interpolated_and_s2d_tokenizers_convert_and_run(vit, timm_sd):
    for tokenizer in ("interpolated", "s2d"):
        model = _model(vit, tokenizer=tokenizer)
        load_converted(model, convert_image_vit(timm_sd, model.cfg, inflate="average").state_dict)
        assert model(torch.randn(1, 3, 32, 64, 64)).shape == (1, 7)


def test_drops_are_logged_and_new_keys_asserted(vit, timm_sd, caplog):
    model = _model(vit)
    with caplog.at_level(logging.INFO, logger="tubevit.convert"):
        conv = convert_image_vit(timm_sd, model.cfg)
        conv.log()
        new = load_converted(model, conv.state_dict)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("position table" in m for m in lines) == 1
    assert any("cls token" in m for m in lines) and any("classifier head" in m for m in lines)
    assert set(new) == {k for k in model.state_dict() if k.startswith(("pool.", "heads."))}
    assert any("new keys" in m and "pool.*" in m and "heads.k400.*" in m for m in lines)
    assert not any(k.startswith(("pos_embed", "cls", "head.")) for k in conv.state_dict)


def test_strict_loading_names_the_keys(vit, timm_sd):
    model = _model(vit)
    sd = convert_image_vit(timm_sd, model.cfg).state_dict
    with pytest.raises(ConversionError, match="blocks.1.mlp.fc1.bias"):
        load_converted(model, {k: v for k, v in sd.items() if k != "blocks.1.mlp.fc1.bias"})
    with pytest.raises(ConversionError, match="blocks.0.extra"):
        load_converted(model, {**sd, "blocks.0.extra": torch.zeros(1)})
    with pytest.raises(ConversionError, match="norm.weight"):
        load_converted(model, {**sd, "norm.weight": torch.zeros(3)})
    with pytest.raises(ConversionError, match="unexpected keys.*rel_pos"):
        convert_image_vit({**timm_sd, "rel_pos": torch.zeros(1)}, model.cfg)
    with pytest.raises(ConversionError, match="2 blocks, model 3"):
        convert_image_vit(timm_sd, model.cfg.replace(depth=3))
    with pytest.raises(ConversionError, match="width 192"):
        convert_image_vit(timm_sd, model.cfg.replace(width=384, num_heads=6))
    with pytest.raises(ConversionError, match="attention heads"):
        convert_image_vit(_in_format(vit, timm_sd, "npz"), model.cfg.replace(num_heads=6))


def test_keep_classifier(vit, timm_sd, tmp_path):
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in timm_sd.items()}, str(path))
    model = tubevit.create_model("tubevit_tiny", depth=vit.DEPTH, pretrained=str(path), keep_classifier=True)
    assert model.heads.names == ["default", "imagenet"]
    assert torch.equal(model.heads["imagenet"].weight, timm_sd["head.weight"])


def test_other_patch_size_is_pi_resized(vit):
    sd = vit.timm_vit(2, patch=14)
    model = _model(vit)
    conv = convert_image_vit(sd, model.cfg)
    assert any("PI-resized from the 14x14" in n for n in conv.notes)
    i = model.tokenizer.image_tube
    torch.testing.assert_close(conv.state_dict[f"tokenizer.tubes.{i}.weight"][:, :, 0],
                               pi_resize(sd["patch_embed.proj.weight"], (16, 16)))


@pytest.mark.parametrize("fmt,name", [("timm", "m.pth"), ("hf", "pytorch_model.bin"), ("npz", "augreg.npz")])
def test_create_model_pretrained_from_each_file_type(vit, timm_sd, tmp_path, fmt, name):
    path = tmp_path / name
    if fmt == "npz":
        np.savez(path, **vit.to_npz(timm_sd))
    else:
        torch.save(_in_format(vit, timm_sd, fmt), path)
    model = tubevit.create_model("tubevit_tiny", depth=vit.DEPTH, pretrained=str(path), inflate="average")
    assert torch.equal(model.blocks[1].mlp.fc2.weight, timm_sd["blocks.1.mlp.fc2.weight"])


def test_convert_cli_round_trip(vit, tmp_path, capsys):
    """`tubevit convert` on a full-depth tiny checkpoint, then create_model(pretrained=out)."""
    sd = vit.timm_vit(3, depth=12)
    src = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src))
    out = tmp_path / "tubevit_tiny.safetensors"
    assert main(["convert", str(src), "--model", "tubevit_tiny", "--out", str(out), "--inflate", "average"]) == 0
    assert "wrote" in capsys.readouterr().out
    conv, mf = read_file(out)
    assert mf.kind == "converted" and mf.meta.model_config["width"] == 192 and "pos_embed" not in conv
    assert mf.meta.preprocessing.mean == (0.5, 0.5, 0.5)  # timm's ViT default travels with the weights
    model = tubevit.create_model("tubevit_tiny", pretrained=str(out))
    assert torch.equal(model.tokenizer.tubes[3].weight[:, :, 0], sd["patch_embed.proj.weight"])
    # A file converted for other tubes is refused by name, not loaded into the wrong geometry.
    with pytest.raises(ConversionError, match="tokenizer"):
        tubevit.create_model("tubevit_tiny", pretrained=str(out), tokenizer="multi")
    # Bad input: one line on stderr, exit status 2.
    assert main(["convert", str(src), "--model", "tubevit_base", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "width 192" in capsys.readouterr().err
