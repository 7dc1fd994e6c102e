"""Kernel resizing and temporal inflation: how a 2D patch kernel becomes a 3D tube (paper §3.4, §4).

Three pure tensor functions, all on ``[out, in, ...]`` kernels:

* :func:`pi_resize` resizes a 2D kernel ``[out, in, h, w]`` spatially by the pseudo-inverse method of
  FlexiViT (Beyer et al. 2023; big_vision ``resample_patchemb``). Let ``R`` be the linear map that
  resizes a patch ``x`` of the old size to the new size (bilinear, see :func:`resize_matrix`). We
  want the new kernel ``w'`` whose response to the resized patch equals the old kernel's response
  to the original, ``<R x, w'> = <x, w>`` for every ``x``, i.e. ``R^T w' = w``. The solution used is
  ``w' = pinv(R^T) w``: exact when upsampling (``R`` has full column rank), the least-squares best
  (smallest ``E_x (<Rx, w'> - <x, w>)^2`` for white ``x``) when downsampling. Plain bilinear
  interpolation of the kernel keeps neither property.
* :func:`inflate` adds the time axis to a 2D kernel by a named strategy (scenic ViViT's
  ``central_frame`` / ``average_frame`` initialisers): ``central`` puts the kernel in frame
  ``kt // 2`` and zeros elsewhere; ``average`` puts ``kernel / kt`` in every frame. Both give the
  2D response on a clip whose frames are all equal.
* :func:`group_average` maps a ``d``-channel kernel to the ``d / S`` channels of a space-to-depth
  tube (see the function for the choice and why).

Everything is computed in float64 and returned in the input dtype.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from tubevit.defaults import INFLATE_STRATEGIES



@functools.lru_cache(maxsize=64)
def resize_matrix(old_hw: tuple[int, int], new_hw: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """The matrix ``R [new_h*new_w, old_h*old_w]`` of the patch resize ``x -> R x`` (float64).

    The resize is bilinear with half-pixel centres (``align_corners=False``); ``antialias`` only
    matters when shrinking, where it makes the resized patch a low-pass (area-like) version of the
    original, as timm's ``resample_patch_embed`` does. Built by resizing each basis patch.
    """
    oh, ow = old_hw
    basis = torch.eye(oh * ow, dtype=torch.float64).reshape(oh * ow, 1, oh, ow)
    out = F.interpolate(basis, size=tuple(new_hw), mode="bilinear", align_corners=False, antialias=antialias)
    return out.reshape(oh * ow, -1).T.contiguous()  # column i = the resize of basis patch i


def resize_patch(x: torch.Tensor, new_hw, antialias: bool = True) -> torch.Tensor:
    """Resize patches ``[..., h, w]`` with the same map :func:`pi_resize` inverts (for tests and docs)."""
    new_hw = tuple(int(v) for v in new_hw)
    mat = resize_matrix(tuple(x.shape[-2:]), new_hw, antialias).to(x.dtype)
    return (x.flatten(-2) @ mat.T).reshape(*x.shape[:-2], *new_hw)


def pi_resize(kernel: torch.Tensor, new_hw, antialias: bool = True) -> torch.Tensor:
    """FlexiViT pseudo-inverse resize of ``kernel [out, in, h, w]`` to ``[out, in, *new_hw]``.

    Keeps ``<resize_patch(x), pi_resize(w)> == <x, w>`` exactly when growing the kernel and as
    closely as possible (least squares) when shrinking it. The identity when sizes are equal.
    """
    new_hw = tuple(int(v) for v in new_hw)
    old_hw = tuple(kernel.shape[-2:])
    if old_hw == new_hw:
        return kernel.clone()
    mat = resize_matrix(old_hw, new_hw, antialias)  # [new, old]
    pinv = torch.linalg.pinv(mat.T)  # [new, old]: solves R^T w' = w in the least-squares sense
    o, i = kernel.shape[:2]
    flat = kernel.to(torch.float64).reshape(o * i, -1)  # [o*i, old]
    return (flat @ pinv.T).reshape(o, i, *new_hw).to(kernel.dtype)


def inflate(kernel2d: torch.Tensor, kt: int, strategy: str = "central") -> torch.Tensor:
    """``[out, in, h, w]`` -> ``[out, in, kt, h, w]`` by ``central`` or ``average`` (see module doc)."""
    if strategy not in INFLATE_STRATEGIES:
        raise ValueError(f"unknown inflation strategy {strategy!r}; choose one of {INFLATE_STRATEGIES}")
    if kt < 1:
        raise ValueError(f"temporal kernel size must be >= 1, got {kt}")
    if strategy == "average":
        return (kernel2d / kt).unsqueeze(2).expand(-1, -1, kt, -1, -1).clone()
    out = kernel2d.new_zeros(*kernel2d.shape[:2], kt, *kernel2d.shape[2:])
    out[:, :, kt // 2] = kernel2d
    return out


def group_average(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Map a ``d``-channel kernel or bias (output channels first) to ``d / groups`` channels.

    A space-to-depth tube with factor S convolves to ``d/S`` channels and packs S neighbours,
    neighbour-major: token channel ``n * d/S + c`` is kernel channel ``c`` applied to neighbour
    ``n``. The image ViT wants channel ``n * d/S + c`` to be its channel ``n * d/S + c``. Where the
    neighbours see the same content (the usual case: nearby frames or pixels), the single shared
    kernel that comes closest to all S of them in the least-squares sense is their mean, so
    kernel channel ``c`` is the mean of image channels ``c, c + d/S, ..., c + (S-1) d/S``.
    """
    if groups == 1:
        return x.clone()
    d = x.shape[0]
    if d % groups:
        raise ValueError(f"{d} channels cannot be split into {groups} space-to-depth groups")
    return x.reshape(groups, d // groups, *x.shape[1:]).mean(0)


def tube_from_patch(kernel2d: torch.Tensor, tube_kernel, strategy: str = "central", antialias: bool = True) -> torch.Tensor:
    """A tube kernel ``[out, in, kt, kh, kw]`` from a 2D patch kernel: PI-resize to ``(kh, kw)``,
    then inflate over ``kt`` frames. A ``(1, h, w)`` tube of the patch's own size is the patch
    kernel exactly (both strategies reduce to the identity there)."""
    kt, kh, kw = (int(v) for v in tube_kernel)
    return inflate(pi_resize(kernel2d, (kh, kw), antialias), kt, strategy)


@functools.lru_cache(maxsize=16)
def _upsample_matrix(old_hw: tuple[int, int], new_hw: tuple[int, int]) -> torch.Tensor:
    """The spatial part of the tokenizer's trilinear kernel resize (``align_corners=False``)."""
    from tubevit.model.tokenizer import resize_kernel

    oh, ow = old_hw
    basis = torch.eye(oh * ow, dtype=torch.float64).reshape(oh * ow, 1, 1, oh, ow)
    out = resize_kernel(basis, (1, *new_hw))  # [old, 1, 1, nh, nw]
    return out.reshape(oh * ow, -1).T.contiguous()  # [new, old]


def interpolated_base(kernel2d: torch.Tensor, base_kernel, strategy: str = "central") -> torch.Tensor:
    """The shared base kernel of the ``interpolated`` tokenizer from a 2D patch kernel.

    That tokenizer has no 1x16x16 weights of its own: every tube, the image tube included, is the
    base kernel (8x8x8) resized trilinearly and without rescaling. So the image tube cannot be the
    patch kernel exactly; we choose the base kernel whose resize to the image tube's shape is the
    least-squares closest to it. Spatially that is ``pinv(U) w`` with ``U`` the tokenizer's own
    upsampling map; in time, the 1-frame resize of an 8-frame kernel reads the mean of its two
    central frames, so ``central`` puts the spatial kernel in frames ``kt//2 - 1`` and ``kt//2``
    (zeros elsewhere) and ``average`` puts it in every frame; either way the image tube is the
    least-squares best. Deep tubes then respond to a static clip with a multiple of the 2D
    response (the tokenizer does not rescale magnitudes); the image path is the one kept right.
    """
    if strategy not in INFLATE_STRATEGIES:
        raise ValueError(f"unknown inflation strategy {strategy!r}; choose one of {INFLATE_STRATEGIES}")
    bt, bh, bw = (int(v) for v in base_kernel)
    o, i, ph, pw = kernel2d.shape
    up = _upsample_matrix((bh, bw), (ph, pw))  # [patch, base]
    spatial = (kernel2d.to(torch.float64).reshape(o * i, -1) @ torch.linalg.pinv(up).T).reshape(o, i, bh, bw)
    out = spatial.new_zeros(o, i, bt, bh, bw)
    if strategy == "average" or bt == 1:
        out[:] = spatial.unsqueeze(2)
    else:
        # align_corners=False maps the single output frame to input coordinate (bt - 1) / 2.
        lo, hi = (bt - 1) // 2, bt // 2
        out[:, :, lo] = spatial
        out[:, :, hi] = spatial
    return out.to(kernel2d.dtype)
