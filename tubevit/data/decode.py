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

import bisect
import importlib
import logging
import math
import os
from collections import deque
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
    "VideoReader",
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
    stats: dict | None = None,
) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) as ``uint8 [T, H, W, 3]``.

    Frames come out as displayed: a rotation by a multiple of 90 degrees in the stream's display
    matrix (phone videos) is applied (PyAV; other rotations are warned about once per file). A
    header frame above ``max_frame_pixels`` is refused before decoding (see :func:`probe`).

    ``short_side``: if given and the source's shorter side is larger, frames are scaled during
    decoding (FFmpeg's swscale, which also does the RGB conversion) so that the shorter side is
    ``short_side``; smaller sources are never upscaled here. ``threads``: FFmpeg decoding threads
    (None: :func:`default_decode_threads`; 0 lets FFmpeg choose). ``stats``: a dict that the PyAV
    decoder fills with what it did (:meth:`VideoReader.decode`). ``path`` may be an open
    :class:`VideoReader`; its backend, threads and limits then apply.
    """
    if isinstance(path, VideoReader):  # already open (the datasets: header and frames from one open)
        return path.decode(indices, short_side=short_side, stats=stats)
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder backend {backend!r}; choose one of {BACKENDS}")
    indices = _check_indices(indices)
    with VideoReader(path, backend=backend, threads=threads, folder_fps=folder_fps,
                     max_frame_pixels=max_frame_pixels) as video:
        return video.decode(indices, short_side=short_side, stats=stats)


def _check_indices(indices) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and indices.min() < 0:
        raise ValueError(f"negative frame index in {indices.tolist()}")
    return indices


class VideoReader:
    """One video opened once: its header (:attr:`info`, what :func:`probe` returns) and its frames
    (:meth:`decode`, what :func:`decode_frames` returns) from the same open container.

    A dataset item needs the frame count to choose its clip, then the clip: with :func:`probe`
    and :func:`decode_frames` the file was opened twice, and opening is not free (FFmpeg's stream
    probing decodes the first frame: 2-5 ms per open at 256-340p, as much as two or three
    frames of the clip). ``with VideoReader(path) as video: info = video.info; frames =
    video.decode(indices)``. Frame folders and the optional backends go through :func:`probe` and
    their own readers, with the same errors as before.
    """

    def __init__(self, path, *, backend: str = "auto", threads: int | None = None,
                 folder_fps: float = DEFAULT_FOLDER_FPS, max_frame_pixels: int = MAX_FRAME_PIXELS):
        if backend not in BACKENDS:
            raise ValueError(f"unknown decoder backend {backend!r}; choose one of {BACKENDS}")
        self.backend, self.folder_fps, self.max_frame_pixels = backend, folder_fps, max_frame_pixels
        self.threads = default_decode_threads() if threads is None else threads
        self.path = Path(path)
        self._container = None
        self._info: VideoInfo | None = None
        self._used = False  # a decode has moved the container: the next one must seek
        if not self.path.exists():
            raise VideoDecodeError(self.path, "file not found")
        self._is_dir = self.path.is_dir()
        self._pyav = not self._is_dir and backend in ("auto", "pyav")

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    @property
    def info(self) -> VideoInfo:
        """The header (frame count, rate, size), read once; a :class:`VideoDecodeError` if the
        file is unreadable or claims a frame above ``max_frame_pixels``."""
        if self._info is None:
            if self._pyav:
                self._info = self._open()
            else:
                self._info = probe(self.path, folder_fps=self.folder_fps, max_frame_pixels=self.max_frame_pixels)
        return self._info

    def _open(self) -> VideoInfo:
        self.close()
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
            info = _probe_stream(self.path, self._container, self.max_frame_pixels)
        except VideoDecodeError:
            self.close()
            raise
        except _AV_ERRORS as err:
            self.close()
            raise VideoDecodeError(self.path, f"{type(err).__name__}: {err}") from err
        stream = self._container.streams.video[0]
        # Frame and slice threads; FFmpeg picks the count when thread_count is 0. Set before the
        # decoder opens (at its first packet).
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.threads
        self._used = False
        return info

    def decode(self, indices: Sequence[int], *, short_side: int | None = None,
               stats: dict | None = None) -> np.ndarray:
        """The frames at ``indices`` (any order, repeats allowed), ``uint8 [T, H, W, 3]``; see
        :func:`decode_frames`. ``stats`` (PyAV, files): filled with ``decoded`` (packets sent to
        the decoder), ``skipped`` (non-reference pictures not decoded because no wanted frame is
        shown from them), ``skipped_pts`` (their timestamps), ``skipping`` (whether the stream
        allowed it) and ``fallback`` (a skipping pass that was redone without skipping)."""
        indices = _check_indices(indices)
        if self._is_dir:
            if self.backend not in ("auto", "pyav"):
                raise ValueError(f"frame folders are read with backend 'auto', not {self.backend!r}")
            return _decode_folder(self.path, indices, short_side)
        if self._pyav:
            return self._decode_pyav(indices, short_side, stats)
        self.info  # the size check, from the header, before the other decoder
        if self.backend == "torchcodec":
            return _decode_torchcodec(self.path, indices, short_side, self.threads)
        return _decode_decord(self.path, indices, short_side, self.threads)

    def _decode_pyav(self, indices: np.ndarray, short_side, stats) -> np.ndarray:
        path = self.path
        try:
            info = self.info
            size = _target_size(info.height, info.width, short_side)
            if indices.size == 0:
                return np.zeros((0, size[0], size[1], 3), np.uint8)
            wanted = np.unique(indices)  # sorted
            got, turns = _sparse_decode(self, info, wanted, size, stats)
        except VideoDecodeError:
            raise
        except _AV_ERRORS as err:
            raise VideoDecodeError(path, f"{type(err).__name__}: {err}") from err
        got = rotate_frames(got, turns)
        if len(wanted) == len(indices) and bool((wanted == indices).all()):
            return got  # the common case (the datasets pass sorted unique indices): no gather copy
        return got[np.searchsorted(wanted, indices)]


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


def _sparse_decode(reader: VideoReader, info: VideoInfo, wanted, size, stats) -> tuple[np.ndarray, int]:
    """``uint8 [len(wanted), H, W, 3]`` for sorted unique ``wanted``: decode from the key frame
    before the first to the last wanted frame, converting to RGB (and scaling, in the same
    swscale pass) only the frames that are returned, each straight into the output array. Also
    the display rotation (quarter turns, :func:`rotation_quarter_turns`) read from the first frame.

    H.264 in MP4/MKV (length-prefixed NAL units) is decoded packet by packet and a non-reference
    picture that no wanted index is shown from is not decoded at all (:class:`_NonRefSkipper`);
    any other stream is decoded whole over the range."""
    container = reader._container
    stream = container.streams.video[0]
    tb = stream.time_base
    if tb is None:
        raise VideoDecodeError(reader.path, "video stream has no time base")
    start_pts = stream.start_time or 0
    fps = info.fps
    first = int(wanted[0])
    # Display-time bounds of each wanted index: index i is shown until (i + 0.5) / fps, i.e. by the
    # last frame with t <= until[i], t = float((pts - start_pts) * time_base).
    until = [(int(w) + 0.5) / fps for w in wanted]
    # The same test in integer pts: t > until[j]  <=>  pts - start_pts >= after[j]. Exact (t is
    # monotonic in pts, and the threshold is found with the very float conversion used before),
    # and no Fraction arithmetic per frame.
    after = [_first_pts_after(u, tb) for u in until]
    nal_size = _h264_nal_length_size(stream)
    if stats is not None:
        stats.update(decoded=0, skipped=0, skipped_pts=[], skipping=nal_size is not None, fallback=False)
    _seek(container, stream, first, fps, tb, start_pts, rewind=reader._used)
    reader._used = True
    if nal_size is None:
        frames = container.decode(stream)
        return _fill(frames, info, wanted, until, after, tb, start_pts, size, reader.path, None, stats)
    skipper = _NonRefSkipper(container, stream, nal_size, after, start_pts)
    seen: list = []
    got = _fill(skipper.frames(stats), info, wanted, until, after, tb, start_pts, size, reader.path, seen, stats)
    if skipper.consistent(seen):
        return got
    # The decoder did not output what the packets promised (frames without timestamps, out of
    # display order, a frame missing): the skipped pictures might have been shown. Decode again
    # from a fresh open without skipping, exactly as a plain decode would.
    log.debug("%s: non-reference skipping not confirmed by the decoder's output; decoding again", reader.path)
    reader._open()
    container = reader._container
    stream = container.streams.video[0]
    if stats is not None:
        stats.update(decoded=0, skipped=0, skipped_pts=[], fallback=True)
    _seek(container, stream, first, fps, tb, start_pts, rewind=False)
    reader._used = True
    return _fill(container.decode(stream), info, wanted, until, after, tb, start_pts, size, reader.path, None, stats)


def _seek(container, stream, first: int, fps: float, tb, start_pts: int, *, rewind: bool) -> None:
    if first > 0 or rewind:
        # Seek (in stream time base) to the key frame at or before the first wanted frame; the
        # demuxer lands on a key frame, so decoding forward from there is exact. (A fresh open
        # decoding from frame 0 needs no seek.)
        target = start_pts + int(math.floor(first / fps / tb))
        container.seek(target, stream=stream, backward=True, any_frame=False)


def _first_pts_after(until: float, tb) -> int:
    """The smallest integer pts offset ``d`` with ``float(d * tb) > until`` (``tb`` a Fraction)."""
    num, den = tb.numerator, tb.denominator
    d = math.floor(until * den / num)
    while (d * num) / den > until:  # int / int: the correctly rounded float(Fraction(d * num, den))
        d -= 1
    while (d * num) / den <= until:
        d += 1
    return d


def _fill(frames, info: VideoInfo, wanted, until, after, tb, start_pts, size, path, seen, stats):
    """Run the decoded ``frames`` (display order) against the wanted indices; see
    :func:`_sparse_decode`. ``seen`` collects the pts of every frame consumed."""
    fps = info.fps
    out = np.empty((len(wanted), size[0], size[1], 3), np.uint8)
    rgb = _RGB()
    n = len(wanted)
    j = 0  # next wanted position
    prev = None
    prev_at = -1  # row of `out` already holding prev's RGB (-1: not converted)
    last_d = None  # pts offset of the last frame, or
    last_t = None  # its time when it had no pts
    turns = None
    for frame in frames:
        if turns is None:
            turns = _rotation(frame, path)
        pts = frame.pts
        if seen is not None:
            seen.append(pts)
        if pts is None:
            # No timestamps (rare raw streams): fall back to counting from the seek point,
            # which is only exact when no seek happened.
            t = (_last_index(last_d, last_t, tb, fps) + 1) / fps
            last_d, last_t = None, t
            shown_until = lambda k: t > until[k]  # noqa: E731
        else:
            d = pts - start_pts
            last_d, last_t = d, None
            shown_until = lambda k: d >= after[k]  # noqa: E731
        # Every wanted index whose display time lies before this frame is shown by `prev`.
        while j < n and shown_until(j):
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
        last_index = _last_index(last_d, last_t, tb, fps)
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


def _last_index(last_d, last_t, tb, fps) -> int:
    """The frame index (nearest, at the average rate) of the last decoded frame; -1 before any."""
    if last_d is not None:
        t = float(last_d * tb)
    elif last_t is not None:
        t = last_t
    else:
        return -1
    return int(math.floor(t * fps + 0.5))


# ---------------------------------------------------------------------------------------------
# Non-reference picture skipping (H.264)

# NAL unit types a droppable packet may hold besides its non-reference slices (type 1): SEI (6),
# access unit delimiter (9), filler (12). Anything else (IDR, data partitions, parameter sets,
# end of sequence, extensions) keeps the packet.
_DROPPABLE_NAL_TYPES = (6, 9, 12)
# SEI payloads that only describe their own picture (buffering period, picture timing, user data
# registered / unregistered). Another payload (recovery point, ...) may steer what the decoder
# outputs later, so it keeps the packet.
_DROPPABLE_SEI_TYPES = (0, 1, 4, 5)


def _h264_nal_length_size(stream) -> int | None:
    """Bytes of the NAL unit length prefix if ``stream`` is H.264 in the length-prefixed (AVCC)
    form of MP4/MOV/MKV, read from the avcC record in the extradata; None for anything else
    (Annex B streams, other codecs), which is then decoded without skipping."""
    ctx = stream.codec_context
    if ctx is None or ctx.name != "h264":
        return None
    extra = ctx.extradata
    if not extra or len(extra) < 7 or extra[0] != 1:  # avcC starts with configurationVersion 1
        return None
    size = (extra[4] & 0x03) + 1  # lengthSizeMinusOne
    return size if size in (1, 2, 4) else None


def _is_nonref_picture(data, nal_size: int) -> bool:
    """True if the length-prefixed NAL units in ``data`` are one or more non-IDR slices that all
    have ``nal_ref_idc == 0`` (no later picture predicts from them), plus only NAL units that
    carry nothing the decoder keeps (:data:`_DROPPABLE_NAL_TYPES`). Malformed input: False."""
    i, n, slices = 0, len(data), 0
    while i < n:
        if i + nal_size >= n:
            return False
        length = int.from_bytes(data[i:i + nal_size], "big")
        head = i + nal_size
        if length == 0 or head + length > n:
            return False
        kind = data[head] & 0x1F
        if kind == 1:
            if data[head] & 0x60:  # nal_ref_idc != 0: a reference picture
                return False
            slices += 1
        elif kind not in _DROPPABLE_NAL_TYPES:
            return False
        elif kind == 6 and not _sei_is_droppable(bytes(data[head + 1:head + length])):
            return False
        i = head + length
    return slices > 0


def _sei_is_droppable(payload: bytes) -> bool:
    """All SEI messages in this RBSP are of :data:`_DROPPABLE_SEI_TYPES` (unparseable: False)."""
    rbsp = payload.replace(b"\x00\x00\x03", b"\x00\x00")  # emulation prevention bytes
    i, n = 0, len(rbsp)
    while i < n and rbsp[i:] != b"\x80":  # the rest is rbsp_trailing_bits
        kind = 0
        while i < n and rbsp[i] == 0xFF:
            kind, i = kind + 255, i + 1
        if i >= n:
            return False
        kind, i = kind + rbsp[i], i + 1
        size = 0
        while i < n and rbsp[i] == 0xFF:
            size, i = size + 255, i + 1
        if i >= n:
            return False
        size, i = size + rbsp[i], i + 1
        if kind not in _DROPPABLE_SEI_TYPES or i + size > n:
            return False
        i += size
    return True


class _NonRefSkipper:
    """Feeds the decoder packet by packet (``codec_context.decode(packet)``, as
    ``container.decode`` does) and leaves out a packet when

    * it is a non-reference picture (:func:`_is_nonref_picture`): dropping it changes no other
      decoded picture, bit for bit, since nothing predicts from it;
    * no wanted index is shown from it: index ``j`` is shown by the last frame (display order)
      with ``pts - start >= after[j]`` false, so a frame at ``p`` whose display successor is at
      ``q`` shows exactly the ``j`` with ``p - start < after[j] <= q - start``. The successor is
      the smallest pts above ``p`` among all packets (often one already sent: the reference
      picture that a B-frame is decoded after); packets come in decode order with
      ``pts >= dts`` and rising ``dts``, so reading ahead until a packet's ``dts`` reaches the
      smallest such pts seen makes it exact (a few packets: the reorder depth);
    * it lies before the last wanted index (a later frame may end the loop or be its last frame)
      and after a packet already sent (so it cannot be the first frame shown).

    That reasoning assumes the decoder outputs one frame per packet, in pts order; :meth:`consistent`
    checks it on what was actually output, and :func:`_sparse_decode` decodes again without
    skipping if not. B-frames that x264 marks as non-reference (with b-pyramid, the B-frames
    that are not the pyramid's middle) are 40 % of the frames of a default x264 encode."""

    def __init__(self, container, stream, nal_size: int, after: list[int], start_pts: int):
        self.container, self.stream, self.nal_size = container, stream, nal_size
        self.after, self.start_pts = after, start_pts
        self.dropped: list[tuple[int, int]] = []  # (pts, pts of its display successor)

    def frames(self, stats):
        codec = self.stream.codec_context
        demux = self.container.demux(self.stream)
        pending: deque = deque()  # demuxed, not yet sent (the read-ahead)
        known = self.known_pts = []  # sorted pts of every packet demuxed (sent, dropped or pending)

        def pull() -> bool:
            packet = next(demux, None)
            if packet is None:
                return False
            pending.append(packet)
            if packet.pts is not None:
                bisect.insort(known, packet.pts)
            return True

        lowest_sent = None  # smallest pts sent to the decoder so far
        while pending or pull():
            packet = pending.popleft()
            if lowest_sent is not None and self._droppable(packet, lowest_sent, pending, pull):
                if stats is not None:
                    stats["skipped"] += 1
                    stats["skipped_pts"].append(packet.pts)
                continue
            if packet.size:
                if packet.pts is not None and (lowest_sent is None or packet.pts < lowest_sent):
                    lowest_sent = packet.pts
                if stats is not None:
                    stats["decoded"] += 1
            yield from codec.decode(packet)

    def _droppable(self, packet, lowest_sent: int, pending: deque, pull) -> bool:
        p = packet.pts
        if (p is None or packet.dts is None or packet.size == 0 or packet.is_keyframe or packet.is_discard
                or packet.is_corrupt or p <= lowest_sent):
            return False
        after = self.after
        k = bisect.bisect_right(after, p - self.start_pts)  # first wanted index shown after p
        if k == len(after):
            return False  # at or past the last wanted index
        if not _is_nonref_picture(memoryview(packet), self.nal_size):
            return False
        known = self.known_pts
        while True:  # read ahead until the display successor of p is known
            # (often a packet already sent: the reference picture decoded before a B-frame)
            at = bisect.bisect_right(known, p)
            q = known[at] if at < len(known) else None
            tail = pending[-1].dts if pending else None
            if q is not None and tail is not None and tail >= q:
                break
            if not pull():
                break  # end of stream: what is pending is all there is
        if q is None or after[k] <= q - self.start_pts:
            return False  # the last frame, or wanted index k is shown from it
        self.dropped.append((p, q))
        return True

    def consistent(self, seen: list) -> bool:
        """Whether the frames output (their pts, in order) bear out every drop: timestamps on
        all, strictly rising, each dropped frame's next shown successor (past any run of dropped
        ones) among them and an earlier frame before it (then the skipped frames would not have
        been shown, and all else is the same)."""
        if not self.dropped:
            return True
        if any(p is None for p in seen) or any(b <= a for a, b in zip(seen, seen[1:])):
            return False
        shown = set(seen)
        successor = dict(self.dropped)
        for q in successor.values():
            while q in successor:  # consecutive skipped frames: follow to the next one shown
                q = successor[q]
            if q not in shown:
                return False
        return seen[0] < min(successor)


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

    # uint8 in, uint8 out: PyTorch's CPU kernel for antialiased bilinear on channels-last uint8 is
    # ~16x faster than going through float (15 against 260 ms for 32 frames of 340p -> 158p) and
    # within one level of it; the NHWC array viewed as NCHW is already channels-last.
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


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
