"""Image-to-video scaling (§3.6, Eq. 8): the gated shortcut, freezing, memory, and the
space-to-depth channel map from a small TubeViT to a larger width."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tubevit
from tubevit.convert.scaling import channel_plan, scale_up
from tubevit.engine.optim import param_groups
from tubevit.model.config import ModelConfig
from tubevit.model.tubes import TubeSpec
from tubevit.model.tubevit import TubeViT

CLIP = (1, 3, 32, 64, 64)


def _tiny(**kw):
    kw.setdefault("depth", 3)
    return tubevit.create_model("tubevit_tiny", num_classes={"k400": 5}, **kw)


@pytest.mark.parametrize("per_channel", [False, True])
def test_gate_at_alpha_zero_is_exactly_the_ungated_model(per_channel):
    torch.manual_seed(0)
    plain = _tiny().eval()
    gated = _tiny(gate_layer=1, gate_per_channel=per_channel).eval()
    missing = gated.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["gate.alpha"] and gated.gate.alpha.shape == ((192,) if per_channel else ())
    video, image = torch.randn(CLIP), torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(gated(video), plain(video))
        assert torch.equal(gated(image), plain(image))
    # The gate is wired: alpha gets a gradient, and a non-zero alpha changes the output.
    gated(video).sum().backward()
    assert gated.gate.alpha.grad is not None and gated.gate.alpha.grad.abs().sum() > 0
    with torch.no_grad():
        gated.gate.alpha.fill_(0.5)
        assert not torch.allclose(gated(video), plain(video))


def test_gate_adds_tanh_alpha_times_z0_after_block_s():
    torch.manual_seed(1)
    m = _tiny(gate_layer=1).eval()
    with torch.no_grad():
        m.gate.alpha.fill_(0.3)
        x = torch.randn(CLIP)
        z0 = m.embed(x)  # z0 = tube tokens + fixed position embedding (documented choice)
        z = m.blocks[1](m.blocks[0](z0)) + torch.tanh(torch.tensor(0.3)) * z0
        ref = m.norm(m.blocks[2](z))
        torch.testing.assert_close(m.forward_features(x), ref)


def test_freeze_until_requires_grad_and_validation():
    m = _tiny(gate_layer=2, freeze_until=2)
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in m.named_parameters() if n.startswith(("tokenizer.", "blocks.0.", "blocks.1."))}
    with pytest.raises(ValueError, match="frozen prefix"):
        _tiny(gate_layer=0, freeze_until=2)
    with pytest.raises(ValueError, match="outside"):
        m.freeze_until(4)
    m.freeze_until(0)
    assert all(p.requires_grad for p in m.parameters())


def _scaled(freeze_until=2, depth=4):
    torch.manual_seed(2)
    small = _tiny(depth=2)
    large = tubevit.create_model("tubevit_small", depth=depth, num_classes=3)
    return small, large, scale_up(small, large, freeze_until=freeze_until)


def test_training_step_leaves_frozen_params_unchanged_without_gradients():
    _, _, model = _scaled(freeze_until=2)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    loss = F.cross_entropy(model(torch.randn(2, *CLIP[1:])), torch.tensor([0, 1]))
    loss.backward()
    opt.step()
    names_trained = set()
    for n, p in model.named_parameters():
        if n.startswith(("tokenizer.", "blocks.0.", "blocks.1.")):
            assert not p.requires_grad and p.grad is None, n
            assert torch.equal(p, before[n]), n
        else:
            assert p.requires_grad, n
            names_trained.add(n)
    assert "gate.alpha" in names_trained and any(n.startswith("blocks.2.") for n in names_trained)
    assert not torch.equal(model.blocks[3].mlp.fc1.weight, before["blocks.3.mlp.fc1.weight"])
    # The training engine's optimizer takes only these parameters.
    groups = param_groups(model, 0.1)
    held = {id(p) for g in groups for p in g["params"]}
    assert held == {id(p) for p in trainable}


def _saved_bytes(model, x) -> int:
    """Bytes of the tensors autograd keeps for backward during one forward (CPU-robust, no timing)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum().backward()
    return total


def test_memory_of_a_step_with_most_layers_frozen_is_lower():
    torch.manual_seed(3)
    x = torch.randn(2, *CLIP[1:])
    full = _tiny(depth=6).train()
    frozen = _tiny(depth=6, gate_layer=5, freeze_until=5).train()
    full_b, frozen_b = _saved_bytes(full, x), _saved_bytes(frozen, x)
    # One of six blocks (plus readout) stores activations instead of six blocks and the tubes.
    assert frozen_b < 0.3 * full_b, (frozen_b, full_b)


