"""Hugging Face and timm as they are: a folder written by real ``transformers`` save_pretrained
(config.json + model.safetensors) converted with its size, eps and labels read from config.json,
each converted block checked against HF's own encoder layer; the preset picked from the weights'
shapes; keys the model does not have refused by name before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import tubevit
from tubevit.cli import main
from tubevit.convert import ConversionError, read_file
from tubevit.convert.image_vit import convert_checkpoint, load_pretrained
from tubevit.model.config import ModelConfig

transformers = pytest.importorskip("transformers", reason="transformers is part of the test extra")


def _hf_folder(tmp_path, *, classifier=False):
    from transformers import ViTConfig, ViTForImageClassification, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=192, num_hidden_layers=2, num_attention_heads=3, intermediate_size=768,
                    image_size=32, patch_size=16, num_labels=3, id2label={0: "cat", 1: "dog", 2: "eel"},
                    label2id={"cat": 0, "dog": 1, "eel": 2})
    model = (ViTForImageClassification(cfg) if classifier else ViTModel(cfg, add_pooling_layer=False)).eval()
    with torch.no_grad():  # LayerNorms away from 1/0 so that a wrong mapping shows
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path / ("hf_cls" if classifier else "hf")
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.4, 0.45, 0.5],
                                                                 "image_std": [0.2, 0.25, 0.3]}))
    return model, folder


def _built(path):
    """The TubeViT a converted file describes, with the converted weights loaded."""
    _, mf = read_file(path)
    model = tubevit.TubeViT(ModelConfig.from_dict(mf.meta.model_config))
    load_pretrained(model, path)
    return model.eval(), mf


def test_hf_save_pretrained_folder_converts_exactly_against_hf_layers(tmp_path, capsys):
    hf, folder = _hf_folder(tmp_path)
    out = tmp_path / "tv.safetensors"
    assert main(["convert", str(folder), "--out", str(out)]) == 0  # no --model: size from config.json
    capsys.readouterr()
    model, mf = _built(out)
    cfg = mf.meta.model_config
    assert (cfg["width"], cfg["depth"], cfg["num_heads"], cfg["mlp_dim"], cfg["norm_eps"]) == (192, 2, 3, 768, 1e-12)
    prep = mf.meta.preprocessing
    assert prep.mean == (0.4, 0.45, 0.5) and prep.std == (0.2, 0.25, 0.3) and model.pretrained_cfg["mean"] == prep.mean
    torch.manual_seed(1)
    z = torch.randn(2, 17, 192)
    with torch.no_grad():
        for i in range(2):
            ours, theirs = model.blocks[i](z), hf.layers[i](z) if hasattr(hf, "layers") else hf.encoder.layer[i](z)[0]
            assert (ours - theirs).abs().max() < 1e-5, i
            z = ours
        torch.testing.assert_close(model.norm(z), hf.layernorm(z), rtol=0, atol=1e-5)
    # The exact image tube: the patch kernel itself.
    i = model.tokenizer.image_tube
    assert torch.equal(model.tokenizer.tubes[i].weight[:, :, 0], hf.embeddings.patch_embeddings.projection.weight)


def test_hf_classifier_folder_keeps_id2label(tmp_path):
    hf, folder = _hf_folder(tmp_path, classifier=True)
    out = tmp_path / "cls.safetensors"
    convert_checkpoint(folder, out, keep_classifier=True)
    model, mf = _built(out)
    assert mf.meta.class_names == {"imagenet": ["cat", "dog", "eel"]}
    assert torch.equal(model.heads["imagenet"].weight, hf.classifier.weight)
    # create_model(pretrained=FOLDER) converts on the fly and keeps the names too.
    direct = tubevit.create_model("tubevit_tiny", depth=2, norm_eps=1e-12, pretrained=str(folder), keep_classifier=True)
    assert direct.class_names["imagenet"] == ["cat", "dog", "eel"]
    assert direct.pretrained_cfg["std"] == (0.2, 0.25, 0.3)


def test_preset_from_shapes_and_unknown_keys_refused_before_writing(vit, tmp_path):
    sd = vit.timm_vit(0, depth=12)
    src = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src))
    r = convert_checkpoint(src, tmp_path / "a.safetensors")  # no model: tubevit_tiny from width 192, depth 12
    assert r["model"] == "tubevit_tiny" and r["mean"] == [0.5, 0.5, 0.5]
    bad = {**sd, "blocks.3.attn.bogus_weight": torch.zeros(4)}
    save_file({k: v.contiguous() for k, v in bad.items()}, str(src))
    with pytest.raises(ConversionError, match=r"blocks\.3\.attn\.bogus_weight"):
        convert_checkpoint(src, tmp_path / "b.safetensors")
    assert not (tmp_path / "b.safetensors").exists()
    # A block tensor of the wrong shape is named too.
    bad = {**sd, "blocks.2.mlp.fc1.bias": torch.zeros(5)}
    save_file({k: v.contiguous() for k, v in bad.items()}, str(src))
    with pytest.raises(ConversionError, match=r"blocks\.2\.mlp\.fc1\.bias \[5\]"):
        convert_checkpoint(src, tmp_path / "c.safetensors", model="tubevit_tiny")
