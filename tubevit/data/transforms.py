"""Tensor transforms for clips and images (no torchvision).

Axis order: a clip is ``[C, T, H, W]``, an image ``[C, H, W]``; every spatial op here acts on the
last two axes only, so one crop, flip or RandAugment op is by construction shared by all frames of
a clip (paper §5: random spatial and temporal crops; RandAugment 2 layers, magnitude 10, applied
identically to every frame). Values are float in ``[0, 1]`` until :func:`normalize`.

Two paths with one set of semantics. The *float* ops (``resize``, ``random_resized_crop``,
:meth:`RandAugment.apply` on float input) are the reference. The *uint8* path is what the
datasets run: the random window is cut from the decoded ``uint8`` frames before any conversion,
scaled once per clip straight to the output size (:func:`crop_resize`, PyTorch's SIMD uint8
antialiased bilinear kernel with frames as the batch), flipped and RandAugment-ed on ``uint8``
(the pointwise ops are one 256-entry table per channel, computed from clip statistics, so they
cost one table look-up per byte; the geometric ops are one gather of the bytes through an index
map shared by all frames; colour and sharpness go through float a few frames at a time), and only
then converted to normalised float
(:func:`normalize_uint8`). Each uint8 op equals its float reference on the same (uint8-valued)
input up to the final rounding to 8 bits (tests/data/test_transforms.py); the crop box and op
parameters are drawn from the generator in the same order as the float path, so a seed gives
the same crop boxes and ops on both paths.

Randomness comes from an optional ``torch.Generator`` so that the loader can make every sample's
augmentation a pure function of (seed, epoch, index), independent of the number of workers.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MixupCutmix",
    "RandAugment",
    "auto_randaugment",
    "center_crop",
    "crop",
    "crop_resize",
    "hflip",
    "normalize",
    "normalize_uint8",
    "random_resized_crop",
    "random_resized_crop_params",
    "resize",
    "short_side_resize",
    "smooth_one_hot",
    "spatial_crops",
    "three_crop",
    "to_float",
    "to_planes",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _rand(generator: torch.Generator | None, *shape) -> torch.Tensor:
    return torch.rand(shape or (), generator=generator)


def to_float(frames) -> torch.Tensor:
    """Decoder output ``uint8 [T, H, W, 3]`` -> float clip ``[3, T, H, W]`` in [0, 1]; an image
    ``uint8 [H, W, 3]`` -> ``[3, H, W]``."""
    x = torch.as_tensor(np.ascontiguousarray(frames))
    x = x.movedim(-1, 0)  # channels first: [3, T, H, W] or [3, H, W]
    return x.float().div_(255.0)


def to_planes(frames) -> torch.Tensor:
    """Decoder output ``uint8 [T, H, W, 3]`` -> a ``uint8 [3, T, H, W]`` view (no copy); an image
    ``[H, W, 3]`` -> ``[3, H, W]``."""
    return torch.as_tensor(np.ascontiguousarray(frames)).movedim(-1, 0)


def normalize_uint8(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """``uint8 [C, ...]`` -> float ``(x / 255 - mean) / std`` in one conversion (two passes)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(shape)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(shape)
    out = x.to(torch.float32)
    return out.mul_(1.0 / (255.0 * std_t)).sub_(mean_t / std_t)


# ---------------------------------------------------------------------------------------------
# Geometry


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of the last two axes (antialiased when shrinking)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    lead = x.shape[:-2]
    flat = x.reshape(1, -1, h, w)  # every channel/frame is an independent plane
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, *size)


def crop_resize(x: torch.Tensor, box: tuple[int, int, int, int] | None, size: tuple[int, int]) -> torch.Tensor:
    """Cut ``box = (top, left, h, w)`` (None: the whole frame) from ``uint8 [C, T, H, W]`` (or
    ``[C, H, W]``) and scale it to ``size`` with antialiased bilinear filtering, on uint8.

    Only the window is touched, never the full source frame, and the scale runs once per clip
    with the frames as the batch of PyTorch's uint8 channels-last kernel (the layout the decoder
    writes, so no transpose is copied). Equal to :func:`resize` of the float crop up to the final
    rounding to 8 bits (and the uint8 kernel's fixed-point weights: at most 1/255 either way).
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"crop_resize takes uint8 frames, got {x.dtype}")
    if box is not None:
        x = crop(x, *box)
    image = x.dim() == 3
    nchw = x.unsqueeze(1).movedim(0, 1) if image else x.movedim(0, 1)  # [T, C, h, w]
    if tuple(nchw.shape[-2:]) != tuple(size):
        # channels-last input is what the uint8 SIMD kernel wants; a [T, H, W, 3] crop already is.
        nchw = nchw.contiguous(memory_format=torch.channels_last)
        nchw = F.interpolate(nchw, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    out = nchw.movedim(1, 0)  # [C, T, S, S]
    return out[:, 0] if image else out


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output ``(h, w)`` of :func:`short_side_resize`."""
    if height <= width:
        return size, max(1, int(round(width * size / height)))
    return max(1, int(round(height * size / width))), size