def test_scale_up_exact_multiple_uses_every_small_channel():
    small, large, model = _scaled()
    assert model.cfg.width == 384 and model.cfg.gate_layer == 2 and model.cfg.freeze_until == 2
    specs = model.tokenizer.specs
    # Every video tube of the small model, packed by one more factor 2 (on t: first axis it fits).
    assert [s.s2d for s in specs] == [(4, 1, 1), (2, 2, 2), (2, 1, 1), (1, 1, 1)]
    for i in range(3):
        torch.testing.assert_close(model.tokenizer.tubes[i].weight, small.tokenizer.tubes[i].weight, rtol=0, atol=0)
    # Image tube, blocks and final norm from the large model; readout new.
    assert torch.equal(model.tokenizer.tubes[3].weight, large.tokenizer.tubes[3].weight)
    assert torch.equal(model.blocks[3].attn.qkv.weight, large.blocks[3].attn.qkv.weight)
    assert model.heads.names == ["k400"]
    # Token channel n*192 + c of the 4x12x12 tube = small kernel channel c on neighbour n (t + 8n).
    x = torch.randn(CLIP)
    with torch.no_grad():
        tokens = model.tokenizer.tubes[2](x)  # [1, N, 384]
        w, b = small.tokenizer.tubes[2].weight, small.tokenizer.tubes[2].bias
        for n in range(2):
            ref = F.conv3d(x[:, :, 8 * n:, 16:, 16:], w, b, stride=(16, 32, 32))[:, :, :2, :2, :2].flatten(2).transpose(1, 2)
            torch.testing.assert_close(tokens[:, :, 192 * n:192 * (n + 1)], ref)
    # At alpha = 0 the scaled model on images is the large model's backbone on images.
    with torch.no_grad():
        img = torch.randn(1, 3, 48, 48)
        torch.testing.assert_close(model.forward_features(img), large.forward_features(img))
        assert model(x).shape == (1, 5)


def test_scale_up_non_multiple_width_selects_the_first_channels():
    """B -> H is 768 -> 1280 (5:3); the same ratio here: 192 -> 320."""
    torch.manual_seed(4)
    small = _tiny(depth=2)
    large = TubeViT(ModelConfig(width=320, depth=3, num_heads=4, mlp_dim=640, pos_zero_fill=True))
    model = scale_up(small, large, freeze_until=2, per_channel_gate=True)
    specs = model.tokenizer.specs
    assert [s.s2d_factor for s in specs] == [4, 8, 2, 1] and model.gate.alpha.shape == (320,)
    assert model.tokenizer.tubes[2].weight.shape[0] == 160  # first 160 of 192 channels, x2 neighbours
    assert torch.equal(model.tokenizer.tubes[2].weight, small.tokenizer.tubes[2].weight[:160])
    assert torch.equal(model.tokenizer.tubes[0].weight, small.tokenizer.tubes[0].weight[:80])  # 96 -> 80, x4
    assert model(torch.randn(CLIP)).shape == (1, 5)
    # The paper's B -> H plan, by arithmetic only.
    assert channel_plan(TubeSpec((4, 12, 12), (16, 32, 32), (0, 16, 16)), 768, 1280)[1] == 640
    assert channel_plan(TubeSpec((8, 8, 8), (16, 32, 32), s2d=(2, 1, 1)), 384, 1280)[0].s2d == (4, 1, 1)


def test_scale_up_from_an_image_vit_state_dict_and_a_checkpoint_file(vit, tmp_path):
    small = _tiny(depth=2)
    path = tmp_path / "small.safetensors"
    small.save_pretrained(path)
    big = vit.timm_vit(5, width=384, depth=3, mlp=1536)
    model = scale_up(str(path), big, freeze_until=1, large_model="tubevit_small", depth=3)
    assert torch.equal(model.tokenizer.tubes[3].weight[:, :, 0], big["patch_embed.proj.weight"])
    assert torch.equal(model.tokenizer.tubes[2].weight, small.tokenizer.tubes[2].weight)
    assert model.cfg.gate_layer == 1 and sum(p.requires_grad for p in model.blocks[0].parameters()) == 0
