"""Sparse tube geometry (paper §3.2-§3.4, §4.1, supplementary Table 12). Pure functions, no torch modules.

Axis order, stated once for the whole library: tensors are ``[B, C, T, H, W]`` and every
kernel, stride, offset, grid and centre is a ``(t, h, w)`` triple.

A tube is a 3D convolution with its own kernel, stride and offset; the offset shifts where the
first kernel starts. Its output grid follows VALID convolution arithmetic per axis::

    n = floor((D - offset - kernel) / stride) + 1        (0 tokens when D < offset + kernel)

For the paper's four tubes on a 32x224x224 clip that is 2x7x7 + 3x7x7 + 2x7x7 + 1x14x14 = 539
tokens. The paper's text says 559; no padding or rounding rule reproduces 559 (see docs/MODEL.md).

Space-to-depth (§3.4) is a per-tube, per-axis factor ``s2d = (ft, fh, fw)``. A tube with factor S
= ft*fh*fw convolves to ``d/S`` channels at the reduced stride ``stride/f`` and concatenates the S
neighbouring outputs on the channel axis, so its token grid, and hence its token count and
centres' spacing, are exactly those of the tube without space-to-depth. Its *effective* kernel
spans ``kernel + (f-1) * stride/f`` per axis, and token centres are taken at the middle of that
span. When the last group of neighbours would run past the clip the input is zero-padded at the
far end (documented choice; the paper does not state the reduced strides or border handling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

Triple = tuple[int, int, int]
AXES = ("t", "h", "w")


def _triple(value, name: str) -> Triple:
    if isinstance(value, int):
        value = (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"{name} must be a (t, h, w) triple, got {value}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class TubeSpec:
    """One sparse tube: a 3D kernel placed at ``offset + index * stride`` along each axis.

    ``s2d`` is the space-to-depth factor per axis; it only takes effect in the ``s2d`` tokenizer.
    """

    kernel: Triple
    stride: Triple
    offset: Triple = (0, 0, 0)
    s2d: Triple = (1, 1, 1)
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "kernel", _triple(self.kernel, "kernel"))
        object.__setattr__(self, "stride", _triple(self.stride, "stride"))
        object.__setattr__(self, "offset", _triple(self.offset, "offset"))
        object.__setattr__(self, "s2d", _triple(self.s2d, "s2d"))
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.offset) < 0 or min(self.s2d) < 1:
            raise ValueError(f"tube {self.label}: kernel/stride/s2d must be >= 1 and offset >= 0")
        for axis, s, f in zip(AXES, self.stride, self.s2d):
            if s % f:
                raise ValueError(
                    f"tube {self.label}: space-to-depth factor {f} along {axis} must divide the "
                    f"stride {s} (the packed neighbours sit at stride/{f})"
                )

    @property
    def label(self) -> str:
        k = "x".join(map(str, self.kernel))
        return self.name or f"{k}@{'x'.join(map(str, self.stride))}+{'x'.join(map(str, self.offset))}"

    @property
    def is_2d(self) -> bool:
        """A tube one frame deep: the one images go through."""
        return self.kernel[0] == 1

    @property
    def s2d_factor(self) -> int:
        ft, fh, fw = self.s2d
        return ft * fh * fw

    @property
    def conv_stride(self) -> Triple:
        """Stride of the underlying convolution (reduced by the space-to-depth factor)."""
        return tuple(s // f for s, f in zip(self.stride, self.s2d))  # type: ignore[return-value]

    @property
    def effective_kernel(self) -> Triple:
        """Extent of input one token sees: the kernel plus the packed neighbours' shift."""
        return tuple(k + (f - 1) * (s // f) for k, s, f in zip(self.kernel, self.stride, self.s2d))  # type: ignore

    @property
    def min_input(self) -> Triple:
        """Smallest ``(T, H, W)`` that yields at least one token."""
        return tuple(o + k for o, k in zip(self.offset, self.kernel))  # type: ignore[return-value]

    def without_s2d(self) -> "TubeSpec":
        return TubeSpec(self.kernel, self.stride, self.offset, (1, 1, 1), self.name)

    def to_dict(self) -> dict:
        return {"kernel": list(self.kernel), "stride": list(self.stride), "offset": list(self.offset),
                "s2d": list(self.s2d), "name": self.name}

    @classmethod
    def from_dict(cls, d: dict) -> "TubeSpec":
        unknown = set(d) - {"kernel", "stride", "offset", "s2d", "name"}
        if unknown:
            raise ValueError(f"unknown tube keys {sorted(unknown)}; valid: kernel, stride, offset, s2d, name")
        return cls(d["kernel"], d["stride"], tuple(d.get("offset", (0, 0, 0))), tuple(d.get("s2d", (1, 1, 1))),
                   d.get("name", ""))


def axis_count(size: int, kernel: int, stride: int, offset: int) -> int:
    """VALID convolution output length along one axis (0 when the kernel does not fit)."""
    span = size - offset - kernel
    return 0 if span < 0 else span // stride + 1


def tube_grid(spec: TubeSpec, input_thw: Sequence[int]) -> Triple:
    """Token grid ``(nt, nh, nw)`` of one tube on an input of size ``(T, H, W)``."""
    return tuple(axis_count(d, k, s, o) for d, k, s, o in
                 zip(input_thw, spec.kernel, spec.stride, spec.offset))  # type: ignore[return-value]


def tube_token_count(spec: TubeSpec, input_thw: Sequence[int]) -> int:
    nt, nh, nw = tube_grid(spec, input_thw)
    return nt * nh * nw


def axis_centres(n: int, kernel: int, stride: int, offset: int) -> list[float]:
    """Centre coordinate of each of ``n`` kernels along one axis, in input pixels/frames.

    A kernel starting at ``s`` covers ``s .. s+kernel-1``; its centre is ``s + (kernel-1)/2``.
    (The public ports use ``kernel//2``; the exact centre differs by half a pixel for even
    kernels and is the "centre of the tube" the paper describes.)
    """
    return [offset + i * stride + (kernel - 1) / 2 for i in range(n)]


def tube_centres(spec: TubeSpec, input_thw: Sequence[int]) -> list[tuple[float, float, float]]:
    """Centre ``(t, y, x)`` of every token of a tube, in token order (t-major, then h, then w)."""
    nt, nh, nw = tube_grid(spec, input_thw)
    kt, kh, kw = spec.effective_kernel
    ct = axis_centres(nt, kt, spec.stride[0], spec.offset[0])
    ch = axis_centres(nh, kh, spec.stride[1], spec.offset[1])
    cw = axis_centres(nw, kw, spec.stride[2], spec.offset[2])
    return [(t, y, x) for t in ct for y in ch for x in cw]


def check_fits(specs: Iterable[TubeSpec], input_thw: Sequence[int]) -> None:
    """Raise a ``ValueError`` naming the first tube that yields no token and what it needs."""
    specs = list(specs)
    for i, spec in enumerate(specs):
        if tube_token_count(spec, input_thw) == 0:
            need = tuple(max(m, d) for m, d in zip(spec.min_input, input_thw))
            # The smallest input on which every tube fits, so one fix is enough.
            need_all = tuple(max([d] + [s.min_input[a] for s in specs]) for a, d in enumerate(input_thw))
            raise ValueError(
                f"input of T x H x W = {'x'.join(map(str, input_thw))} is too small for tube {i} "
                f"({spec.label}: kernel {spec.kernel}, offset {spec.offset}); it needs at least "
                f"{'x'.join(map(str, need))}, and this tube set needs at least "
                f"{'x'.join(map(str, need_all))} (frames x height x width)"
            )


# --------------------------------------------------------------------------- named tube sets

def _paper() -> tuple[TubeSpec, ...]:
    # §4.1 / Table 12. The space-to-depth factors are those of the main model (x2 temporal on
    # tube 1, x4 spatial = 2x2 over h and w on tube 2); they only act in the ``s2d`` tokenizer.
    return (
        TubeSpec((8, 8, 8), (16, 32, 32), (0, 0, 0), s2d=(2, 1, 1), name="tube1_8x8x8"),
        TubeSpec((16, 4, 4), (6, 32, 32), (4, 8, 8), s2d=(1, 2, 2), name="tube2_16x4x4"),
        TubeSpec((4, 12, 12), (16, 32, 32), (0, 16, 16), name="tube3_4x12x12"),
        TubeSpec((1, 16, 16), (32, 16, 16), (0, 0, 0), name="tube4_1x16x16"),
    )


def _two_tube() -> tuple[TubeSpec, ...]:
    # §3.4, the simplest form: a 2D and a 3D kernel, both at stride 16x16x16.
    return (
        TubeSpec((1, 16, 16), (16, 16, 16), name="image_1x16x16"),
        TubeSpec((8, 8, 8), (16, 16, 16), name="video_8x8x8"),
    )


def _image2d() -> tuple[TubeSpec, ...]:
    # The "2D patches only" baseline (Table 5): the 1x16x16 kernel alone, on every 16th frame.
    return (TubeSpec((1, 16, 16), (16, 16, 16), name="image_1x16x16"),)


def _charades() -> tuple[TubeSpec, ...]:
    # §4.3 / Charades: the interpolated kernels are resized to 1x16x16, 16x16x16, 32x8x8 and
    # 4x32x32 "with the same strides". We read that as each main tube scaled up in place
    # (8x8x8 -> 16x16x16, 16x4x4 -> 32x8x8, 4x12x12 -> 4x32x32, 1x16x16 kept) with the main
    # tubes' strides and offsets; the paper does not give the mapping.
    return (
        TubeSpec((16, 16, 16), (16, 32, 32), (0, 0, 0), name="c1_16x16x16"),
        TubeSpec((32, 8, 8), (6, 32, 32), (4, 8, 8), name="c2_32x8x8"),
        TubeSpec((4, 32, 32), (16, 32, 32), (0, 16, 16), name="c3_4x32x32"),
        TubeSpec((1, 16, 16), (32, 16, 16), (0, 0, 0), name="c4_1x16x16"),
    )


def _dense() -> tuple[TubeSpec, ...]:
    # Not TubeViT: ViViT-style dense 2x16x16 tubelets, the comparison point for cost.
    return (TubeSpec((2, 16, 16), (2, 16, 16), name="dense_2x16x16"),)


TUBE_SETS = {
    "paper": _paper,
    "two_tube": _two_tube,
    "image2d": _image2d,
    "charades": _charades,
    "dense": _dense,
}


def get_tube_set(tubes) -> tuple[TubeSpec, ...]:
    """A named set (``paper``, ``two_tube``, ``image2d``, ``charades``, ``dense``) or a user list
    of ``TubeSpec`` / dicts with keys ``kernel, stride, offset, s2d, name``."""
    if isinstance(tubes, str):
        if tubes not in TUBE_SETS:
            raise ValueError(f"unknown tube set {tubes!r}; choose one of {sorted(TUBE_SETS)} or give a list of tubes")
        return TUBE_SETS[tubes]()
    specs = tuple(t if isinstance(t, TubeSpec) else TubeSpec.from_dict(dict(t)) for t in tubes)
    if not specs:
        raise ValueError("a tube set needs at least one tube")
    return specs


# Every named set is laid out in pixels for 224 x 224 frames (§4.1: the paper trains at 224).
REFERENCE_SIZE = 224


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def scale_tube(spec: TubeSpec, factor: float, *, kernels: bool = False) -> TubeSpec:
    """``spec`` with its spatial strides and offsets (and, with ``kernels``, spatial kernel sizes)
    multiplied by ``factor`` -- the knob Table 7d turns -- rounded to whole pixels.

    Rules (docs/MODEL.md, "Size-aware tube sets"):

    * time is untouched: the clip length does not follow the frame size;
    * a stride is rounded to the nearest multiple of the tube's space-to-depth factor along that
      axis (at least that factor), so the packed neighbours still sit at ``stride / f``;
    * offsets and kernels round half up, kernels to at least 1 pixel;
    * the 2D (1-frame) tube is returned unchanged: it is the image patchifier (16x16 at stride 16,
      the image ViT's patch embedding) and images go through it alone, so it must stay exact.
    """
    if factor <= 0 or not math.isfinite(factor):
        raise ValueError(f"tube scale must be a positive number, got {factor}")
    if spec.is_2d or factor == 1:
        return spec
    kernel, stride, offset = list(spec.kernel), list(spec.stride), list(spec.offset)
    for a in (1, 2):  # h, w
        f = spec.s2d[a]
        stride[a] = max(f, f * _round_half_up(spec.stride[a] * factor / f))
        offset[a] = _round_half_up(spec.offset[a] * factor)
        if kernels:
            kernel[a] = max(1, _round_half_up(spec.kernel[a] * factor))
    return TubeSpec(tuple(kernel), tuple(stride), tuple(offset), spec.s2d, spec.name)


def reduce_strides(spec: TubeSpec, factor: float) -> TubeSpec:
    """``spec`` with its spatial strides multiplied by ``factor`` (< 1: denser, more tokens) and
    nothing else changed, so the same weights apply: evaluation with more tokens than in training
    (Table 7d). Strides round half up to a multiple of the space-to-depth factor (at least it)."""
    if factor <= 0 or not math.isfinite(factor):
        raise ValueError(f"stride scale must be a positive number, got {factor}")
    if factor == 1:
        return spec
    stride = list(spec.stride)
    for a in (1, 2):
        f = spec.s2d[a]
        stride[a] = max(f, f * _round_half_up(spec.stride[a] * factor / f))
    return TubeSpec(spec.kernel, tuple(stride), spec.offset, spec.s2d, spec.name)


def resolve_tube_scale(tube_scale, tubes, size: int | None) -> float:
    """The factor ``model.tube_scale`` means: a number as given; ``auto`` scales a named set from
    :data:`REFERENCE_SIZE` to the frame ``size`` (an explicit list is taken as given, factor 1,
    and so is ``auto`` when no frame size is known, e.g. a model built outside a training run)."""
    if isinstance(tube_scale, str):
        if tube_scale != "auto":
            raise ValueError(f"model.tube_scale must be 'auto' or a positive number, got {tube_scale!r}")
        if not isinstance(tubes, str) or not size:
            return 1.0
        return float(size) / REFERENCE_SIZE
    factor = float(tube_scale)
    if factor <= 0 or not math.isfinite(factor):
        raise ValueError(f"model.tube_scale must be 'auto' or a positive number, got {tube_scale!r}")
    return factor


def resolve_model_tubes(model_cfg, size: int):
    """``model_cfg`` (a ModelConfig) with ``tube_scale`` resolved against the frame ``size``: the
    same config when the factor is 1, else one with the explicit scaled tube list and
    ``tube_scale=1``, which rebuilds the same tubes whatever size it is later used at."""
    tubes = scaled_tube_set(model_cfg.tubes, model_cfg.tube_scale, size, kernels=model_cfg.tube_scale_kernels)
    if tubes is model_cfg.tubes:
        return model_cfg
    return model_cfg.replace(tubes=tubes, tube_scale=1.0, tube_scale_kernels=False)


def scaled_tube_set(tubes, tube_scale="auto", size: int | None = None, *, kernels: bool = False):
    """``tubes`` (a name or a list) at ``tube_scale``: the name itself when the factor is 1 (so
    nothing changes at 224 px), else the explicit list of tube dicts a checkpoint rebuilds from."""
    factor = resolve_tube_scale(tube_scale, tubes, size)
    if factor == 1:
        return tubes
    return [scale_tube(s, factor, kernels=kernels).to_dict() for s in get_tube_set(tubes)]


def image_tube_index(specs: Sequence[TubeSpec]) -> int | None:
    """Index of the tube images go through: the first one frame deep (None if there is none)."""
    return next((i for i, s in enumerate(specs) if s.is_2d), None)


@dataclass(frozen=True)
class TubeLayout:
    """Where each tube's tokens sit in the concatenated token sequence for one input shape."""

    input_thw: Triple
    specs: tuple[TubeSpec, ...]
    grids: tuple[Triple, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "grids", tuple(tube_grid(s, self.input_thw) for s in self.specs))

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(a * b * c for a, b, c in self.grids)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def centres(self) -> list[tuple[float, float, float]]:
        out: list[tuple[float, float, float]] = []
        for s in self.specs:
            out.extend(tube_centres(s, self.input_thw))
        return out

    def grid_positions(self) -> list[tuple[float, float, float]]:
        """Each token's ``(i, j, k)`` index in its own tube's grid, in token order: the position
        "without stride and offset" of Table 7a (tokens of different tubes at the same grid
        index get the same position)."""
        out: list[tuple[float, float, float]] = []
        for nt, nh, nw in self.grids:
            out.extend((float(i), float(j), float(k)) for i in range(nt) for j in range(nh) for k in range(nw))
        return out
