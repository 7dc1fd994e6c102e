"""Properties of FlexiViT PI-resize, temporal inflation and the space-to-depth channel mapping."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tubevit.convert.kernels import (group_average, inflate, interpolated_base, pi_resize, resize_matrix, resize_patch,
                                     tube_from_patch)
from tubevit.model.tokenizer import resize_kernel

# Everything in float64 so the exact properties are checked to ~1e-10 (explicit dtypes, no global default).
D = torch.float64


def _dot(x, w):  # x [B, C, h, w], w [O, C, h, w] -> [B, O]
    return torch.einsum("bchw,ochw->bo", x, w)


@pytest.mark.parametrize("old,new", [((16, 16), (24, 24)), ((16, 16), (32, 32)), ((14, 14), (16, 16)), ((8, 12), (16, 20))])
def test_pi_resize_keeps_the_embedding_of_a_resized_patch(old, new):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, *old, generator=g, dtype=D)
    x = torch.randn(7, 3, *old, generator=g, dtype=D)
    got = _dot(resize_patch(x, new), pi_resize(w, new))
    torch.testing.assert_close(got, _dot(x, w), rtol=1e-9, atol=1e-9)
    # Plain interpolation of the kernel does not keep it.
    plain = F.interpolate(w, size=new, mode="bilinear", align_corners=False)
    assert (_dot(resize_patch(x, new), plain) - _dot(x, w)).abs().max() > 1e-2


@pytest.mark.parametrize("new", [(8, 8), (4, 4), (12, 12)])
def test_pi_resize_is_the_least_squares_best_when_shrinking(new):
    """<R x, w'> = <x, R^T w'>; PI-resize minimises ||R^T w' - w|| over w' (the expected squared
    embedding error for white patches), so it beats any other kernel, e.g. rescaled interpolation."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 3, 16, 16, generator=g, dtype=D)
    r = resize_matrix((16, 16), new)  # [new, old]

    def err(k):
        return (k.reshape(12, -1) @ r - w.reshape(12, -1)).norm()

    best = err(pi_resize(w, new))
    for scale in (0.5, 1.0, (16 * 16) / (new[0] * new[1]), 4.0):
        plain = F.interpolate(w, size=new, mode="bilinear", align_corners=False, antialias=True) * scale
        assert best <= err(plain) + 1e-9
    assert best <= err(pi_resize(w, new) + 1e-3 * torch.randn(4, 3, *new, generator=g, dtype=D))


def test_pi_resize_identity_at_same_size():
    w = torch.randn(2, 3, 16, 16, dtype=D)
    assert torch.equal(pi_resize(w, (16, 16)), w)
    assert torch.equal(tube_from_patch(w, (1, 16, 16), "central")[:, :, 0], w)
    assert torch.equal(tube_from_patch(w, (1, 16, 16), "average")[:, :, 0], w)


@pytest.mark.parametrize("strategy", ["average", "central"])
@pytest.mark.parametrize("kt", [1, 4, 8])
def test_inflation_on_a_static_clip_gives_the_2d_result(strategy, kt):
    g = torch.Generator().manual_seed(2)
    w2, b = torch.randn(6, 3, 16, 16, generator=g, dtype=D), torch.randn(6, generator=g, dtype=D)
    frame = torch.randn(2, 3, 48, 48, generator=g, dtype=D)
    clip = frame.unsqueeze(2).expand(-1, -1, 2 * kt, -1, -1)  # all frames equal
    y3 = F.conv3d(clip, inflate(w2, kt, strategy), b, stride=(kt, 16, 16))  # [B, O, 2, 3, 3]
    y2 = F.conv2d(frame, w2, b, stride=16)
    for t in range(y3.shape[2]):
        torch.testing.assert_close(y3[:, :, t], y2, rtol=1e-10, atol=1e-10)


def test_inflation_layout():
    w2 = torch.randn(2, 3, 4, 4, dtype=D)
    c = inflate(w2, 5, "central")
    assert torch.equal(c[:, :, 2], w2) and c[:, :, [0, 1, 3, 4]].abs().sum() == 0
    torch.testing.assert_close(inflate(w2, 4, "average").sum(2), w2)
    with pytest.raises(ValueError, match="central"):
        inflate(w2, 2, "middle")


def test_group_average_is_the_mean_over_neighbour_groups():
    w = torch.arange(8.0, dtype=D).reshape(8, 1)
    # channel c of the s2d kernel = mean of channels c, c + d/S, ... (neighbour-major packing)
    assert group_average(w, 2).flatten().tolist() == [2.0, 3.0, 4.0, 5.0]
    assert torch.equal(group_average(w, 1), w)
    with pytest.raises(ValueError):
        group_average(w, 3)


@pytest.mark.parametrize("strategy", ["central", "average"])
def test_interpolated_base_is_the_closest_image_tube_the_resize_can_reach(strategy):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 3, 16, 16, generator=g, dtype=D)
    base = interpolated_base(w, (8, 8, 8), strategy)
    image_tube = resize_kernel(base, (1, 16, 16))[:, :, 0]
    best = (image_tube - w).norm()
    # Not exact (an 8x8 kernel upsampled cannot be an arbitrary 16x16 one) but better than the naive choices.
    for naive in (inflate(pi_resize(w, (8, 8)), 8, "central"), inflate(F.interpolate(w, size=(8, 8), mode="bilinear"), 8, "average") * 8):
        assert best < (resize_kernel(naive, (1, 16, 16))[:, :, 0] - w).norm()
    perturbed = base + 1e-3 * torch.randn(base.shape, generator=g, dtype=D)
    assert best <= (resize_kernel(perturbed, (1, 16, 16))[:, :, 0] - w).norm()
