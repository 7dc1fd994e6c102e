"""Sparse tube tokenizers: the three constructions of paper §3.4.

* ``multi``: a separate kernel and bias per tube (Multi-Tube).
* ``s2d``: Multi-Tube where tubes with a space-to-depth factor S convolve to ``d/S`` channels at
  ``stride/f`` and pack S neighbouring outputs into the channel axis (the paper's main model:
  x2 temporal on tube 1, x4 spatial on tube 2). Same tokens, same width, fewer kernel weights.
* ``interpolated``: one learned 8x8x8 kernel resized trilinearly to every tube's kernel shape
  once per forward, with a bias per tube. Space-to-depth factors are ignored in this mode.

Input videos are ``[B, C, T, H, W]`` and go through every tube; images ``[B, C, H, W]`` go through
the 2D (1-frame) tube alone, as a one-frame clip. Output tokens are ``[B, N, d]``, tubes
concatenated in order, each tube's grid flattened t-major.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tubevit.model.tubes import TubeLayout, TubeSpec, check_fits, image_tube_index, reduce_strides, tube_grid

TOKENIZERS = ("multi", "s2d", "interpolated")
INTERP_BASE_KERNEL = (8, 8, 8)


def resolve_specs(specs, mode: str) -> tuple[TubeSpec, ...]:
    """The tube specs a tokenizer mode actually uses (space-to-depth only in ``s2d``)."""
    if mode not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {mode!r}; choose one of {TOKENIZERS}")
    return tuple(specs) if mode == "s2d" else tuple(s.without_s2d() for s in specs)


def resize_kernel(kernel: torch.Tensor, size) -> torch.Tensor:
    """Trilinear resize of a ``[out, in, kt, kh, kw]`` kernel to ``size = (t, h, w)``.

    Resizing to its own shape returns the kernel unchanged (align_corners=False with equal sizes
    is the identity). Magnitudes are not rescaled: the paper resizes plainly (§3.4).
    """
    size = tuple(int(s) for s in size)
    if tuple(kernel.shape[2:]) == size:
        return kernel
    o, i = kernel.shape[:2]
    flat = kernel.reshape(o * i, 1, *kernel.shape[2:])
    out = F.interpolate(flat, size=size, mode="trilinear", align_corners=False)
    return out.reshape(o, i, *size)


def _lecun_normal_(w: torch.Tensor) -> None:
    fan_in = w[0].numel()
    nn.init.trunc_normal_(w, std=1.0 / math.sqrt(fan_in), a=-2.0 / math.sqrt(fan_in), b=2.0 / math.sqrt(fan_in))


class Tube(nn.Module):
    """One tube's convolution, offset handling and (optional) space-to-depth packing."""

    def __init__(self, spec: TubeSpec, in_chans: int, dim: int, own_weight: bool):
        super().__init__()
        self.spec = spec
        self.factor = spec.s2d_factor
        if dim % self.factor:
            raise ValueError(f"width {dim} is not divisible by the space-to-depth factor {self.factor} of tube {spec.label}")
        self.out_chans = dim // self.factor
        if own_weight:
            self.weight = nn.Parameter(torch.empty(self.out_chans, in_chans, *spec.kernel))
            _lecun_normal_(self.weight.data)
        else:
            self.register_parameter("weight", None)
        self.bias = nn.Parameter(torch.zeros(self.out_chans))

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None, spec: TubeSpec | None = None) -> torch.Tensor:
        """``x [B, C, T, H, W]`` -> tokens ``[B, nt*nh*nw, d]``; ``spec`` may change the strides
        (not the kernel) of the tube's own spec (evaluation at reduced strides)."""
        spec = self.spec if spec is None else spec
        weight = self.weight if weight is None else weight
        grid = tube_grid(spec, x.shape[2:])
        cs = spec.conv_stride
        # Each token packs f conv outputs per axis at stride/f (f = 1 without space-to-depth), so
        # the convolution needs exactly n*f positions: crop the input to that span (no output is
        # computed and thrown away) and zero-pad the far end when the last group's neighbours
        # would run past the clip, so the grid equals the plain tube's.
        starts, spans, pads = spec.offset, [], []
        for n, f, k, s, o, d in zip(grid, spec.s2d, spec.kernel, cs, spec.offset, x.shape[2:]):
            need = (n * f - 1) * s + k
            spans.append(min(need, d - o))
            pads.append(need - spans[-1])
        x = x[:, :, starts[0]: starts[0] + spans[0], starts[1]: starts[1] + spans[1], starts[2]: starts[2] + spans[2]]
        if any(pads):
            x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        y = F.conv3d(x, weight, self.bias, stride=cs)  # [B, d/S, nt*ft, nh*fh, nw*fw]
        if self.factor == 1:
            return y.flatten(2).transpose(1, 2)
        (nt, nh, nw), (ft, fh, fw) = grid, spec.s2d
        b, c = y.shape[:2]
        # [B, c, nt*ft, nh*fh, nw*fw] -> [B, nt, nh, nw, ft, fh, fw, c] -> [B, N, S*c]: the S
        # neighbouring outputs are concatenated on the channel axis, neighbour-major.
        y = y.reshape(b, c, nt, ft, nh, fh, nw, fw).permute(0, 2, 4, 6, 3, 5, 7, 1)
        return y.reshape(b, nt * nh * nw, ft * fh * fw * c)


