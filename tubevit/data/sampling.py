"""Clip sampling: pure index math, no I/O (unit-tested without any video).

Paper §5 / Table 10: training takes one random temporal crop per video (64 frames at 15 fps for
Kinetics, 32 frames at 24 fps for SSv2, 128 at 6 fps for Charades); evaluation averages
4 temporal x 3 spatial views. A clip of ``frames`` frames at ``stride`` covers
``span = floor((frames - 1) * stride) + 1`` source frames; a target frame rate turns into the
stride ``source_fps / target_fps`` (possibly fractional; indices are floored).

Videos shorter than a clip never fail (``tubevit.defaults.SHORT_POLICIES``, ``data.short``).
``short="loop"`` (default) wraps the indices around (``i mod num_frames``), as mmaction2 does, so
the clip keeps moving forward in time with one jump back to the start; ``short="pad"`` repeats the
last frame instead (the clip freezes at the end); ``short="fit"`` lowers the stride of that video
to ``(num_frames - 1) / (frames - 1)`` (:func:`fit_stride`), so the clip runs once through the
whole video, first frame to last, with neither a jump nor a frozen tail (as PyTorchVideo's uniform
subsampling of a truncated clip; below ``frames`` source frames, frames repeat). A frozen tail
carries no motion; a loop's jump is an event the video does not contain (on time-reversed classes,
a step backwards in the middle of the clip); a fitted clip moves more slowly than at the run's stride.
"""

from __future__ import annotations

import math

import numpy as np

from tubevit.defaults import SHORT_POLICIES

__all__ = [
    "SHORT_POLICIES",
    "check_short",
    "clip_indices",
    "clip_span",
    "eval_clip_indices",
    "fit_stride",
    "resolve_stride",
    "train_clip_indices",
]


def resolve_stride(stride: float | None, fps: float | None, source_fps: float | None) -> float:
    """The frame stride: ``source_fps / fps`` when a target frame rate is given, else ``stride``.

    A target rate above the source rate gives a stride below 1 (frames repeat), never an error.
    """
    if fps is not None:
        if not source_fps or source_fps <= 0:
            raise ValueError("a target fps needs the source frame rate")
        if fps <= 0:
            raise ValueError(f"target fps must be positive, got {fps}")
        return float(source_fps) / float(fps)
    if stride is None or stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    return float(stride)


def clip_span(frames: int, stride: float) -> int:
    """Number of source frames a clip covers, first to last inclusive."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return int(math.floor((frames - 1) * stride + 1e-9)) + 1


def fit_stride(num_frames: int, frames: int, stride: float) -> float:
    """The stride of ``short="fit"``: ``stride`` where the clip fits the video, else the one whose
    span is exactly the video, ``(num_frames - 1) / (frames - 1)`` (below 1 when the video has
    fewer than ``frames`` frames: some repeat)."""
    if num_frames < 1:
        raise ValueError(f"video has no frames (num_frames={num_frames})")
    if frames < 2 or clip_span(frames, stride) <= num_frames:
        return float(stride)
    return (num_frames - 1) / (frames - 1)


def check_short(short: str) -> None:
    """A ValueError naming the choices unless ``short`` is one of ``SHORT_POLICIES``."""
    if short not in SHORT_POLICIES:
        raise ValueError(f"short must be one of {SHORT_POLICIES}, got {short!r}")


def clip_indices(
    start: int, frames: int, stride: float, num_frames: int, *, short: str = "loop"
) -> np.ndarray:
    """``frames`` indices from ``start`` at ``stride``, folded into ``[0, num_frames)`` (``fit``:
    at :func:`fit_stride`, which a clip starting at 0 never leaves)."""
    check_short(short)
    if num_frames < 1:
        raise ValueError(f"video has no frames (num_frames={num_frames})")
    if short == "fit":
        stride = fit_stride(num_frames, frames, stride)
    idx = start + np.floor(np.arange(frames) * stride + 1e-9).astype(np.int64)
    if short == "loop":
        return idx % num_frames
    return np.minimum(idx, num_frames - 1)


def train_clip_indices(
    num_frames: int,
    frames: int,
    stride: float,
    rng: np.random.Generator,
    *,
    short: str = "loop",
) -> np.ndarray:
    """One random clip (uniform start over every position where it fits): ``int64 [frames]``.

    If the video is shorter than the clip span, the clip starts at a random frame and loops
    (``short="loop"``), or starts at 0 and repeats the last frame (``short="pad"``), or starts
    at 0 and spans the whole video at a smaller stride (``short="fit"``).
    """
    check_short(short)
    span = clip_span(frames, stride)
    if span <= num_frames:
        start = int(rng.integers(0, num_frames - span + 1))
    elif short == "loop":
        start = int(rng.integers(0, num_frames))  # any phase of the loop is equally valid
    else:
        start = 0
    return clip_indices(start, frames, stride, num_frames, short=short)


def eval_clip_indices(
    num_frames: int, frames: int, stride: float, clips: int, *, short: str = "loop"
) -> np.ndarray:
    """``clips`` uniformly spaced clips: ``int64 [clips, frames]``.

    Starts are ``round(linspace(0, num_frames - span, clips))`` (first clip at the start, last
    at the end); a single clip is centred. Shorter videos start every clip at 0 (the views then
    differ only spatially), so evaluation is deterministic and never crashes; with ``short="fit"``
    each of them spans the whole video.
    """
    check_short(short)
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    span = clip_span(frames, stride)
    room = max(num_frames - span, 0)
    if clips == 1:
        starts = np.array([room // 2])
    else:
        starts = np.round(np.linspace(0, room, clips)).astype(np.int64)
    return np.stack([clip_indices(int(s), frames, stride, num_frames, short=short) for s in starts])
