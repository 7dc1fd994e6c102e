"""The three tokenizer constructions of §3.4, checked against plain convolutions."""

import pytest
import torch
import torch.nn.functional as F

import tubevit
from tubevit.model.tokenizer import Tube, TubeTokenizer, resize_kernel
from tubevit.model.tubes import TubeSpec, get_tube_set

torch.manual_seed(0)


def test_resize_kernel_to_its_own_shape_is_unchanged():
    k = torch.randn(6, 3, 8, 8, 8)
    assert torch.equal(resize_kernel(k, (8, 8, 8)), k)
    # a constant kernel stays constant whatever the target shape (trilinear is an average)
    c = torch.full((2, 3, 8, 8, 8), 0.5)
    assert torch.allclose(resize_kernel(c, (16, 4, 4)), torch.full((2, 3, 16, 4, 4), 0.5))
    assert resize_kernel(k, (1, 16, 16)).shape == (6, 3, 1, 16, 16)


def test_image_path_equals_conv2d_with_the_2d_tube():
    tok = TubeTokenizer(get_tube_set("paper"), 12, mode="multi")
    img = torch.randn(2, 3, 64, 48)
    tube = tok.tubes[tok.image_tube]
    ref = F.conv2d(img, tube.weight[:, :, 0], tube.bias, stride=16).flatten(2).transpose(1, 2)
    assert torch.allclose(tok(img), ref, atol=1e-5)


def test_multi_tube_equals_offset_conv3d_per_tube():
    tok = TubeTokenizer(get_tube_set("paper"), 12, mode="multi")
    x = torch.randn(1, 3, 32, 64, 64)
    out = tok(x)
    parts, start = [], 0
    for tube in tok.tubes:
        (ot, oh, ow), s = tube.spec.offset, tube.spec.stride
        parts.append(F.conv3d(x[:, :, ot:, oh:, ow:], tube.weight, tube.bias, stride=s).flatten(2).transpose(1, 2))
    assert torch.allclose(out, torch.cat(parts, 1), atol=1e-5)


@pytest.mark.parametrize("shape", [(32, 224, 224), (64, 96, 160), (21, 37, 53)])
def test_space_to_depth_keeps_tokens_and_width(shape):
    specs = get_tube_set("paper")
    multi, s2d = TubeTokenizer(specs, 24, mode="multi"), TubeTokenizer(specs, 24, mode="s2d")
    assert multi.layout(shape).counts == s2d.layout(shape).counts
    x = torch.randn(1, 3, *shape)
    assert s2d(x).shape == multi(x).shape == (1, multi.layout(shape).total, 24)


def test_space_to_depth_adds_no_parameter():
    d = 768
    multi = sum(p.numel() for p in TubeTokenizer(get_tube_set("paper"), d, mode="multi").parameters())
    s2d = sum(p.numel() for p in TubeTokenizer(get_tube_set("paper"), d, mode="s2d").parameters())
    # tube1 (x2, 8*8*8 kernel) and tube2 (x4, 16*4*4) convolve to d/S channels: (3*kvol + 1) * d/S each
    saved = (3 * 512 + 1) * (d - d // 2) + (3 * 256 + 1) * (d - d // 4)
    assert s2d == multi - saved < multi
    # whole models: same backbone and readout, fewer tube weights
    m = tubevit.create_model("tubevit_base", num_classes=10, tokenizer="multi", device="meta")
    s = tubevit.create_model("tubevit_base", num_classes=10, tokenizer="s2d", device="meta")
    assert m.param_groups_summary()["backbone"] == s.param_groups_summary()["backbone"]
    assert s.param_groups_summary()["total"] == m.param_groups_summary()["total"] - saved


def test_space_to_depth_packs_neighbours_on_channels():
    spec = TubeSpec((8, 8, 8), (16, 32, 32), s2d=(2, 1, 1))  # the paper's tube 1, x2 temporal
    tube = Tube(spec, 3, 12, own_weight=True)
    x = torch.randn(1, 3, 40, 72, 72)
    out = tube(x)  # grid (3, 3, 3): (40-8)//16+1 = 3
    # the conv at the reduced temporal stride 8; token t packs outputs 2t and 2t+1
    dense = F.conv3d(x, tube.weight, tube.bias, stride=(8, 32, 32))  # [1, 6, 5, 3, 3]
    tokens = out.reshape(3, 3, 3, 2, 6)
    for t in range(3):
        for j in range(2):
            if 2 * t + j < dense.shape[2]:
                assert torch.allclose(tokens[t, :, :, j], dense[0, :, 2 * t + j].permute(1, 2, 0), atol=1e-5)
    # token t=2 needs output 5, past the clip (frames 40..47): zero-padded input, so only the bias
    assert torch.allclose(tokens[2, :, :, 1], tube.bias.expand(3, 3, 6), atol=1e-6)


def test_spatial_space_to_depth_neighbour_order():
    spec = TubeSpec((1, 4, 4), (1, 8, 8), s2d=(1, 2, 2))
    tube = Tube(spec, 3, 8, own_weight=True)
    x = torch.randn(1, 3, 1, 16, 16)
    dense = F.conv3d(x, tube.weight, tube.bias, stride=(1, 4, 4))[0, :, 0]  # [2, 4, 4]
    tokens = tube(x).reshape(2, 2, 4, 2)  # grid 1x2x2, channels [neighbour(fh, fw) x 2]
    for h in range(2):
        for w in range(2):
            for n, (fh, fw) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
                assert torch.allclose(tokens[h, w, n], dense[:, 2 * h + fh, 2 * w + fw], atol=1e-5)


def test_interpolated_tokenizer_uses_one_shared_kernel():
    tok = TubeTokenizer(get_tube_set("paper"), 12, mode="interpolated")
    names = {n for n, _ in tok.named_parameters()}
    assert names == {"kernel"} | {f"tubes.{i}.bias" for i in range(4)}
    x = torch.randn(1, 3, 32, 64, 64)
    tube = tok.tubes[1]
    w = resize_kernel(tok.kernel, (16, 4, 4))
    ref = F.conv3d(x[:, :, 4:, 8:, 8:], w, tube.bias, stride=(6, 32, 32)).flatten(2).transpose(1, 2)
    out = tok(x)
    n0 = tok.layout((32, 64, 64)).counts[0]
    assert torch.allclose(out[:, n0:n0 + ref.shape[1]], ref, atol=1e-5)
    # the shared kernel gets gradient through every tube
    out.sum().backward()
    assert tok.kernel.grad is not None and tok.kernel.grad.abs().sum() > 0


def test_bad_inputs_raise_clear_errors():
    tok = TubeTokenizer(get_tube_set("paper"), 12)
    with pytest.raises(ValueError, match=r"add the batch axis"):
        tok(torch.randn(3, 32, 64, 64)[0])
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        tok(torch.randn(1, 1, 3, 32, 64, 64))
    with pytest.raises(ValueError, match="expected 3 channels.*transpose"):
        tok(torch.randn(1, 32, 3, 64, 64))
    with pytest.raises(ValueError, match="too small for tube 1"):
        tok(torch.randn(1, 3, 16, 64, 64))
    with pytest.raises(ValueError, match="too small for tube 0"):
        tok(torch.randn(1, 3, 8, 8))  # an image smaller than the 16x16 kernel
    dense = TubeTokenizer(get_tube_set("dense"), 12, mode="multi")
    with pytest.raises(ValueError, match="no 1-frame"):
        dense(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="unknown tokenizer"):
        TubeTokenizer(get_tube_set("paper"), 12, mode="dense")
