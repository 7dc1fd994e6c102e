"""CPU time of each RandAugment op on a uint8 clip: the shipped uint8 path against the float
round trip (uint8 -> float [0, 1] -> the float reference op -> rounded uint8) it replaces, in one
run, interleaved, one torch thread.

    python benchmarks/randaugment_ops.py [--frames 64] [--size 224] [--repeats 5]

Prints one line per op (median ms of each path and their ratio) and the mean over the 14 ops,
which is what one RandAugment layer costs an item on average (ops are drawn uniformly).
Results: docs/BENCHMARKS.md ("RandAugment ops").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tubevit.data.transforms import RandAugment, _through_float


def _cpu_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append((time.process_time() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 256, (3, args.frames, args.size, args.size), dtype=torch.uint8, generator=g)
    ra = RandAugment(2, 10)
    rows = {}
    for op in RandAugment.OPS:
        uint8 = lambda: ra.apply(clip, op, 10, 1.0)  # noqa: E731
        floated = lambda: _through_float(clip, lambda f: ra.apply(f, op, 10, 1.0))  # noqa: E731
        a, b = [], []
        for _ in range(args.repeats):  # interleaved: both paths see the same machine load
            a.append(_cpu_ms(uint8, 1))
            b.append(_cpu_ms(floated, 1))
        rows[op] = {"uint8_ms": round(statistics.median(a), 1), "float_ms": round(statistics.median(b), 1)}
    mean_u = statistics.mean(r["uint8_ms"] for r in rows.values())
    mean_f = statistics.mean(r["float_ms"] for r in rows.values())
    if args.json:
        print(json.dumps({"clip": [3, args.frames, args.size, args.size], "ops": rows,
                          "mean_uint8_ms": round(mean_u, 1), "mean_float_ms": round(mean_f, 1)}))
        return
    print(f"clip uint8 3x{args.frames}x{args.size}x{args.size}, one thread, median of {args.repeats} interleaved")
    print(f"{'op':14s} {'uint8 ms':>9s} {'float ms':>9s} {'float/uint8':>12s}")
    for op, r in rows.items():
        print(f"{op:14s} {r['uint8_ms']:9.1f} {r['float_ms']:9.1f} {r['float_ms'] / max(r['uint8_ms'], 1e-3):12.2f}")
    print(f"{'mean of ops':14s} {mean_u:9.1f} {mean_f:9.1f} {mean_f / mean_u:12.2f}")


if __name__ == "__main__":
    main()
