"""The decoder backends side by side: CPU time of one training clip (`decode_frames`) for PyAV,
torchcodec and decord on the same files and frame indices, interleaved in one run, with the
largest pixel difference to PyAV (docs/BENCHMARKS.md, "Decoder backends").

    OMP_NUM_THREADS=1 python benchmarks/decoders.py --out runs/decoders

Files: H.264 clips made by `tubevit.data.bench.make_long_clip` (10 s at 30 fps, 604x340 and
456x256, key frame every 12 and every 60 frames). Clip: 32 frames at stride 2 from a random start,
one decoding thread per backend, the frames at the source size and at the training's decode-time
short side (112 / sqrt(0.5) = 158). A backend that is not installed is reported and left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

import numpy as np

from tubevit.data.bench import make_long_clip
from tubevit.data.decode import decode_frames, probe

BACKENDS = ("pyav", "torchcodec", "decord")


def timed_decode(path, idx, backend: str, short_side) -> tuple[float, np.ndarray]:
    """CPU milliseconds of one `decode_frames` call (all threads of this process), and its frames."""
    start = time.process_time()
    frames = decode_frames(path, idx, backend=backend, short_side=short_side, threads=1)
    return (time.process_time() - start) * 1e3, frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/decoders")
    p.add_argument("--clips", type=int, default=12, help="random clips per file and setting")
    p.add_argument("--short-side", type=int, default=158)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backends = [b for b in BACKENDS if b == "pyav" or importlib.util.find_spec(b) is not None]
    missing = sorted(set(BACKENDS) - set(backends))
    files = []
    for (h, w) in ((340, 604), (256, 456)):
        for gop in (12, 60):
            path = out / f"clip_{h}p_gop{gop}.mp4"
            if not path.exists():
                make_long_clip(path, height=h, width=w, gop=gop)
            files.append((f"{h}p GOP {gop}", path))
    rng = np.random.default_rng(0)
    rows = []
    for label, path in files:
        span = probe(path).num_frames - 64  # a 32-frame clip at stride 2 covers 64 source frames
        for short in (None, args.short_side):
            times = {b: [] for b in backends}
            diff = {b: 0 for b in backends}
            for s in rng.integers(0, span, args.clips):
                idx = list(range(int(s), int(s) + 64, 2))
                ref = None
                for b in backends:  # interleaved: each clip decoded by every backend in turn
                    ms, frames = timed_decode(path, idx, b, short)
                    times[b].append(ms)
                    if ref is None:  # pyav comes first
                        ref = frames.astype(np.int16)
                    elif frames.shape != ref.shape:
                        raise SystemExit(f"{b} returned {frames.shape} frames where pyav returned {ref.shape}: "
                                         f"{path} {idx[0]}..{idx[-1]}, short side {short}")
                    diff[b] = max(diff[b], int(np.abs(frames.astype(np.int16) - ref).max()))
            base = statistics.median(times["pyav"])
            for b in backends:
                med = statistics.median(times[b])
                rows.append({"file": label, "short_side": short or "source", "backend": b, "cpu_ms": round(med, 1),
                             "x_pyav": round(med / base, 2), "max_abs_diff": diff[b]})
    print(f"{'file':<14} {'size':<8} {'backend':<11} {'cpu ms/clip':>11} {'x pyav':>7} {'max |diff|':>10}")
    for r in rows:
        print(f"{r['file']:<14} {str(r['short_side']):<8} {r['backend']:<11} {r['cpu_ms']:>11.1f} "
              f"{r['x_pyav']:>7.2f} {r['max_abs_diff']:>10}")
    if missing:
        print("not installed: " + ", ".join(missing))
    (out / "decoders.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
