"""Transforms: shapes, closed-form values, one op for every frame, Mixup/CutMix label algebra."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tubevit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MixupCutmix,
    RandAugment,
    center_crop,
    hflip,
    normalize,
    random_resized_crop,
    random_resized_crop_params,
    short_side_resize,
    smooth_one_hot,
    spatial_crops,
    three_crop,
    to_float,
)


def _clip(t=4, h=24, w=32, seed=0):
    # Every frame identical, so per-frame differences after a transform would show.
    g = torch.Generator().manual_seed(seed)
    frame = torch.rand(3, 1, h, w, generator=g)
    return frame.expand(3, t, h, w).contiguous()


def test_to_float_layout_and_range():
    frames = np.zeros((5, 6, 7, 3), np.uint8)
    frames[..., 1] = 255
    x = to_float(frames)
    assert x.shape == (3, 5, 6, 7) and x.dtype == torch.float32
    assert x[1].min() == 1.0 and x[0].max() == 0.0


def test_short_side_resize_and_crops():
    x = _clip(h=24, w=32)
    y = short_side_resize(x, 12)
    assert y.shape == (3, 4, 12, 16)
    assert short_side_resize(_clip(h=40, w=20), 10).shape == (3, 4, 20, 10)
    c = center_crop(torch.arange(36.0).reshape(1, 6, 6), 2)
    np.testing.assert_array_equal(c[0].numpy(), [[14, 15], [20, 21]])
    crops = three_crop(torch.arange(12.0).reshape(1, 2, 6), 2)  # wide: left, centre, right
    assert [int(cr[0, 0, 0]) for cr in crops] == [0, 2, 4]
    assert len(spatial_crops(x, 24, 3)) == 3 and len(spatial_crops(x, 24, 1)) == 1
    with pytest.raises(ValueError):
        center_crop(x, 64)


def test_random_resized_crop_is_shared_by_all_frames():
    g = torch.Generator().manual_seed(3)
    out = random_resized_crop(_clip(), 16, generator=g)
    assert out.shape == (3, 4, 16, 16)
    for t in range(1, 4):
        torch.testing.assert_close(out[:, t], out[:, 0])


def test_random_resized_crop_params_respect_scale_and_bounds():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_params(100, 150, (0.25, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 150
        assert 0.2 * 15000 <= h * w <= 15000


def test_hflip_and_normalize():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    np.testing.assert_array_equal(hflip(x)[0, 0].numpy(), [[2, 1, 0], [5, 4, 3]])
    img = torch.ones(3, 2, 2) * torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    assert normalize(img).abs().max() < 1e-6
    one = normalize(torch.ones(3, 1, 1))
    torch.testing.assert_close(one.flatten(), (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))


@pytest.mark.parametrize("op", RandAugment.OPS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_randaugment_ops_same_for_every_frame(op, sign):
    ra = RandAugment()
    out = ra.apply(_clip(), op, 10, sign)
    assert out.shape == (3, 4, 24, 32)
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    for t in range(1, 4):
        torch.testing.assert_close(out[:, t], out[:, 0])
    # and equal to the op on a single image (a clip is not treated differently)
    torch.testing.assert_close(out[:, 0], ra.apply(_clip()[:, 0], op, 10, sign), atol=1e-5, rtol=0)


# Ops whose result on a frame does not depend on the other frames (no clip-wide statistics), so
# a clip's draw applied to each frame alone must give that frame of the clip's result.
_FRAME_LOCAL = {"identity", "rotate", "solarize", "color", "posterize", "brightness", "sharpness",
                "shear_x", "shear_y", "translate_x", "translate_y"}


def test_randaugment_draws_once_per_clip():
    ra = RandAugment(2, 10)
    g = torch.Generator().manual_seed(0)
    distinct = torch.rand(3, 4, 24, 32, generator=g)  # every frame different
    same = _clip()
    local_seeds = 0
    for seed in range(40):
        out = ra(distinct, torch.Generator().manual_seed(seed))
        g_ref = torch.Generator().manual_seed(seed)
        drawn = ra.draw(g_ref)
        # The call consumed exactly one draw of num_layers ops for the whole clip...
        g_call = torch.Generator().manual_seed(seed)
        ra(distinct, g_call)
        assert torch.equal(g_call.get_state(), g_ref.get_state()), seed
        torch.testing.assert_close(out, ra.apply_drawn(distinct, drawn))
        # ...so frames that were identical stay identical whatever ops were drawn,
        sout = ra(same, torch.Generator().manual_seed(seed))
        for t in range(1, 4):
            torch.testing.assert_close(sout[:, t], sout[:, 0])
        # and, for frame-local ops, each frame got the clip's ops, as if augmented alone.
        if all(RandAugment.OPS[op] in _FRAME_LOCAL for op, _ in drawn.tolist()):
            local_seeds += 1
            for t in range(4):
                torch.testing.assert_close(out[:, t], ra.apply_drawn(distinct[:, t], drawn), atol=1e-5, rtol=0)
    assert local_seeds >= 10  # the frame-by-frame check ran on many draws
    # The seeds drew varied ops: a clip-wide test on identity alone would prove nothing.
    assert len({tuple(ra.draw(torch.Generator().manual_seed(s)).flatten().tolist()) for s in range(40)}) > 20


def test_randaugment_closed_forms():
    ra = RandAugment()
    x = torch.tensor([0.2, 0.6, 0.95]).view(3, 1, 1)
    torch.testing.assert_close(ra.apply(x, "solarize", 5).flatten(), torch.tensor([0.2, 0.4, 0.05]))
    torch.testing.assert_close(ra.apply(x, "brightness", 10, -1).flatten(), x.flatten() * 0.1)
    # translate by 45% of the width: column 0 of a ramp moves right, filled with grey
    ramp = torch.linspace(0, 1, 20).expand(1, 4, 20)
    moved = ra.apply(ramp, "translate_x", 10, 1)
    assert torch.allclose(moved[0, :, :8], torch.tensor(0.5), atol=1e-5)
    torch.testing.assert_close(moved[0, :, 10:], ramp[0, :, 1:11])  # shifted by 9 columns
    assert not torch.equal(ra.apply(_clip(), "rotate", 10, 1), _clip())


def test_randaugment_seeded_and_varied():
    x = _clip()
    a = RandAugment(2, 10)(x, torch.Generator().manual_seed(5))
    b = RandAugment(2, 10)(x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    outs = {RandAugment(2, 10)(x, torch.Generator().manual_seed(s)).sum().item() for s in range(10)}
    assert len(outs) > 3


def test_smooth_one_hot():
    y = smooth_one_hot(torch.tensor([1, 0]), 4, 0.2)
    torch.testing.assert_close(y[0], torch.tensor([0.05, 0.85, 0.05, 0.05]))
    torch.testing.assert_close(y.sum(1), torch.ones(2))


def test_mixup_label_algebra():
    x = torch.stack([torch.zeros(3, 2, 4, 4), torch.ones(3, 2, 4, 4)])  # [B=2, C, T, H, W]
    y = torch.tensor([0, 1])
    mix = MixupCutmix(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0)
    xm, ym = mix(x, y, 2, torch.Generator().manual_seed(0))
    lam = 1 - xm[0].mean().item()  # sample 0 = lam * 0 + (1 - lam) * 1
    torch.testing.assert_close(ym[0], torch.tensor([lam, 1 - lam]))
    torch.testing.assert_close(ym.sum(1), torch.ones(2))


def test_cutmix_box_shared_across_frames_and_label_equals_area():
    x = torch.stack([torch.zeros(3, 3, 16, 16), torch.ones(3, 3, 16, 16)])
    mix = MixupCutmix(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1)
    for s in range(5):
        xm, ym = mix(x, torch.tensor([0, 1]), 2, torch.Generator().manual_seed(s))
        pasted = xm[0, 0, 0].mean().item()  # fraction of sample 0 replaced by sample 1
        for t in range(3):
            torch.testing.assert_close(xm[0, :, t], xm[0, :, 0])
        smooth = smooth_one_hot(torch.tensor([0, 1]), 2, 0.1)
        torch.testing.assert_close(ym[0], (1 - pasted) * smooth[0] + pasted * smooth[1])


def test_mixup_disabled_returns_smoothed_labels_only():
    x = torch.rand(4, 3, 8, 8)
    xm, ym = MixupCutmix(prob=0.0, label_smoothing=0.3)(x, torch.tensor([0, 1, 2, 3]), 4)
    assert torch.equal(xm, x)
    torch.testing.assert_close(ym, smooth_one_hot(torch.tensor([0, 1, 2, 3]), 4, 0.3))


@pytest.mark.parametrize("factor", [0.1, 1.0, 1.9])
def test_sharpness_is_the_smooth_kernel_blend(factor):
    # The separable sums must give exactly PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]] / 13
    # (replicate border), blended with the frame by the factor.
    import torch.nn.functional as F

    from tubevit.data.transforms import _sharpness

    x = torch.rand(3, 4, 11, 14, generator=torch.Generator().manual_seed(1))
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    planes = x.reshape(-1, 1, 11, 14)
    blurred = F.conv2d(F.pad(planes, (1, 1, 1, 1), mode="replicate"), kernel[None, None]).reshape(x.shape)
    want = (blurred + factor * (x - blurred)).clamp(0, 1)
    torch.testing.assert_close(_sharpness(x, factor), want, atol=1e-6, rtol=0)


def _nearest_reference(x: np.ndarray, mat, fill: float):
    """Independent NumPy geometry of the geometric ops: each output pixel centre in affine_grid's
    normalised coordinates (align_corners=False), mapped by the 2x3 matrix, back to pixels, rounded
    half to even; ``fill`` outside. Also returns where the source sits within 1e-4 of a rounding
    tie (the two float orders may round such a pixel either way)."""
    h, w = x.shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xn, yn = (2 * xx + 1) / w - 1, (2 * yy + 1) / h - 1
    m = np.asarray(mat, np.float64)
    xs = ((m[0, 0] * xn + m[0, 1] * yn + m[0, 2] + 1) * w - 1) / 2
    ys = ((m[1, 0] * xn + m[1, 1] * yn + m[1, 2] + 1) * h - 1) / 2
    tie = (np.abs(np.abs(xs - np.floor(xs)) - 0.5) < 1e-4) | (np.abs(np.abs(ys - np.floor(ys)) - 0.5) < 1e-4)
    xi, yi = np.rint(xs).astype(int), np.rint(ys).astype(int)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    out = np.full(x.shape, fill, x.dtype)
    out[..., inside] = x[..., yi[inside], xi[inside]]
    return out, tie


@pytest.mark.parametrize("op", ["rotate", "shear_x", "shear_y", "translate_x", "translate_y"])
@pytest.mark.parametrize("magnitude", [0.0, 1.3, 3.7, 10.0, 30.0])
def test_geometric_ops_are_nearest_neighbour_copies(op, magnitude):
    # Every output pixel is the input pixel its centre maps to (nearest) or the fill: both signs,
    # odd non-square frames, an offset past the whole frame (translate at 30), float and uint8.
    from tubevit.data.transforms import _affine_matrix

    x = torch.rand(3, 2, 13, 21, generator=torch.Generator().manual_seed(2))
    ra = RandAugment(fill=0.5)
    for sign in (1.0, -1.0):
        mat = _affine_matrix(op, magnitude / 10, sign, 13, 21)
        want, tie = _nearest_reference(x.numpy(), mat, 0.5)
        got = ra.apply(x, op, magnitude, sign).numpy()
        assert tie.mean() < 0.2  # nearly every pixel is checked (shear: a tie is a whole row)
        assert (got == want)[..., ~tie].all(), (op, magnitude, sign)
        x8 = (x * 255).round().to(torch.uint8)
        want8, _ = _nearest_reference(x8.numpy(), mat, 128)
        assert (ra.apply(x8, op, magnitude, sign).numpy() == want8)[..., ~tie].all(), (op, magnitude, sign)
        if magnitude == 30.0 and op.startswith("translate"):
            assert (got == 0.5).all()  # moved out of the frame entirely: all fill


@pytest.mark.parametrize("op", ["rotate", "shear_x", "shear_y", "translate_x", "translate_y"])
def test_geometric_ops_within_interpolation_of_bilinear(op):
    # Nearest neighbour against the bilinear resampling of the same matrix (what the op computed
    # before): on a ramp rising 1 / (h + w) per pixel they differ by at most half a pixel in each
    # axis, i.e. 1 / (h + w), away from the border where bilinear blends in the fill.
    import torch.nn.functional as F

    from tubevit.data.transforms import _affine_matrix

    h, w = 40, 56
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ramp = ((xx + yy) / (h + w)).expand(3, 2, h, w)
    mat = _affine_matrix(op, 0.7, 1.0, h, w)
    grid = F.affine_grid(mat[None], [1, 6, h, w], align_corners=False)
    bilinear = F.grid_sample(ramp.reshape(1, 6, h, w), grid, mode="bilinear", align_corners=False).reshape(ramp.shape)
    inside = F.grid_sample(torch.ones(1, 1, h, w), grid, mode="bilinear", align_corners=False)[0, 0] > 0.999
    got = RandAugment().apply(ramp, op, 7, 1.0)
    assert inside.sum() > 0.3 * h * w
    assert (got - bilinear)[..., inside].abs().max() <= 1.0 / (h + w) + 1e-5