class TubeTokenizer(nn.Module):
    """Turns a clip or an image into the concatenated tokens of all its tubes (no position yet)."""

    def __init__(self, specs, dim: int, in_chans: int = 3, mode: str = "s2d", eval_stride_scale: float = 1.0):
        super().__init__()
        self.mode = mode
        self.train_specs = resolve_specs(specs, mode)
        # Table 7d: in eval mode the tubes may run at reduced spatial strides (more tokens, the
        # same kernels and weights); training always uses the configured ones.
        self.eval_specs = tuple(reduce_strides(s, eval_stride_scale) for s in self.train_specs)
        self.dim, self.in_chans = dim, in_chans
        shared = mode == "interpolated"
        if shared:
            self.kernel = nn.Parameter(torch.empty(dim, in_chans, *INTERP_BASE_KERNEL))
            _lecun_normal_(self.kernel.data)
        self.tubes = nn.ModuleList(Tube(s, in_chans, dim, own_weight=not shared) for s in self.train_specs)
        self.image_tube = image_tube_index(self.train_specs)

    @property
    def specs(self) -> tuple[TubeSpec, ...]:
        """The tubes in use: the training geometry, or in eval mode the (possibly denser) eval one."""
        return self.train_specs if self.training else self.eval_specs

    def set_eval_stride_scale(self, factor: float) -> None:
        self.eval_specs = tuple(reduce_strides(s, factor) for s in self.train_specs)

    def layout(self, input_thw) -> TubeLayout:
        return TubeLayout(tuple(int(v) for v in input_thw), self.specs)

    def _weights(self, which) -> list[torch.Tensor | None]:
        if self.mode != "interpolated":
            return [None] * len(which)
        # Resized once per forward, each tube's kernel from the one shared 8x8x8 kernel.
        return [resize_kernel(self.kernel, self.specs[i].kernel) for i in which]

    def check_input(self, x: torch.Tensor) -> tuple[bool, tuple[int, int, int]]:
        """Validate rank and channels; returns (is_image, input (T, H, W))."""
        if x.ndim not in (4, 5):
            raise ValueError(f"expected an image batch [B, C, H, W] or a video batch [B, C, T, H, W], "
                             f"got a tensor of shape {tuple(x.shape)}; add the batch axis with x[None]"
                             if x.ndim == 3 else
                             f"expected an image batch [B, C, H, W] or a video batch [B, C, T, H, W], "
                             f"got a tensor of shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"expected {self.in_chans} channels on axis 1 (layout [B, C, T, H, W]), got shape "
                             f"{tuple(x.shape)}; a [B, T, C, H, W] clip needs x.transpose(1, 2)")
        is_image = x.ndim == 4
        thw = (1, x.shape[2], x.shape[3]) if is_image else tuple(x.shape[2:])
        if is_image:
            if self.image_tube is None:
                raise ValueError("this tube set has no 1-frame (2D) tube, so it cannot take images; "
                                 "add a tube with kernel (1, kh, kw) or pass a video [B, C, T, H, W]")
            check_fits([self.specs[self.image_tube]], thw)
        else:
            check_fits(self.specs, thw)
        return is_image, thw  # type: ignore[return-value]

    def tubes_for(self, is_image: bool) -> list[int]:
        return [self.image_tube] if is_image else list(range(len(self.specs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        is_image, _ = self.check_input(x)
        return self.tokenize(x, is_image)

    def tokenize(self, x: torch.Tensor, is_image: bool) -> torch.Tensor:
        """Tokens of an input already validated by :meth:`check_input`."""
        if is_image:
            x = x.unsqueeze(2)  # an image is a one-frame clip [B, C, 1, H, W]
        which = self.tubes_for(is_image)
        weights = self._weights(which)
        specs = self.specs
        return torch.cat([self.tubes[i](x, w, specs[i]) for i, w in zip(which, weights)], dim=1)
