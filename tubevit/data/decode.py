"""Video decoding: I/O only, no sampling policy and no transforms.

Training video models is usually limited by decoding, not by the model (paper §5 trains on 64
frames at 15 fps from Kinetics clips of about 10 s at 25-30 fps, i.e. a clip touches well under
half of the file). So decoding is *sparse*: seek to the key frame at or before the first wanted
frame, decode forward, stop after the last wanted frame, and convert to RGB only the frames that
are returned.

Frame indices are defined on the video's nominal (average) frame rate: index ``i`` is the frame
shown at time ``i / fps`` from the start of the stream, i.e. the last frame whose presentation time
is at or before ``(i + 0.5) / fps`` (half a frame of slack absorbs time-base rounding). For a
constant-frame-rate file this is exactly the ``i``-th decoded frame; for a variable-frame-rate file
it resamples to the average rate, which is what a seek-based decoder can compute without decoding
the whole file (and what the temporal sampling in :mod:`tubevit.data.sampling` assumes).

Backends: ``pyav`` (default, always installed), ``torchcodec`` and ``decord`` (optional; named
explicitly, a missing one raises :class:`BackendNotInstalled` saying what to install). ``auto``
uses the frame-folder reader for directories and PyAV for files, so results never depend on what
happens to be installed. Every backend returns ``uint8 np.ndarray [T, H, W, 3]`` (RGB).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import av
import numpy as np

__all__ = [
    "BACKENDS",
    "BackendNotInstalled",
    "FRAME_EXTENSIONS",
    "VideoDecodeError",
    "VideoInfo",
    "decode_all_frames",
    "decode_frames",
    "probe",
    "read_image",
]

BACKENDS = ("auto", "pyav", "torchcodec", "decord")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Frame folders carry no timing; SSv2 and Charades frame dumps are usually re-extracted at a
# rate the user knows, so it is a parameter with this default.
DEFAULT_FOLDER_FPS = 30.0
# A header frame count may exceed the decodable frames by a few (edit lists, a dropped final
# frame). Up to this many missing frames (or 2% of the video) are filled with the last decoded
# frame; more than that means the file is truncated or corrupt and decoding fails.
_END_SLACK_FRAMES = 2
_END_SLACK_FRACTION = 0.02

# Exceptions that FFmpeg/PyAV raise for bad input (corrupt data, no video stream, ...).
_AV_ERRORS = (av.FFmpegError, OSError, ValueError, IndexError, EOFError, RuntimeError)


class VideoDecodeError(RuntimeError):
    """A video (file or frame folder) that cannot be read; ``path`` names it."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")


class BackendNotInstalled(ImportError):
    """A decoder backend was named but its package is not installed."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reads from a container header (or a frame folder listing)."""

    num_frames: int
    fps: float
    height: int
    width: int
    duration: float  # seconds


# ---------------------------------------------------------------------------------------------
# Public entry points


def probe(path, *, folder_fps: float = DEFAULT_FOLDER_FPS) -> VideoInfo:
    """Read frame count, frame rate and size without decoding the video."""
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if path.is_dir():
        files = _frame_files(path)
        h, w = _read_image(files[0]).shape[:2]
        return VideoInfo(len(files), float(folder_fps), h, w, len(files) / float(folder_fps))
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return _probe_stream(path, container)
    except VideoDecodeError:
        raise
    except _AV_ERRORS as err:
        raise VideoDecodeError(path, f"{type(err).__name__}: {err}") from err