def short_side_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so that the shorter spatial side is ``size``, keeping the aspect ratio."""
    h, w = x.shape[-2:]
    if h <= w:
        return resize(x, (size, max(1, int(round(w * size / h)))))
    return resize(x, (max(1, int(round(h * size / w))), size))


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    return x[..., top : top + height, left : left + width]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size x size`` window (the input must be at least that large)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w}; resize first")
    return crop(x, (h - size) // 2, (w - size) // 2, size, size)


def three_crop(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Three ``size x size`` crops along the longer side: start, centre, end (the usual
    3-crop test views; with the short side resized to ``size`` they cover the whole frame)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w}; resize first")
    if w >= h:
        return [crop(x, (h - size) // 2, left, size, size) for left in (0, (w - size) // 2, w - size)]
    return [crop(x, top, (w - size) // 2, size, size) for top in (0, (h - size) // 2, h - size)]


def spatial_crops(x: torch.Tensor, size: int, crops: int) -> list[torch.Tensor]:
    """Evaluation crops: 1 -> centre crop, 3 -> :func:`three_crop` (paper: 4x3 views)."""
    if crops == 1:
        return [center_crop(x, size)]
    if crops == 3:
        return three_crop(x, size)
    raise ValueError(f"crops must be 1 or 3, got {crops}")


def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random window with area fraction in ``scale`` and aspect ratio in
    ``ratio`` (log-uniform); after 10 failed tries, the largest centred window within ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * float(_rand(generator)))
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(_rand(generator)))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random window for the whole clip, resized to ``size x size``."""
    top, left, h, w = random_resized_crop_params(*x.shape[-2:], scale, ratio, generator)
    return resize(crop(x, top, left, h, w), (size, size))


def hflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def normalize(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """``(x - mean) / std`` over the channel axis (axis 0 of ``[C, ...]``)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    mean_t = torch.as_tensor(mean, dtype=x.dtype).reshape(shape)
    std_t = torch.as_tensor(std, dtype=x.dtype).reshape(shape)
    return (x - mean_t) / std_t


# ---------------------------------------------------------------------------------------------
# RandAugment


def _gray(x: torch.Tensor) -> torch.Tensor:
    # ITU-R 601 luma, as PIL's "L" conversion; keeps a channel axis of 1.
    return (0.299 * x[0:1] + 0.587 * x[1:2] + 0.114 * x[2:3])


def _blend(a: torch.Tensor, b: torch.Tensor, factor: float) -> torch.Tensor:
    # factor 1 -> a, 0 -> b, >1 extrapolates (PIL ImageEnhance semantics)
    return (b + factor * (a - b)).clamp_(0, 1)


def _nearest_source(h: int, w: int, matrix: torch.Tensor, device) -> torch.Tensor:
    """Flat source index ``y * w + x`` of each output pixel of an ``h x w`` frame under a 2x3
    ``affine_grid`` matrix (output -> input, normalised coordinates), nearest neighbour, -1 where
    the source falls outside the frame. The index is what ``grid_sample(mode="nearest")`` picks:
    it is computed by sampling an image of the indices themselves, so ties round as there."""
    dtype = torch.float32 if h * w < 2**24 else torch.float64  # every index exact in the float
    ids = torch.arange(1, h * w + 1, dtype=dtype, device=device).view(1, 1, h, w)
    grid = F.affine_grid(matrix.to(device, dtype).unsqueeze(0), [1, 1, h, w], align_corners=False)
    picked = F.grid_sample(ids, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return picked.view(-1).long() - 1  # the zero padding becomes -1


def _affine(x: torch.Tensor, matrix: torch.Tensor, fill) -> torch.Tensor:
    """Apply a 2x3 matrix to every plane of ``x`` (float or uint8), nearest neighbour, ``fill``
    where the source lies outside the frame.

    Nearest neighbour is what the reference RandAugment implementations resample geometric ops
    with (the TensorFlow AutoAugment/RandAugment code of the big_vision lineage, torchvision's
    default): every output pixel is a copy of an input pixel, so the op is one gather with an index
    map computed once per clip and shared by all frames and channels, on uint8 directly (20-36 ms
    per op on a 64x224x224 clip against 168-327 ms through a bilinear ``grid_sample`` on float;
    docs/BENCHMARKS.md, "RandAugment ops")."""
    h, w = x.shape[-2:]
    idx = _nearest_source(h, w, matrix, x.device)
    outside = idx < 0
    planes = x.reshape(-1, h * w)
    if x.device.type == "cpu" and x.dtype == torch.uint8:
        # NumPy's take on bytes: ~6x torch's index_select on uint8 (which widens per element)
        idx_np = idx.clamp(min=0).numpy()
        out = torch.from_numpy(np.take(planes.numpy(), idx_np, axis=1))
    else:
        out = planes.index_select(1, idx.clamp(min=0))
    out[:, outside] = fill
    return out.reshape(x.shape)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    # Histogram equalisation per channel, with the histogram of the whole clip so every frame
    # gets the same mapping (PIL ImageOps.equalize's rule otherwise).
    q = (x * 255).round().long().clamp_(0, 255)
    out = torch.empty_like(x)
    for c in range(x.shape[0]):
        hist = torch.bincount(q[c].reshape(-1), minlength=256)
        nonzero = hist[hist > 0]
        # PIL's rule with a real-valued step, so a clip of identical frames maps exactly as one
        # frame does (integer division would round differently at a different pixel count).
        step = (nonzero.sum() - nonzero[-1]).double() / 255
        if step == 0:
            out[c] = x[c]
            continue
        before = torch.cumsum(hist, 0).double() - hist  # pixels strictly below each level
        lut = torch.floor((before + step / 2) / step).clamp_(0, 255).long()
        out[c] = lut[q[c]].float() / 255
    return out


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(1).values.reshape(-1, *([1] * (x.dim() - 1)))
    hi = flat.max(1).values.reshape(-1, *([1] * (x.dim() - 1)))
    scale = torch.where(hi > lo, 1.0 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
    lo = torch.where(hi > lo, lo, torch.zeros_like(lo))
    return ((x - lo) * scale).clamp_(0, 1)


def _sharpness(x: torch.Tensor, factor: float) -> torch.Tensor:
    # PIL's SMOOTH kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 = (3x3 box sum + 4 x centre) / 13,
    # the box as two 3-tap sums over shifted views of the replicate-padded planes: the same
    # values as conv2d with that kernel, about 3x less CPU on a 64x224x224 clip (a one-channel conv2d
    # over 192 planes does not vectorise).
    h, w = x.shape[-2:]
    planes = x.reshape(-1, 1, h, w)
    p = F.pad(planes, (1, 1, 1, 1), mode="replicate")[:, 0]
    rows = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]  # [P, H + 2, W]
    box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]  # [P, H, W]
    blurred = box.add_(planes[:, 0], alpha=4.0).div_(13.0)
    return _blend(planes[:, 0], blurred, factor).reshape(x.shape)


def auto_randaugment(num_samples: int, max_magnitude: float = 10.0) -> float:
    """The magnitude ``randaugment_magnitude: auto`` means for a training set of ``num_samples``:
    0 (off) below 10k samples, ``max_magnitude`` (the paper's 10, §5) from 100k, log-linear in
    between. Strong augmentation is a regulariser for large sets and long runs; on a small set
    trained from scratch for a few thousand steps it only hides the signal (docs/TRAINING.md)."""
    if num_samples <= 0:
        return 0.0
    frac = (math.log10(num_samples) - 4.0) / (5.0 - 4.0)
    return round(max_magnitude * min(1.0, max(0.0, frac)), 3)


class RandAugment:
    """RandAugment (Cubuk et al. 2020) on a clip ``[C, T, H, W]`` or image ``[C, H, W]``.

    ``num_layers`` ops drawn uniformly with replacement, each at ``magnitude`` out of 10 with a
    random sign where the op has one (timm's ``rand-m10-n2`` without magnitude noise; paper §5:
    2 layers, magnitude 10). One draw is applied to the whole clip: geometric ops use one matrix
    for all frames and intensity statistics (equalize, autocontrast, contrast mean) are computed
    over the clip, so every frame gets the same mapping.
    """

    OPS = (
        "identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize",
        "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y",
    )

    def __init__(self, num_layers: int = 2, magnitude: float = 10, fill: float = 0.5):
        self.num_layers, self.magnitude, self.fill = num_layers, magnitude, fill

    def __repr__(self) -> str:
        return f"RandAugment(num_layers={self.num_layers}, magnitude={self.magnitude})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply_drawn(x, self.draw(generator))

    def draw(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """The random part alone: ``LongTensor [num_layers, 2]`` of (op index, sign +-1), drawn in
        the order :meth:`__call__` always drew them. Workers draw; with ``data.augment_on=device``
        the ops are then applied to the batch on the accelerator (:meth:`apply_drawn`)."""
        drawn = []
        for _ in range(self.num_layers):
            op = int(torch.randint(len(self.OPS), (), generator=generator))
            sign = 1 if float(_rand(generator)) < 0.5 else -1
            drawn.append((op, sign))
        return torch.tensor(drawn, dtype=torch.long).reshape(self.num_layers, 2)

    def apply_drawn(self, x: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
        """Apply the ops of :meth:`draw` in order (uint8 or float input, any device)."""
        for op, sign in drawn.tolist():
            x = self.apply(x, self.OPS[op], self.magnitude, float(sign))
        return x

    def apply(self, x: torch.Tensor, op: str, magnitude: float, sign: float = 1.0) -> torch.Tensor:
        """One named op at ``magnitude`` (0-10) with ``sign`` (deterministic; used in tests).

        Float input in [0, 1] is the reference implementation; ``uint8`` input runs the fast path
        (:func:`_apply_uint8`), equal to the reference up to rounding the result to 8 bits."""
        if x.dtype == torch.uint8:
            return _apply_uint8(self, x, op, magnitude, sign)
        m = magnitude / 10.0
        if op == "identity":
            return x
        if op == "autocontrast":
            return _autocontrast(x)
        if op == "equalize":
            return _equalize(x)
        if op == "solarize":  # invert pixels above a threshold falling from 1 to 0
            threshold = 1.0 - m
            return torch.where(x >= threshold, 1.0 - x, x)
        if op == "posterize":  # keep 8 - 4m bits (timm's increasing posterize: 4 at m=10)
            bits = int(round(8 - 4 * m))
            shift = 8 - bits
            q = (x * 255).round().to(torch.uint8)
            return ((q >> shift) << shift).float() / 255
        if op in ("color", "contrast", "brightness", "sharpness"):
            factor = 1.0 + sign * 0.9 * m
            if op == "color":
                return _blend(x, _gray(x).expand_as(x), factor)
            if op == "contrast":
                return _blend(x, _gray(x).mean().expand_as(x), factor)
            if op == "brightness":
                return _blend(x, torch.zeros_like(x), factor)
            return _sharpness(x, factor)
        if op not in GEOMETRIC_OPS:
            raise ValueError(f"unknown RandAugment op {op!r}")
        return _affine(x, _affine_matrix(op, m, sign, *x.shape[-2:]), self.fill)


GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def _affine_matrix(op: str, m: float, sign: float, h: int, w: int) -> torch.Tensor:
    """The 2x3 matrix of a geometric RandAugment op at ``m = magnitude / 10``, mapping output to
    input in ``affine_grid``'s normalised coordinates (float32, as :func:`_affine` samples)."""
    return torch.tensor(_affine_rows(op, m, sign, h, w), dtype=torch.float32)


def _affine_rows(op: str, m: float, sign: float, h: int, w: int) -> list[list[float]]:
    if op == "rotate":
        # affine_grid works in normalised coords; correct for non-square frames
        theta = math.radians(30.0 * m * sign)
        c, s = math.cos(theta), math.sin(theta)
        return [[c, -s * h / w, 0.0], [s * w / h, c, 0.0]]
    if op == "shear_x":
        return [[1.0, 0.3 * m * sign * h / w, 0.0], [0.0, 1.0, 0.0]]
    if op == "shear_y":
        return [[1.0, 0.0, 0.0], [0.3 * m * sign * w / h, 1.0, 0.0]]
    if op == "translate_x":  # up to 45% of the width (timm's translate_pct); + moves right
        # the matrix maps output to input coordinates, hence the minus
        return [[1.0, 0.0, -2 * 0.45 * m * sign], [0.0, 1.0, 0.0]]
    if op == "translate_y":
        return [[1.0, 0.0, 0.0], [0.0, 1.0, -2 * 0.45 * m * sign]]
    raise ValueError(f"unknown geometric RandAugment op {op!r}")


# uint8 RandAugment: pointwise ops as one table per channel; the rest through float, once.

_LEVELS = torch.arange(256, dtype=torch.float64)  # the 256 values a uint8 pixel can take


def _table(values: torch.Tensor) -> torch.Tensor:
    """Float results in [0, 1] for each input level -> a uint8 table (rounded, clamped)."""
    return (values * 255).round_().clamp_(0, 255).to(torch.uint8)


def _lookup(x: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """``out[c] = tables[c][x[c]]`` for ``uint8 x [C, ...]`` and ``tables uint8 [C or 1, 256]``."""
    if x.device.type == "cpu":
        # NumPy indexes with uint8 directly (torch would widen every byte to int64 first); it
        # still widens each call's indices internally, so 64k bytes at a time keep that in cache
        # (12 against 21 ms for a 3x64x224x224 clip).
        xs = x.contiguous().numpy().reshape(x.shape[0], -1)
        ts = tables.numpy()
        out = np.empty(xs.shape, np.uint8)
        step = 1 << 16
        for c in range(xs.shape[0]):
            table, xc, oc = ts[c if ts.shape[0] > 1 else 0], xs[c], out[c]
            for i in range(0, xc.size, step):
                np.take(table, xc[i : i + step], out=oc[i : i + step])
        return torch.from_numpy(out.reshape(x.shape))
    tables = tables.to(x.device)
    return torch.stack([tables[c if tables.shape[0] > 1 else 0][x[c].long()] for c in range(x.shape[0])])


def _histograms(x: torch.Tensor) -> torch.Tensor:
    """Per-channel histograms of the whole clip: ``int64 [C, 256]``."""
    return torch.stack([torch.bincount(x[c].reshape(-1), minlength=256) for c in range(x.shape[0])]).cpu()


def _through_float(x: torch.Tensor, fn) -> torch.Tensor:
    # Ops that mix pixels (colour, sharpness, geometry) run on a float copy in [0, 1] and are
    # rounded back; one conversion each way per op.
    y = fn(x.to(torch.float32).div_(255.0))
    return y.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)


# Values per float chunk of a clip: ~2 MB of float32, so the ~10 passes of a colour or sharpness
# op stay in the CPU's cache instead of streaming the whole clip (38 MB of float at 64x224x224)
# through memory each pass: 4-7x less CPU on a 64x224x224 clip (colour 227 -> 53 ms, sharpness
# 473 -> 72 ms; docs/BENCHMARKS.md, "RandAugment ops").
_CHUNK_VALUES = 1 << 19


def _frames_through_float(x: torch.Tensor, fn) -> torch.Tensor:
    """:func:`_through_float` a few frames at a time, for ops that act on each frame alone
    (colour, sharpness: no clip-wide statistics), so the result is the same."""
    if x.dim() != 4 or x.device.type != "cpu":  # an image, or an accelerator: one pass
        return _through_float(x, fn)
    c, t, h, w = x.shape
    step = max(1, _CHUNK_VALUES // (c * h * w))
    if step >= t:
        return _through_float(x, fn)
    out = torch.empty_like(x)
    for t0 in range(0, t, step):
        out[:, t0 : t0 + step] = _through_float(x[:, t0 : t0 + step], fn)
    return out


def _apply_uint8(ra: "RandAugment", x: torch.Tensor, op: str, magnitude: float, sign: float) -> torch.Tensor:
    m = magnitude / 10.0
    v = _LEVELS / 255  # each level as the float path sees it
    if op == "identity":
        return x
    if op == "solarize":
        return _lookup(x, _table(torch.where(v >= 1.0 - m, 1.0 - v, v))[None])
    if op == "posterize":
        shift = 8 - int(round(8 - 4 * m))
        return _lookup(x, ((torch.arange(256) >> shift) << shift).to(torch.uint8)[None])
    if op == "brightness":
        factor = 1.0 + sign * 0.9 * m
        return _lookup(x, _table((factor * v).clamp(0, 1))[None])
    if op == "contrast":
        factor = 1.0 + sign * 0.9 * m
        hist = _histograms(x).double()
        # the clip's mean luma, as _gray(x).mean() computes it on the float clip
        means = (hist * v).sum(1) / hist.sum(1)
        mean = float(0.299 * means[0] + 0.587 * means[1] + 0.114 * means[2])
        return _lookup(x, _table((mean + factor * (v - mean)).clamp(0, 1))[None])
    if op == "autocontrast":
        hist = _histograms(x)
        tables = []
        for h in hist:
            present = torch.nonzero(h).flatten()
            lo, hi = int(present[0]), int(present[-1])
            if hi > lo:
                tables.append(_table(((_LEVELS - lo) / (hi - lo)).clamp(0, 1)))
            else:
                tables.append(torch.arange(256, dtype=torch.uint8))
        return _lookup(x, torch.stack(tables))
    if op == "equalize":
        tables = []
        for hist in _histograms(x):
            nonzero = hist[hist > 0]
            step = (nonzero.sum() - nonzero[-1]).double() / 255
            if step == 0:
                tables.append(torch.arange(256, dtype=torch.uint8))
                continue
            before = torch.cumsum(hist, 0).double() - hist
            tables.append(torch.floor((before + step / 2) / step).clamp_(0, 255).to(torch.uint8))
        return _lookup(x, torch.stack(tables))
    if op in GEOMETRIC_OPS:  # a gather on the bytes: no float at all
        return _affine(x, _affine_matrix(op, m, sign, *x.shape[-2:]), int(round(ra.fill * 255)))
    # colour and sharpness: per pixel or per frame, never clip-wide
    return _frames_through_float(x, lambda f: ra.apply(f, op, magnitude, sign))


# ---------------------------------------------------------------------------------------------
# Mixup / CutMix


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Label-smoothed one-hot targets: ``1 - smoothing + smoothing/K`` on the label,
    ``smoothing/K`` elsewhere (rows sum to 1)."""
    off = smoothing / num_classes
    out = torch.full((y.shape[0], num_classes), off, dtype=torch.float32)
    out.scatter_(1, y.long().view(-1, 1), 1.0 - smoothing + off)
    return out


class MixupCutmix:
    """Mixup / CutMix on a batch ``[B, C, H, W]`` or ``[B, C, T, H, W]`` with label smoothing.

    Each call mixes the batch with its reverse (``x.flip(0)``, as timm does, so no extra memory
    or sampling): with probability ``switch_prob`` CutMix (one box, shared by all frames),
    otherwise Mixup; ``prob`` is the chance of mixing at all. An alpha of 0 disables that mode.
    Returns ``(x_mixed, y_soft [B, num_classes])``; the CutMix weight is corrected to the box's
    true area after clipping. SSv2 in the paper: mixup 0.3, label smoothing 0.3 (Table 10).
    """

    def __init__(
        self,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
    ):
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y_soft = smooth_one_hot(y, num_classes, self.label_smoothing).to(x.device)
        use_mix = self.mixup_alpha > 0 or self.cutmix_alpha > 0
        if not use_mix or float(_rand(generator)) >= self.prob or x.shape[0] < 2:
            return x, y_soft
        cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or float(_rand(generator)) < self.switch_prob
        )
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = _beta(alpha, generator)
        partner = x.flip(0)  # a copy, taken before x changes
        if cutmix:
            h, w = x.shape[-2:]
            top, bottom, left, right = _cut_box(h, w, lam, generator)
            x = x.clone()
            x[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (h * w)
        else:
            x = lam * x + (1.0 - lam) * partner
        return x, lam * y_soft + (1.0 - lam) * y_soft.flip(0)


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    # torch's Beta sampler takes no generator; seed numpy's from the (possibly global) torch RNG
    # so the draw stays reproducible under the loader's per-sample seeding.
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _cut_box(h: int, w: int, lam: float, generator) -> tuple[int, int, int, int]:
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (), generator=generator))
    cx = int(torch.randint(0, w, (), generator=generator))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    return top, bottom, left, right
