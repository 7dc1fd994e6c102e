"""Per-stage CPU time of one training item (``VideoDataset.get``), and decode vs FFmpeg's raw
range decode, on one core.

    python benchmarks/bench_item.py [--items 6] [--prepared DIR_OF_PREPARED_COPY]

Stages are timed by wrapping whatever the dataset module calls (works on the float pipeline the
project had before the uint8 rewrite and on the current one): decode (``decode_frames``),
conversion (``to_float`` / ``to_planes``), crop and scale (``random_resized_crop`` /
``crop_resize``), flip, RandAugment, normalisation; ``other`` is the rest of ``get`` (probe,
sampling, gathers). ``raw`` is :func:`tubevit.data.bench.decode_range_raw` over the same frames:
seek + decode of the needed range without RGB conversion. CPU time is ``time.process_time``
with one torch thread and one FFmpeg thread. Results: docs/BENCHMARKS.md ("Training item").
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from tubevit.data import datasets as D
from tubevit.data.bench import make_long_clip

try:
    from tubevit.data.bench import decode_range_raw
except ImportError:  # running against an older checkout (the "before" column): the same function
    import av

    def decode_range_raw(path, indices, *, threads=1):
        from tubevit.data.decode import probe as _probe

        info = _probe(path)
        first, last = int(min(indices)), int(max(indices))
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            tb, start = stream.time_base, stream.start_time or 0
            if first > 0:
                container.seek(start + int(first / info.fps / tb), stream=stream, backward=True, any_frame=False)
            n = 0
            for frame in container.decode(stream):
                n += 1
                if frame.pts is not None and float((frame.pts - start) * tb) >= (last + 0.5) / info.fps:
                    break
        return n
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
    ds.get(0, torch.Generator().manual_seed(10_000))  # warm-up
    times.clear()
    calls = []
    real_decode = D.decode_frames
    D.decode_frames = lambda p, i, **k: calls.append(np.asarray(i)) or real_decode(p, i, **{**k, "threads": 1})
    total = 0.0
    for k in range(items):
        t = time.process_time()
        ds.get(0, torch.Generator().manual_seed(seed + k))
        total += time.process_time() - t
    D.decode_frames = real_decode
    raw = 0.0
    for idx in calls:
        t = time.process_time()
        decode_range_raw(path, idx, threads=1)
        raw += time.process_time() - t
    ms = {k: round(v / items * 1e3, 1) for k, v in sorted(times.items())}
    ms["other"] = round(total / items * 1e3 - sum(ms.values()), 1)
    ms["total"] = round(total / items * 1e3, 1)
    ms["raw_range_decode"] = round(raw / items * 1e3, 1)
    ms["total/decode"] = round(ms["total"] / ms["decode"], 2)
    ms["decode/raw"] = round(ms["decode"] / ms["raw_range_decode"], 2)
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
