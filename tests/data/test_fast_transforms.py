"""The uint8 fast path against the float reference: same crop boxes and ops for a seed, the same
result within interpolation/rounding tolerance, one mapping for every frame of a clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tubevit.data import datasets as datasets_mod
from tubevit.data.datasets import VideoDataset
from tubevit.data.decode import decode_frames
from tubevit.data.sampling import train_clip_indices
from tubevit.data.synthetic import write_video
from tubevit.data.transforms import (
    RandAugment,
    crop_resize,
    hflip,
    normalize,
    normalize_uint8,
    random_resized_crop,
    random_resized_crop_params,
    resize,
    short_side_resize,
    short_side_size,
    to_float,
)

TOL = 1.01 / 255  # one level of 8-bit rounding


def _u8_clip(t=5, h=40, w=56, seed=0) -> torch.Tensor:
    """uint8 [3, T, H, W] with smooth structure plus noise and varying frames."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 5.0)[..., None] * 60 + np.cos(yy / 7.0)[..., None] * 50 + 128)
    frames = [np.clip(base + g.normal(0, 20, (h, w, 3)) + 10 * i, 0, 255) for i in range(t)]
    return torch.from_numpy(np.stack(frames).astype(np.uint8)).movedim(-1, 0)  # [3, T, H, W]


def test_crop_resize_matches_float_resize_of_the_crop():
    x = _u8_clip(h=60, w=80)
    for box, size in (((3, 5, 50, 41), (24, 24)), (None, (30, 40)), ((0, 0, 20, 20), (32, 32))):
        ref = resize(x.float().div(255) if box is None else x.float().div(255)[..., box[0]:box[0] + box[2],
                                                                                box[1]:box[1] + box[3]], size)
        got = crop_resize(x, box, size)
        assert got.dtype == torch.uint8 and got.shape == (3, 5, *size)
        assert (got.float() / 255 - ref).abs().max() <= 1.5 / 255
    image = x[:, 0]
    assert crop_resize(image, (1, 2, 30, 30), (16, 16)).shape == (3, 16, 16)
    with pytest.raises(TypeError):
        crop_resize(x.float(), None, (8, 8))


def test_short_side_size_is_short_side_resize():
    for h, w in ((48, 64), (64, 48), (33, 100)):
        assert short_side_resize(torch.zeros(1, h, w), 20).shape[-2:] == short_side_size(h, w, 20)


