"""The assembled model: every preset, images and videos of several shapes, gradients, heads, errors."""

import pytest
import torch

import tubevit
from tubevit.model import ModelConfig, SIZES, TubeViT


def _backbone_params(d, m, depth):
    # per block: 2 LayerNorms (4d), qkv (3d^2+3d), proj (d^2+d), fc1 (dm+m), fc2 (md+d); final norm 2d
    return depth * (4 * d * d + 2 * d * m + 9 * d + m) + 2 * d


@pytest.mark.parametrize("name", list(SIZES))
def test_every_preset_builds_on_meta_with_the_paper_size(name):
    model = tubevit.create_model(name, num_classes=400, device="meta")
    d, depth, heads, m = SIZES[name]
    counts = model.param_groups_summary()
    assert counts["backbone"] == _backbone_params(d, m, depth)
    assert next(model.parameters()).device.type == "meta"
    assert 0.5e6 < counts["tubes"] < 5e6  # "the tubes add 1-3M parameters" (for base; tiny less, huge more)
    paper_total = {"tubevit_base": 90e6, "tubevit_large": 311e6, "tubevit_huge": 635e6}.get(name)
    if paper_total:
        assert abs(counts["total"] - paper_total) / paper_total < 0.015


def _tiny(**kw):
    kw.setdefault("num_classes", {"video": 5, "image": 7})
    return tubevit.create_model("tubevit_tiny", depth=2, **kw)


@pytest.mark.parametrize("tokenizer", ["multi", "s2d", "interpolated"])
@pytest.mark.parametrize("shape", [(32, 64, 64), (24, 48, 80), (64, 64, 64)])
def test_video_forward_backward_reaches_every_parameter(tokenizer, shape):
    model = _tiny(tokenizer=tokenizer)
    x = torch.randn(2, 3, *shape)
    logits = model(x, head="video")
    assert logits.shape == (2, 5)
    (logits.sum() + model(x, head="image").sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (224, 160)])
def test_image_forward_uses_only_the_2d_tube(size):
    model = _tiny(tokenizer="s2d")
    logits = model(torch.randn(2, 3, *size), head="image")
    assert logits.shape == (2, 7)
    logits.sum().backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    other_tubes = {f"tokenizer.tubes.{i}.{w}" for i in range(3) for w in ("weight", "bias")}
    assert no_grad == other_tubes | {"heads.video.weight", "heads.video.bias"}
    assert model.forward_features(torch.randn(1, 3, *size)).shape == (1, (size[0] // 16) * (size[1] // 16), 192)


def test_gradient_checkpointing_leaves_outputs_and_gradients_unchanged():
    torch.manual_seed(0)
    model = _tiny(drop_path=0.0).train()
    x = torch.randn(2, 3, 32, 64, 64)
    out = model(x, head="video")
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out2 = model(x, head="video")
    out2.square().sum().backward()
    assert torch.allclose(out, out2, atol=1e-6)
    for n, p in model.named_parameters():
        if n in grads:
            assert torch.allclose(p.grad, grads[n], atol=1e-5), n


def test_heads_pooled_features_and_state_dict_names():
    model = _tiny()
    x = torch.randn(3, 3, 32, 64, 64)
    assert model.forward_pooled(x).shape == (3, 192)
    with pytest.raises(ValueError, match="several heads"):
        model(x)
    with pytest.raises(ValueError, match="unknown head 'k400'"):
        model(x, head="k400")
    model.add_head("k400", 400)
    assert model(x, head="k400").shape == (3, 400)
    keys = set(model.state_dict())
    for k in ["blocks.0.norm1.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias", "blocks.1.mlp.fc1.weight",
              "blocks.1.mlp.fc2.bias", "blocks.1.norm2.weight", "norm.weight", "pool.probe", "heads.k400.weight",
              "tokenizer.tubes.3.weight"]:
        assert k in keys
    # one head alone needs no name
    assert _tiny(num_classes=4)(x).shape == (3, 4)


def test_eval_is_deterministic_and_batch_independent():
    model = _tiny(num_classes=4, drop_path=0.1, dropout=0.1).eval()
    x = torch.randn(3, 3, 32, 64, 64)
    full = model(x)
    assert torch.allclose(full[1:2], model(x[1:2]), atol=1e-5)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown model config keys.*valid keys"):
        tubevit.create_model("tubevit_tiny", widht=192)
    with pytest.raises(ValueError, match="unknown model 'tubevit_giant'"):
        tubevit.create_model("tubevit_giant")
    with pytest.raises(ValueError, match="not divisible by 5 heads"):
        tubevit.create_model("tubevit_tiny", num_heads=5)
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"width": 192, "colour": 1})
    cfg = ModelConfig(width=96, depth=1, num_heads=2, mlp_dim=192, num_classes={"a": 2})
    assert TubeViT(ModelConfig.from_dict(cfg.to_dict())).cfg == cfg


def test_frozen_prefix_runs_in_eval_mode_and_gets_no_gradient():
    torch.manual_seed(0)
    model = tubevit.create_model("tubevit_tiny", num_classes=4, depth=3, drop_path=0.5, dropout=0.2, freeze_until=2).train()
    assert [b.training for b in model.blocks] == [False, False, True]
    assert not any(p.requires_grad for p in model.tokenizer.parameters())
    x = torch.randn(2, 3, 32, 64, 64)
    # The frozen prefix is deterministic in train mode: its output is the same on every call.
    prefix = lambda: model.blocks[1](model.blocks[0](model.embed(x)))  # noqa: E731
    assert torch.equal(prefix(), prefix())
    model(x).sum().backward()
    assert all(p.grad is None for p in model.blocks[:2].parameters())
    assert all(p.grad is not None for p in model.blocks[2].parameters())
    model.freeze_until(0)
    assert all(b.training for b in model.blocks)
