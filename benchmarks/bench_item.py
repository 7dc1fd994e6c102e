"""Per-stage CPU time of one training item (``VideoDataset.get``), and decode vs FFmpeg's raw
range decode, on one core.

    python benchmarks/bench_item.py [--items 6] [--prepared DIR_OF_PREPARED_COPY]

Stages are timed by wrapping whatever the dataset module calls (works on the float pipeline the
project had before the uint8 rewrite and on the current one): decode (``decode_frames``, and
with the current dataset the ``VideoReader`` that opens the file and reads its header for it:
open + probe + seek + decode + RGB; older checkouts probed separately, inside "other"),
conversion (``to_float`` / ``to_planes``), crop and scale (``random_resized_crop`` /
``crop_resize``), flip, RandAugment, normalisation; ``other`` is the rest of ``get`` (sampling,
gathers). ``raw`` is :func:`tubevit.data.bench.decode_range_raw` over the same frames: one open,
seek + decode of the needed range without RGB conversion; ``raw_decoded_frames`` the same but
leaving out the packets that ``decode_frames`` skipped (non-reference pictures no wanted frame is
shown from), i.e. the raw cost of the frames actually decoded; ``frames_decoded/item`` and
``frames_skipped/item`` count them. CPU time is ``time.process_time`` with one torch thread and
one FFmpeg thread. Results: docs/BENCHMARKS.md ("Training item").
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from tubevit.data import datasets as D
from tubevit.data import decode as decode_module
from tubevit.data.bench import make_long_clip

from tubevit.data.bench import decode_range_raw as _raw_here


def _raw_one_open(path, indices, *, threads=1, skip_pts=None):
    """The raw range decode with one open (what ``decode_range_raw`` does since the decoder reads
    header and frames from one open), for running this script against an older checkout whose
    ``decode_range_raw`` opened the file twice: both columns then share one floor."""
    import av

    first, last = int(min(indices)), int(max(indices))
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        tb, start = stream.time_base, stream.start_time or 0
        if first > 0:
            container.seek(start + int(first / fps / tb), stream=stream, backward=True, any_frame=False)
        n = 0
        for frame in container.decode(stream):
            n += 1
            if frame.pts is not None and float((frame.pts - start) * tb) >= (last + 0.5) / fps:
                break
    return n


decode_range_raw = _raw_here if "skip_pts" in inspect.signature(_raw_here).parameters else _raw_one_open
from tubevit.data.transforms import RandAugment

STAGES = {"decode_frames": "decode", "to_float": "convert", "to_planes": "convert",
          "random_resized_crop": "crop+scale", "crop_resize": "crop+scale", "_hflip": "flip",
          "normalize": "normalize", "normalize_uint8": "normalize"}


def _wrap(times, name, fn):
    def timed(*a, **k):
        t = time.process_time()
        try:
            return fn(*a, **k)
        finally:
            times[name] += time.process_time() - t
    return timed


def measure(path: Path, *, frames: int, size: int, stride=None, fps=None, items: int, seed: int = 0) -> dict:
    torch.set_num_threads(1)
    times: dict[str, float] = defaultdict(float)
    for attr, stage in STAGES.items():
        if hasattr(D, attr):
            setattr(D, attr, _wrap(times, stage, getattr(D, attr)))
    ra = RandAugment(2, 10)
    for attr in ("__call__", "apply_drawn"):
        if hasattr(RandAugment, attr):
            setattr(ra, attr, _wrap(times, "randaugment", getattr(ra, attr)))
    kw = dict(fps=fps) if fps else dict(stride=stride)
    ds = D.VideoDataset([(path.name, 0)], path.parent, frames=frames, size=size, train=True, randaugment=ra,
                        **kw)
    try:
        ds._decode_threads = 1  # current code; the old code passed threads=0 (FFmpeg's choice)
    except AttributeError:
        pass
    calls = []  # (path, indices, stats) of every decode, for the raw decode of the same range
    real_decode = D.decode_frames
    # (real_decode is the timing wrapper: ask the decode module) older checkouts: no counts
    with_stats = "stats" in inspect.signature(decode_module.decode_frames).parameters

    def decode(p, i, **k):
        st = {} if with_stats else None
        out = real_decode(p, i, **{**k, "threads": 1}, **({"stats": st} if with_stats else {}))
        calls.append((getattr(p, "path", p), np.asarray(i), st))
        return out

    D.decode_frames = decode
    real_reader = getattr(D, "VideoReader", None)
    if real_reader is not None:
        # The dataset opens the file (and reads its header) through a VideoReader, then decodes
        # from it: opening belongs to the decode stage, as it did when decode_frames opened.
        class TimedReader(real_reader):
            def __init__(self, *a, **k):
                t = time.process_time()
                try:
                    super().__init__(*a, **k)
                finally:
                    times["decode"] += time.process_time() - t

            @property
            def info(self):
                t = time.process_time()
                try:
                    return real_reader.info.fget(self)
                finally:
                    times["decode"] += time.process_time() - t

            def close(self):
                t = time.process_time()
                try:
                    super().close()
                finally:
                    times["decode"] += time.process_time() - t

        D.VideoReader = TimedReader
    ds.get(0, torch.Generator().manual_seed(10_000))  # warm-up
    times.clear()
    calls.clear()
    total = 0.0
    try:
        for k in range(items):
            t = time.process_time()
            ds.get(0, torch.Generator().manual_seed(seed + k))
            total += time.process_time() - t
    finally:
        D.decode_frames = real_decode
        if real_reader is not None:
            D.VideoReader = real_reader
    raw = raw_decoded = 0.0
    decoded = skipped = 0
    for p, idx, st in calls:
        t = time.process_time()
        decode_range_raw(p, idx, threads=1)
        raw += time.process_time() - t
        if st is not None:
            decoded, skipped = decoded + st.get("decoded", 0), skipped + st.get("skipped", 0)
            t = time.process_time()
            decode_range_raw(p, idx, threads=1, skip_pts=st.get("skipped_pts"))
            raw_decoded += time.process_time() - t
    ms = {k: round(v / items * 1e3, 1) for k, v in sorted(times.items())}
    ms["other"] = round(total / items * 1e3 - sum(ms.values()), 1)
    ms["total"] = round(total / items * 1e3, 1)
    ms["raw_range_decode"] = round(raw / items * 1e3, 1)
    ms["total/decode"] = round(ms["total"] / ms["decode"], 2)
    ms["decode/raw"] = round(ms["decode"] / ms["raw_range_decode"], 2)
    if raw_decoded:
        # raw decode of only the frames decode_frames decoded (the same packets skipped)
        ms["raw_decoded_frames"] = round(raw_decoded / items * 1e3, 1)
        ms["decode/raw_decoded"] = round(ms["decode"] / ms["raw_decoded_frames"], 2)
        ms["frames_decoded/item"] = round(decoded / items, 1)
        ms["frames_skipped/item"] = round(skipped / items, 1)
    return ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=6)
    p.add_argument("--data-dir", help="write/reuse the source clips here")
    p.add_argument("--prepared", help="a `tubevit prepare` copy of --data-dir's clips (adds rows)")
    args = p.parse_args()
    folder = Path(args.data_dir or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "long_340p.mp4"
    if not src.exists():
        make_long_clip(src, height=340, width=604, seconds=10, fps=30, gop=60)
    settings = [("64x224 @15fps from 340p", src, dict(frames=64, size=224, fps=15)),
                ("32x112 stride 2 from 340p", src, dict(frames=32, size=112, stride=2))]
    if args.prepared:
        prepared = next(Path(args.prepared).rglob(src.stem + ".mp4"))
        settings += [("64x224 @15fps, prepared", prepared, dict(frames=64, size=224, fps=15)),
                     ("32x112 @15fps, prepared", prepared, dict(frames=32, size=112, fps=15))]
    out = {}
    for name, path, kw in settings:
        out[name] = measure(path, items=args.items, **kw)
        print(name, json.dumps(out[name]), flush=True)


if __name__ == "__main__":
    main()