@pytest.mark.parametrize("op", RandAugment.OPS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_uint8_op_equals_float_reference(op, sign):
    ra = RandAugment()
    x = _u8_clip()
    ref = ra.apply(x.float() / 255, op, 10, sign)  # the float reference on the same values
    for magnitude in (10, 4):
        ref = ra.apply(x.float() / 255, op, magnitude, sign)
        got = ra.apply(x, op, magnitude, sign)
        assert got.dtype == torch.uint8 and got.shape == x.shape
        diff = (got.float() / 255 - ref).abs()
        assert diff.max() <= TOL, (op, magnitude, float(diff.max()) * 255)


@pytest.mark.parametrize("op", ["autocontrast", "equalize", "contrast", "solarize", "color", "rotate"])
def test_uint8_op_one_mapping_for_all_frames(op):
    """Frames at different brightness: a level must map to the same output in every frame
    (statistics over the whole clip). An op computing its table per frame fails this."""
    ra = RandAugment()
    frame = _u8_clip(t=1)[:, 0]
    clip = torch.stack([frame, (frame.int() // 2 + 20).to(torch.uint8), frame], 1)  # frames 0 and 2 equal
    out = ra.apply(clip, op, 10, 1.0)
    assert torch.equal(out[:, 0], out[:, 2])
    if op in ("autocontrast", "equalize", "contrast", "solarize"):  # pointwise: one table per channel
        for c in range(3):
            table = {}
            for t in range(3):
                for v, o in zip(clip[c, t].flatten().tolist(), out[c, t].flatten().tolist()):
                    assert table.setdefault(v, o) == o, f"{op}: level {v} maps differently in frame {t}"


def test_per_frame_statistics_mutant_is_caught():
    """The frame-consistency check above must reject an autocontrast that looks at each frame alone."""
    ra = RandAugment()
    frame = _u8_clip(t=1)[:, 0]
    clip = torch.stack([frame, (frame.int() // 2 + 20).to(torch.uint8)], 1)
    mutant = torch.stack([ra.apply(clip[:, t : t + 1], "autocontrast", 10)[:, 0] for t in range(2)], 1)
    v = clip[0, 1].flatten()
    levels = set(clip[0, 0].flatten().tolist()) & set(v.tolist())
    lvl = next(iter(levels))
    a = mutant[0, 0][clip[0, 0] == lvl][0]
    b = mutant[0, 1][clip[0, 1] == lvl][0]
    assert a != b  # per-frame tables disagree, so the test above would fail on it


def test_draw_order_is_the_reference_call_order():
    """draw() consumes the generator exactly as the original loop (op index, then sign)."""
    ra = RandAugment(3, 10)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    drawn = ra.draw(g1).tolist()
    ref = []
    for _ in range(3):
        op = int(torch.randint(len(RandAugment.OPS), (), generator=g2))
        sign = 1 if float(torch.rand((), generator=g2)) < 0.5 else -1
        ref.append([op, sign])
    assert drawn == ref
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))  # nothing else consumed


def test_normalize_uint8_equals_normalize():
    x = _u8_clip()
    torch.testing.assert_close(normalize_uint8(x), normalize(x.float() / 255), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ whole training item


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    g = np.random.default_rng(3)
    base = g.integers(0, 256, (9, 12, 3), np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), np.uint8))[:68, :96]  # 68x96 blocks
    frames = np.stack([np.roll(base, 2 * i, axis=1) for i in range(24)])
    return write_video(tmp_path_factory.mktemp("fast") / "clip.mp4", frames, fps=24, gop=6)


def _reference_item(ds: VideoDataset, path, generator):
    """The float pipeline the datasets ran before the uint8 rewrite, step by step."""
    from tubevit.data.decode import probe

    info = probe(path)
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    idx = train_clip_indices(info.num_frames, ds.frames, 2, np.random.default_rng(seed), short=ds.short)
    wanted, inverse = np.unique(idx, return_inverse=True)
    frames = decode_frames(path, wanted, short_side=ds.decode_short_side(min(info.height, info.width)))
    clip = to_float(frames)[:, inverse]
    box = random_resized_crop_params(*clip.shape[-2:], ds.scale, generator=generator)
    clip = resize(clip[..., box[0]:box[0] + box[2], box[1]:box[1] + box[3]], (ds.size, ds.size))
    flipped = ds.hflip and float(torch.rand((), generator=generator)) < 0.5
    if flipped:
        clip = hflip(clip)
    ops = None
    if ds.randaugment is not None:
        ops = ds.randaugment.draw(generator)
        clip = ds.randaugment.apply_drawn(clip, ops)
    return normalize(clip, ds.mean, ds.std), box, flipped, ops


@pytest.mark.parametrize("seed", range(6))
def test_train_item_same_boxes_and_pixels_as_reference(clip_file, seed, monkeypatch):
    ds = VideoDataset([(clip_file.name, 0)], clip_file.parent, frames=8, size=32, train=True, randaugment=None)
    boxes = []
    real = datasets_mod.random_resized_crop_params
    monkeypatch.setattr(datasets_mod, "random_resized_crop_params", lambda *a, **k: boxes.append(real(*a, **k)) or boxes[-1])
    item = ds.get(0, torch.Generator().manual_seed(seed))
    ref, box, _, _ = _reference_item(ds, clip_file, torch.Generator().manual_seed(seed))
    assert boxes == [box]
    std = torch.tensor(ds.std).view(3, 1, 1, 1)
    assert ((item["video"][0] - ref).abs() * std).max() <= 1.5 / 255


@pytest.mark.parametrize("seed", range(4))
def test_train_item_with_randaugment_same_ops_as_reference(clip_file, seed, monkeypatch):
    ra = RandAugment(2, 10)
    ds = VideoDataset([(clip_file.name, 0)], clip_file.parent, frames=8, size=32, train=True, randaugment=ra)
    applied = []
    real = RandAugment.apply_drawn
    monkeypatch.setattr(RandAugment, "apply_drawn", lambda self, x, d: applied.append(d.tolist()) or real(self, x, d))
    item = ds.get(0, torch.Generator().manual_seed(seed))
    ref, _, _, ops = _reference_item(ds, clip_file, torch.Generator().manual_seed(seed))
    assert applied[0] == ops.tolist()
    std = torch.tensor(ds.std).view(3, 1, 1, 1)
    err = (item["video"][0] - ref).abs() * std
    # thresholded ops (solarize, posterize) may flip a pixel that rounding moved across the
    # threshold; the rest agree to a few levels
    assert float((err > 3 / 255).float().mean()) < 0.02


def test_train_item_frames_share_one_transform(tmp_path):
    """A video of one repeated frame must come out as identical frames with every op."""
    g = np.random.default_rng(0)
    frame = np.kron(g.integers(0, 256, (6, 8, 3), np.uint8), np.ones((8, 8, 1), np.uint8))
    path = write_video(tmp_path / "still.mp4", np.stack([frame] * 16), fps=16, gop=16, options={"crf": "0"})
    for op in range(len(RandAugment.OPS)):
        ra = RandAugment(1, 10)
        ds = VideoDataset([(path.name, 0)], tmp_path, frames=6, size=24, train=True, randaugment=ra)
        ra.draw = lambda generator=None, op=op: torch.tensor([[op, 1]])
        v = ds.get(0, torch.Generator().manual_seed(op))["video"][0]
        for t in range(1, v.shape[1]):
            assert (v[:, t] - v[:, 0]).abs().max() < 0.05, RandAugment.OPS[op]


@pytest.mark.parametrize("op", RandAugment.OPS)
def test_uint8_op_a_few_frames_at_a_time_equals_the_whole_clip(op, monkeypatch):
    """The uint8 path runs colour, sharpness and geometry a few frames at a time (cache-sized
    chunks); the result must be the whole-clip result exactly, also when the frame count is not a
    multiple of the chunk (5 frames, chunks of 2). An op needing clip-wide statistics routed
    through the chunks would differ here."""
    from tubevit.data import transforms

    ra = RandAugment()
    x = _u8_clip(t=5)
    whole = transforms._through_float(x, lambda f: ra.apply(f, op, 10, -1.0))
    monkeypatch.setattr(transforms, "_CHUNK_VALUES", 2 * 3 * 40 * 56)  # 2 frames per chunk
    got = ra.apply(x, op, 10, -1.0)
    if op in ("color", "sharpness", "rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
        assert torch.equal(got, whole), op
    else:  # the pointwise ops are tables over the whole clip: within one rounding level
        assert (got.int() - whole.int()).abs().max() <= 1, op
