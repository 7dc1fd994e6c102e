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
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from tubevit.defaults import DECODERS, IMAGE_EXTENSIONS, MAX_FRAME_PIXELS

__all__ = [
    "BACKENDS",
    "BackendNotInstalled",
    "check_backend",
    "FRAME_EXTENSIONS",
    "VideoDecodeError",
    "VideoInfo",
    "decode_all_frames",
    "decode_frames",
    "default_decode_threads",
    "probe",
    "read_image",
    "rotate_frames",
    "rotation_quarter_turns",
]

# Decoder names (the same tuple as --decoder); frame folders hold the image files of a dataset.
BACKENDS = DECODERS
FRAME_EXTENSIONS = IMAGE_EXTENSIONS
# Frame folders carry no timing; SSv2 and Charades frame dumps are usually re-extracted at a
# rate the user knows, so it is a parameter with this default.
DEFAULT_FOLDER_FPS = 30.0
# A header frame count may exceed the decodable frames by a few (edit lists, a dropped final
# frame). Up to this many missing frames (or 2% of the video) are filled with the last decoded
# frame; more than that means the file is truncated or corrupt and decoding fails.
_END_SLACK_FRAMES = 2
_END_SLACK_FRACTION = 0.02

log = logging.getLogger(__name__)
_warned_rotation: set[str] = set()  # per process: one warning per file with an odd rotation

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


def default_decode_threads() -> int:
    """FFmpeg threads for one decode: 1 inside a DataLoader worker (the workers are the
    parallelism, and FFmpeg's own choice is up to 16 threads per worker on a large host, which
    oversubscribes the cores), else up to 4 of the cores this process may use (a short sparse
    decode gains little from more frame threads)."""
    from torch.utils.data import get_worker_info  # torch is imported by every user of this

    if get_worker_info() is not None:
        return 1
    return max(1, min(4, _usable_cores()))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Public entry points


