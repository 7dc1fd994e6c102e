"""The tube-centre sin-cos embedding equals the closed form of §3.3 (Eq. 7)."""

import math

import pytest
import torch

import tubevit
from tubevit.model.pos_embed import PositionCache, reference_embedding, sincos_from_centres


def test_sincos_matches_closed_form_at_sample_positions():
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(20, 3, generator=g, dtype=torch.float64) * torch.tensor([64.0, 224.0, 320.0])
    emb = sincos_from_centres(centres, 48)
    for row, (t, y, x) in zip(emb, centres.tolist()):
        assert torch.allclose(row, torch.tensor(reference_embedding(t, y, x, 48), dtype=torch.float64), atol=1e-12)


def test_layout_of_channels_for_one_frequency():
    # channels 6j..6j+5 are sin t, cos t, sin x, cos x, sin y, cos y with w_j = tau^(-j/K)
    d, k = 12, 2
    e = sincos_from_centres(torch.tensor([[3.0, 5.0, 7.0]]), d)[0]
    w1 = 1 / 10000 ** (1 / k)
    assert e[:6].tolist() == pytest.approx([math.sin(3), math.cos(3), math.sin(7), math.cos(7), math.sin(5), math.cos(5)])
    assert e[6:].tolist() == pytest.approx([math.sin(3 * w1), math.cos(3 * w1), math.sin(7 * w1), math.cos(7 * w1),
                                            math.sin(5 * w1), math.cos(5 * w1)])


def test_model_embeds_each_token_at_its_tube_centre():
    model = tubevit.create_model("tubevit_tiny", num_classes=3)
    x = torch.zeros(1, 3, 32, 224, 224)
    table = model.position_embedding(x, torch.float64)
    assert table.shape == (539, 192)
    # tube4 (1x16x16, stride 32x16x16) starts after 98 + 147 + 98 tokens; its token (t=0, h=1, w=2)
    # covers rows 16..31 and columns 32..47 of frame 0: centre (0, 23.5, 39.5).
    i = 98 + 147 + 98 + 1 * 14 + 2
    assert torch.allclose(table[i], torch.tensor(reference_embedding(0, 23.5, 39.5, 192), dtype=torch.float64), atol=1e-6)
    # tube1 (s2d x2 in time: effective kernel 16 frames) token (t=1, h=0, w=0): centre (16+7.5, 3.5, 3.5)
    assert torch.allclose(table[49], torch.tensor(reference_embedding(23.5, 3.5, 3.5, 192), dtype=torch.float64), atol=1e-6)


def test_images_use_frame_zero_of_the_2d_tube():
    model = tubevit.create_model("tubevit_tiny", num_classes=3)
    table = model.position_embedding(torch.zeros(2, 3, 48, 80), torch.float64)  # non-square image
    assert table.shape == (3 * 5, 192)
    assert torch.allclose(table[5 + 4], torch.tensor(reference_embedding(0, 23.5, 71.5, 192), dtype=torch.float64))


def test_cache_per_shape_device_dtype_and_not_saved():
    model = tubevit.create_model("tubevit_tiny", num_classes=3)
    a = model.position_embedding(torch.zeros(1, 3, 32, 64, 64), torch.float32)
    assert model.position_embedding(torch.zeros(1, 3, 32, 64, 64), torch.float32) is a
    assert model.position_embedding(torch.zeros(1, 3, 40, 64, 96), torch.float32).shape[0] == model.token_layout((40, 64, 96)).total
    assert model.position_embedding(torch.zeros(1, 3, 32, 64, 64), torch.bfloat16).dtype == torch.bfloat16
    assert not any("pos" in k for k in model.state_dict())
    cache = PositionCache(12, max_entries=2)
    for n in range(4):
        cache.get(("video", (n,)), lambda: [(0.0, 0.0, 0.0)], torch.device("cpu"), torch.float32)
    assert len(cache._cache) == 2


def test_width_not_multiple_of_six():
    with pytest.raises(ValueError, match="not a multiple of 6.*pos_zero_fill"):
        tubevit.create_model("tubevit_tiny", width=100, num_heads=4, mlp_dim=400)
    # the paper's large/huge widths (1024, 1280) zero-fill the channels left over
    model = tubevit.create_model("tubevit_large", num_classes=3, device="meta")
    assert model.cfg.pos_zero_fill
    e = sincos_from_centres(torch.tensor([[1.0, 2.0, 3.0]]), 1024, zero_fill=True)[0]
    assert e[1020:].abs().sum() == 0 and e[:1020].abs().sum() > 0