def decode_frames(
    path,
    indices: Sequence[int],
    *,
    backend: str = "auto",
    short_side: int | None = None,
    threads: int = 0,
    folder_fps: float = DEFAULT_FOLDER_FPS,
) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) as ``uint8 [T, H, W, 3]``.

    ``short_side``: if given and the source's shorter side is larger, frames are scaled during
    decoding (FFmpeg's swscale, which also does the RGB conversion) so that the shorter side is
    ``short_side``; smaller sources are never upscaled here. ``threads``: FFmpeg decoding threads
    (0 lets FFmpeg choose).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder backend {backend!r}; choose one of {BACKENDS}")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and indices.min() < 0:
        raise ValueError(f"negative frame index in {indices.tolist()}")
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if path.is_dir():
        if backend not in ("auto", "pyav"):
            raise ValueError(f"frame folders are read with backend 'auto', not {backend!r}")
        return _decode_folder(path, indices, short_side)
    if backend in ("auto", "pyav"):
        return _decode_pyav(path, indices, short_side, threads)
    if backend == "torchcodec":
        return _decode_torchcodec(path, indices, short_side, threads)
    return _decode_decord(path, indices, short_side, threads)


def decode_all_frames(path, *, short_side: int | None = None, threads: int = 0) -> np.ndarray:
    """Decode every frame of a file, in order (the baseline the sparse decoder is measured against
    in ``benchmarks/bench_data.py``, and a reference in tests)."""
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            size = None
            out = []
            for frame in container.decode(stream):
                if size is None:
                    size = _target_size(frame.height, frame.width, short_side)
                out.append(_to_rgb(frame, size))
    except _AV_ERRORS as err:
        raise VideoDecodeError(path, f"{type(err).__name__}: {err}") from err
    if not out:
        raise VideoDecodeError(path, "no decodable frames")
    return np.stack(out)


def read_image(path, *, short_side: int | None = None) -> np.ndarray:
    """Read one image (PNG/JPEG/BMP/WebP, decoded by FFmpeg) as ``uint8 [H, W, 3]``; raises
    :class:`VideoDecodeError` naming the file if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "file not found" if not path.exists() else "not a file")
    return _read_image(path, short_side)


# ---------------------------------------------------------------------------------------------
# PyAV


def _probe_stream(path, container) -> VideoInfo:
    if not container.streams.video:
        raise VideoDecodeError(path, "no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    num_frames = int(stream.frames or 0)
    if num_frames <= 0 and fps > 0:
        # Containers such as WebM (SSv2) and some MKVs store no frame count.
        num_frames = int(round(duration * fps))
    if fps <= 0 and duration > 0 and num_frames > 0:
        fps = num_frames / duration
    height, width = stream.codec_context.height, stream.codec_context.width
    if num_frames <= 0 or fps <= 0 or height <= 0 or width <= 0:
        raise VideoDecodeError(path, "container reports no frames, frame rate or size")
    return VideoInfo(num_frames, fps, height, width, duration or num_frames / fps)


def _decode_pyav(path: Path, indices: np.ndarray, short_side, threads) -> np.ndarray:
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            info = _probe_stream(path, container)
            stream = container.streams.video[0]
            # Frame and slice threads; FFmpeg picks the count when thread_count is 0.
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            size = _target_size(info.height, info.width, short_side)
            if indices.size == 0:
                return np.zeros((0, size[0], size[1], 3), np.uint8)
            wanted = np.unique(indices)  # sorted
            got = _sparse_decode(container, stream, info, wanted, size, path)
    except VideoDecodeError:
        raise
    except _AV_ERRORS as err:
        raise VideoDecodeError(path, f"{type(err).__name__}: {err}") from err
    lookup = {int(i): a for i, a in zip(wanted, got)}
    return np.stack([lookup[int(i)] for i in indices])


def _sparse_decode(container, stream, info: VideoInfo, wanted, size, path) -> list[np.ndarray]:
    tb = stream.time_base
    start_pts = stream.start_time or 0
    fps = info.fps
    first = int(wanted[0])
    if first > 0:
        # Seek (in stream time base) to the key frame at or before the first wanted frame; the
        # demuxer lands on a key frame, so decoding forward from there is exact.
        target = start_pts + int(math.floor(first / fps / tb))
        container.seek(target, stream=stream, backward=True, any_frame=False)

    out: list[np.ndarray] = []
    j = 0  # next wanted position
    prev = prev_rgb = None
    decoded = 0
    last_index = -1
    for frame in container.decode(stream):
        decoded += 1
        if frame.pts is None:
            # No timestamps (rare raw streams): fall back to counting from the seek point,
            # which is only exact when no seek happened.
            t = (last_index + 1) / fps
        else:
            t = float((frame.pts - start_pts) * tb)
        last_index = int(math.floor(t * fps + 0.5))
        # Every wanted index whose display time lies before this frame is shown by `prev`.
        while j < len(wanted) and t > (wanted[j] + 0.5) / fps:
            src = prev if prev is not None else frame  # seek landed late: nearest frame
            if prev_rgb is None or src is not prev:
                prev_rgb = _to_rgb(src, size)
            out.append(prev_rgb)
            j += 1
        if j == len(wanted):
            break  # stop after the last wanted frame: the point of sparse decoding
        prev, prev_rgb = frame, None
    if prev is None and not out:
        raise VideoDecodeError(path, "no decodable frames")
    if j < len(wanted):
        missing = int(wanted[-1]) - max(last_index, 0)
        slack = max(_END_SLACK_FRAMES, int(_END_SLACK_FRACTION * info.num_frames))
        if missing > slack:
            raise VideoDecodeError(
                path,
                f"stream ends at frame {last_index} but frame {int(wanted[-1])} was requested "
                f"(header says {info.num_frames} frames): truncated or corrupt",
            )
        last_rgb = _to_rgb(prev, size)  # header over-counted by a frame or two: repeat the last
        out.extend(last_rgb for _ in range(len(wanted) - j))
    return out


def _target_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None or min(height, width) <= short_side:
        return height, width
    scale = short_side / min(height, width)
    # Keep the shorter side exact and round the other.
    if height <= width:
        return short_side, max(1, int(round(width * scale)))
    return max(1, int(round(height * scale))), short_side


def _to_rgb(frame, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if (frame.height, frame.width) == (h, w):
        return frame.to_ndarray(format="rgb24")
    # swscale converts and scales in one pass (area filter: good for downscaling).
    return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")


# ---------------------------------------------------------------------------------------------
# Frame folders


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS)
    if not files:
        raise VideoDecodeError(folder, f"frame folder has no {'/'.join(FRAME_EXTENSIONS)} files")
    return files


def _read_image(path: Path, short_side: int | None = None) -> np.ndarray:
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            for frame in container.decode(video=0):
                return _to_rgb(frame, _target_size(frame.height, frame.width, short_side))
    except _AV_ERRORS as err:
        raise VideoDecodeError(path, f"{type(err).__name__}: {err}") from err
    raise VideoDecodeError(path, "image has no decodable frame")


def _decode_folder(folder: Path, indices: np.ndarray, short_side) -> np.ndarray:
    files = _frame_files(folder)
    cache: dict[int, np.ndarray] = {}
    out = []
    for i in indices.tolist():
        # Past the end is the same short-video rule as in files: the last frame.
        i = min(i, len(files) - 1)
        if i not in cache:
            cache[i] = _read_image(files[i], short_side)
        out.append(cache[i])
    if not out:
        h, w = _read_image(files[0], short_side).shape[:2]
        return np.zeros((0, h, w, 3), np.uint8)
    return np.stack(out)


# ---------------------------------------------------------------------------------------------
# Optional backends


def _require(module: str, package: str, backend: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendNotInstalled(
            f"decoder backend {backend!r} needs the {package!r} package: "
            f"pip install {package}  (or pip install 'tubevit[{backend}]'); "
            f"or use --decoder pyav"
        ) from err


def _resize_nhwc(frames: np.ndarray, short_side) -> np.ndarray:
    h, w = frames.shape[1:3]
    th, tw = _target_size(h, w, short_side)
    if (th, tw) == (h, w):
        return frames
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _decode_torchcodec(path: Path, indices: np.ndarray, short_side, threads) -> np.ndarray:
    decoders = _require("torchcodec.decoders", "torchcodec", "torchcodec")
    try:
        decoder = decoders.VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=threads)
        n = decoder.metadata.num_frames or len(decoder)
        clamped = np.minimum(indices, n - 1).tolist()
        frames = decoder.get_frames_at(indices=clamped).data.numpy()
    except BackendNotInstalled:
        raise
    except Exception as err:  # torchcodec raises plain RuntimeError/ValueError for bad files
        raise VideoDecodeError(path, f"torchcodec: {err}") from err
    return _resize_nhwc(np.ascontiguousarray(frames), short_side)


def _decode_decord(path: Path, indices: np.ndarray, short_side, threads) -> np.ndarray:
    decord = _require("decord", "decord", "decord")
    try:
        reader = decord.VideoReader(str(path), num_threads=threads)
        clamped = np.minimum(indices, len(reader) - 1).tolist()
        frames = reader.get_batch(clamped).asnumpy()
    except Exception as err:  # decord raises its own DECORDError for bad files
        raise VideoDecodeError(path, f"decord: {err}") from err
    return _resize_nhwc(np.ascontiguousarray(frames), short_side)