def probe(path, *, folder_fps: float = DEFAULT_FOLDER_FPS, max_frame_pixels: int = MAX_FRAME_PIXELS) -> VideoInfo:
    """Read frame count, frame rate and size without decoding the video. A header claiming a frame
    of more than ``max_frame_pixels`` (width x height) is a :class:`VideoDecodeError`: refused
    before anything is allocated (tubevit.defaults.MAX_FRAME_PIXELS)."""
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if path.is_dir():
        files = _frame_files(path)
        h, w = _read_image(files[0]).shape[:2]
        return VideoInfo(len(files), float(folder_fps), h, w, len(files) / float(folder_fps))
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return _probe_stream(path, container, max_frame_pixels)
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
    threads: int | None = None,
    folder_fps: float = DEFAULT_FOLDER_FPS,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) as ``uint8 [T, H, W, 3]``.

    Frames come out as displayed: a rotation by a multiple of 90 degrees in the stream's display
    matrix (phone videos) is applied (PyAV; other rotations are warned about once per file). A
    header frame above ``max_frame_pixels`` is refused before decoding (see :func:`probe`).

    ``short_side``: if given and the source's shorter side is larger, frames are scaled during
    decoding (FFmpeg's swscale, which also does the RGB conversion) so that the shorter side is
    ``short_side``; smaller sources are never upscaled here. ``threads``: FFmpeg decoding threads
    (None: :func:`default_decode_threads`; 0 lets FFmpeg choose).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder backend {backend!r}; choose one of {BACKENDS}")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and indices.min() < 0:
        raise ValueError(f"negative frame index in {indices.tolist()}")
    if threads is None:
        threads = default_decode_threads()
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if path.is_dir():
        if backend not in ("auto", "pyav"):
            raise ValueError(f"frame folders are read with backend 'auto', not {backend!r}")
        return _decode_folder(path, indices, short_side)
    if backend in ("auto", "pyav"):
        return _decode_pyav(path, indices, short_side, threads, max_frame_pixels)
    probe(path, max_frame_pixels=max_frame_pixels)  # the size check, from the header, before the other decoder
    if backend == "torchcodec":
        return _decode_torchcodec(path, indices, short_side, threads)
    return _decode_decord(path, indices, short_side, threads)


def decode_all_frames(path, *, short_side: int | None = None, threads: int = 0,
                      max_frame_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """Decode every frame of a file, in order (the baseline the sparse decoder is measured against
    in ``benchmarks/bench_data.py``, and a reference in tests)."""
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "no video stream")
            stream = container.streams.video[0]
            _check_frame_size(path, stream.codec_context.width, stream.codec_context.height, max_frame_pixels)
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            size = None
            out = []
            rgb = _RGB()
            rotation = 0
            for frame in container.decode(stream):
                if size is None:
                    size = _target_size(frame.height, frame.width, short_side)
                    rotation = _rotation(frame, path)
                out.append(rgb(frame, size))
    except VideoDecodeError:
        raise
    except _AV_ERRORS as err:
        raise VideoDecodeError(path, f"{type(err).__name__}: {err}") from err
    if not out:
        raise VideoDecodeError(path, "no decodable frames")
    return rotate_frames(np.stack(out), rotation)


def read_image(path, *, short_side: int | None = None) -> np.ndarray:
    """Read one image (PNG/JPEG/BMP/WebP, decoded by FFmpeg) as ``uint8 [H, W, 3]``; raises
    :class:`VideoDecodeError` naming the file if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "file not found" if not path.exists() else "not a file")
    return _read_image(path, short_side)


# ---------------------------------------------------------------------------------------------
# PyAV


def rotation_quarter_turns(degrees) -> int | None:
    """Counter-clockwise quarter turns (0-3) that show a frame as its display matrix asks.

    ``degrees`` is PyAV's ``VideoFrame.rotation``: FFmpeg's ``av_display_rotation_get``, the angle
    in [-180, 180] by which the display transformation turns the decoded frame counterclockwise
    (a portrait phone video stores -90: turn it 90 degrees clockwise, 3 quarter turns). ``None``
    (no display matrix) is 0; an angle that is not a multiple of 90 returns ``None`` (not applied)."""
    if degrees is None:
        return 0
    quarter = float(degrees) / 90.0
    if abs(quarter - round(quarter)) > 1e-3:
        return None
    return int(round(quarter)) % 4


def rotate_frames(frames: np.ndarray, quarter_turns: int) -> np.ndarray:
    """``uint8 [T, H, W, 3]`` turned ``quarter_turns`` x 90 degrees counterclockwise (as displayed)."""
    if not quarter_turns:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=quarter_turns, axes=(1, 2)))


def _rotation(frame, path) -> int:
    """Quarter turns for the frames of ``path`` (read from its first decoded frame)."""
    degrees = getattr(frame, "rotation", None)  # PyAV >= 14 reads the frame's DISPLAYMATRIX
    turns = rotation_quarter_turns(degrees)
    if turns is None:
        key = str(path)
        if key not in _warned_rotation:
            _warned_rotation.add(key)
            log.warning("%s: display rotation of %s degrees is not a multiple of 90; frames are used as stored",
                        key, degrees)
        return 0
    return turns


def _check_frame_size(path, width: int, height: int, max_frame_pixels: int) -> None:
    if width * height > max_frame_pixels:
        raise VideoDecodeError(
            path, f"header claims a {width}x{height} frame, more than data.max_frame_pixels={max_frame_pixels} "
                  f"pixels; refused before decoding (raise the limit with --set data.max_frame_pixels=N if the "
                  f"file is genuine)")


def _probe_stream(path, container, max_frame_pixels: int = MAX_FRAME_PIXELS) -> VideoInfo:
    if not container.streams.video:
        raise VideoDecodeError(path, "no video stream")
    stream = container.streams.video[0]
    _check_frame_size(path, stream.codec_context.width, stream.codec_context.height, max_frame_pixels)
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


def _decode_pyav(path: Path, indices: np.ndarray, short_side, threads,
                 max_frame_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            info = _probe_stream(path, container, max_frame_pixels)
            stream = container.streams.video[0]
            # Frame and slice threads; FFmpeg picks the count when thread_count is 0.
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            size = _target_size(info.height, info.width, short_side)
            if indices.size == 0:
                return np.zeros((0, size[0], size[1], 3), np.uint8)
            wanted = np.unique(indices)  # sorted
            got, turns = _sparse_decode(container, stream, info, wanted, size, path)
    except VideoDecodeError:
        raise
    except _AV_ERRORS as err:
        raise VideoDecodeError(path, f"{type(err).__name__}: {err}") from err
    got = rotate_frames(got, turns)
    if len(wanted) == len(indices) and bool((wanted == indices).all()):
        return got  # the common case (the datasets pass sorted unique indices): no gather copy
    return got[np.searchsorted(wanted, indices)]


def _sparse_decode(container, stream, info: VideoInfo, wanted, size, path) -> tuple[np.ndarray, int]:
    """``uint8 [len(wanted), H, W, 3]`` for sorted unique ``wanted``: decode from the key frame
    before the first to the last wanted frame, converting to RGB (and scaling, in the same
    swscale pass) only the frames that are returned, each straight into the output array. Also
    the display rotation (quarter turns, :func:`rotation_quarter_turns`) read from the first frame."""
    tb = stream.time_base
    start_pts = stream.start_time or 0
    fps = info.fps
    first = int(wanted[0])
    if first > 0:
        # Seek (in stream time base) to the key frame at or before the first wanted frame; the
        # demuxer lands on a key frame, so decoding forward from there is exact.
        target = start_pts + int(math.floor(first / fps / tb))
        container.seek(target, stream=stream, backward=True, any_frame=False)

    out = np.empty((len(wanted), size[0], size[1], 3), np.uint8)
    rgb = _RGB()
    # Display-time bounds of each wanted index, precomputed: index i is shown until (i + 0.5) / fps.
    until = [(int(w) + 0.5) / fps for w in wanted]
    n = len(wanted)
    j = 0  # next wanted position
    prev = None
    prev_at = -1  # row of `out` already holding prev's RGB (-1: not converted)
    last_index = -1
    turns = None
    for frame in container.decode(stream):
        if turns is None:
            turns = _rotation(frame, path)
        if frame.pts is None:
            # No timestamps (rare raw streams): fall back to counting from the seek point,
            # which is only exact when no seek happened.
            t = (last_index + 1) / fps
        else:
            t = float((frame.pts - start_pts) * tb)
        last_index = int(math.floor(t * fps + 0.5))
        # Every wanted index whose display time lies before this frame is shown by `prev`.
        while j < n and t > until[j]:
            if prev is None:  # seek landed late: nearest frame
                prev, prev_at = frame, -1
            if prev_at >= 0:
                out[j] = out[prev_at]  # a repeated index (short clip): copy, do not convert again
            else:
                rgb(prev, size, out[j])
                prev_at = j
            j += 1
        if j == n:
            break  # stop after the last wanted frame: the point of sparse decoding
        prev, prev_at = frame, -1
    if prev is None and j == 0:
        raise VideoDecodeError(path, "no decodable frames")
    if j < n:
        missing = int(wanted[-1]) - max(last_index, 0)
        slack = max(_END_SLACK_FRAMES, int(_END_SLACK_FRACTION * info.num_frames))
        if missing > slack:
            raise VideoDecodeError(
                path,
                f"stream ends at frame {last_index} but frame {int(wanted[-1])} was requested "
                f"(header says {info.num_frames} frames): truncated or corrupt",
            )
        if prev_at < 0:  # header over-counted by a frame or two: repeat the last
            rgb(prev, size, out[j])
            prev_at = j
        out[j:] = out[prev_at]
    return out, turns or 0


def _target_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None or min(height, width) <= short_side:
        return height, width
    scale = short_side / min(height, width)
    # Keep the shorter side exact and round the other.
    if height <= width:
        return short_side, max(1, int(round(width * scale)))
    return max(1, int(round(height * scale))), short_side


class _RGB:
    """Frame -> RGB ``uint8 [H, W, 3]`` at a given size through ONE swscale context.

    ``frame.to_ndarray(format=...)`` builds a fresh reformatter, hence a fresh swscale context,
    for every frame (0.31-0.34 ms per frame measured, against 0.07-0.10 ms reused); one instance
    per opened stream keeps the context, and scaling plus RGB conversion stay one pass (area
    filter: good for downscaling). swscale runs single-threaded: the decoder and the loader's
    workers already hold the cores."""

    def __init__(self):
        self._reformatter = VideoReformatter()

    def __call__(self, frame, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
        h, w = size
        interp = None if (frame.height, frame.width) == (h, w) else "AREA"
        rgb = self._reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation=interp, threads=1)
        arr = rgb.to_ndarray()
        if out is None:
            return arr.copy() if rgb is frame else arr
        out[...] = arr
        return out


def _to_rgb(frame, size: tuple[int, int]) -> np.ndarray:
    return _RGB()(frame, size)


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


_BACKEND_MODULES = {"torchcodec": "torchcodec.decoders", "decord": "decord"}


def check_backend(backend: str) -> None:
    """Fail now, in the main process, if ``backend`` names an optional decoder that is not
    installed (rather than once per sample inside the loader's workers)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder backend {backend!r}; choose one of {BACKENDS}")
    if backend in _BACKEND_MODULES:
        _require(_BACKEND_MODULES[backend], backend, backend)


def _require(module: str, package: str, backend: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendNotInstalled(
            f"decoder {backend!r} is not installed: pip install 'tubevit[{backend}]' (the {package!r} "
            f"package), or use the pyav decoder (eval/predict: --decoder pyav; train: --set data.decoder=pyav)"
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
