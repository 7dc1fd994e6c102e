"""Pipeline benchmark: the data loader against the training step it feeds.

Measured in one run, on real video files decoded by the real :class:`tubevit.data.VideoDataset`
(training transforms: sparse decode, random resized crop, flip, RandAugment, normalisation) behind
the real :func:`tubevit.data.loader.build_loader`, and the trainer's own
:class:`tubevit.engine.step.TrainStep`:

* ``memory``: the train step fed by a batch already in memory (one real decoded batch, re-used);
  the ceiling the loader is measured against;
* ``loader``: the loader alone with ``N`` workers (batches/s, clips/s), nothing else running;
* ``fed``: the train step fed by that loader, as the trainer runs it (fetch the next batch, step).

``fed / memory`` is the fraction of step throughput kept with real decoding; the loader is the
bottleneck when it alone delivers fewer clips/s than the step consumes from memory. On a CPU the
workers and the step share the same cores, so ``fed`` can fall below both.

Timing: every round times each row once (interleaved, so a noisy neighbour slows all rows alike)
and the median round is reported. A loader row's epoch is exactly ``1 + steps`` batches: the
first batch (worker start-up and pipeline fill) is untimed and the timed window runs from its
arrival until the last batch arrives, so no worker is left decoding prefetched batches into the
next row's window. With ``steps`` a multiple of the worker count, an ideal pipeline of ``N``
workers measures exactly ``N`` batches per batch time.

Data: ``long`` writes ``videos`` 10 s, 30 fps, 604x340 H.264 clips (moving 8x8-block texture,
key frame every 60 frames; :func:`tubevit.data.bench.make_long_clip`), a Kinetics-like decode load;
``synthetic`` writes the built-in data set (:func:`tubevit.data.synthetic.make_synthetic_data`,
48 frames at 64x64, the demo's files). The files are listed repeatedly to fill an epoch; each
listing draws its own random clip, crop and augmentation.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from tubevit.defaults import PRECISIONS
from tubevit.factory import create_model
from tubevit.model import list_models

__all__ = ["PipelineSpec", "run_pipeline_benchmark", "format_rows", "make_videos"]

DATA_KINDS = ("long", "synthetic")
NUM_CLASSES = 400  # a Kinetics-400 head, as in tubevit.bench.model


@dataclass
class PipelineSpec:
    model: str = "tubevit_tiny"
    frames: int = 32
    size: int = 112
    batch: int = 4
    stride: float = 2
    workers: tuple[int, ...] = (0, 1, 2)
    # Timed steps (or batches) per row per round; a multiple of every worker count is unbiased.
    steps: int = 4
    repeats: int = 3
    precision: str = "fp32"
    threads: int | None = None  # torch intra-op threads of the main process (workers use 1)
    data: str = "long"
    videos: int = 2  # distinct files written
    seconds: float = 10  # length of the long clips
    randaugment: bool = True
    data_dir: str | None = None  # reuse or keep the written files here (default: a temporary folder)
    train_list: str | None = None  # a user's own annotation file (any supported format) instead of `data`
    data_root: str | None = None  # what train_list's paths are relative to (default: its folder)
    fps: float | None = None  # sample clips at this rate (as data.fps) instead of `stride`
    overrides: dict | None = None  # ModelConfig overrides, e.g. {"depth": 2} for tests

    def check(self) -> None:
        if self.data not in DATA_KINDS:
            raise ValueError(f"unknown data {self.data!r}; choose from {DATA_KINDS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        if not self.workers or min(self.workers) < 0:
            raise ValueError(f"workers must be a non-empty list of counts >= 0, got {self.workers}")
        if self.train_list and not Path(self.train_list).is_file():
            raise FileNotFoundError(f"--train-list {self.train_list} not found; pass your annotation file")
        if self.steps < 1 or self.repeats < 1 or self.batch < 1 or self.videos < 1:
            raise ValueError("steps, repeats, batch and videos must be at least 1")


# --------------------------------------------------------------------------- data

def make_videos(spec: PipelineSpec, folder: Path) -> tuple[list[Path], str]:
    """Write (or reuse) the benchmark's video files; returns their paths and a description.
    With ``train_list``: the listed files (nothing is written)."""
    if spec.train_list:
        from tubevit.data.datasets import read_annotations

        root = Path(spec.data_root) if spec.data_root else Path(spec.train_list).parent
        samples, _ = read_annotations(spec.train_list, root)
        paths = [Path(rel) if Path(rel).is_absolute() else (root / rel).resolve() for rel, _ in samples]
        return paths, f"list {spec.train_list}: {len(paths)} files under {root}"
    folder.mkdir(parents=True, exist_ok=True)
    if spec.data == "long":
        from tubevit.data.bench import make_long_clip

        paths = []
        for i in range(spec.videos):
            path = folder / f"long_{spec.seconds:g}s_{i}.mp4"
            if not path.exists():
                make_long_clip(path, height=340, width=604, seconds=spec.seconds, fps=30, gop=60, seed=i)
            paths.append(path)
        return paths, f"long: {spec.videos} x {spec.seconds:g} s 604x340 30 fps H.264 (GOP 60)"
    from tubevit.data.synthetic import make_synthetic_data

    per_class = math.ceil(spec.videos / 2)
    listing = folder / "synthetic" / "videos" / "train.txt"
    if not listing.exists():
        make_synthetic_data(folder / "synthetic", num_classes=2, videos_per_class=per_class + 1,
                            images_per_class=1, frames=48, size=64)
    rels = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    paths = [folder / "synthetic" / r for r in rels][: spec.videos]
    return paths, f"synthetic: {len(paths)} x 48-frame 64x64 H.264 (the demo's data)"


def build_dataset(spec: PipelineSpec, paths: list[Path]):
    """The training VideoDataset over ``(1 + steps) x batch`` listings of ``paths``."""
    from tubevit.data.datasets import VideoDataset
    from tubevit.data.transforms import RandAugment

    n = (1 + spec.steps) * spec.batch
    samples = [(str(paths[i % len(paths)]), i % 2) for i in range(n)]
    return VideoDataset(samples, paths[0].parent, frames=spec.frames, stride=spec.stride, fps=spec.fps,
                        size=spec.size, train=True, randaugment=RandAugment(2, 10) if spec.randaugment else None)


# --------------------------------------------------------------------------- rows

@dataclass
class _Row:
    kind: str  # memory | loader | fed
    workers: int | None
    run: Callable[[], float]  # one timed window: returns its wall seconds
    times: list


def _loader_window(loader, steps: int, step=None) -> float:
    """One epoch of ``1 + steps`` batches; the window starts when the first batch arrives.

    Without ``step``: fetch only. With ``step``: as the trainer, step on each batch and then fetch
    the next (the last fetch ends the window, so it holds ``steps`` steps and ``steps`` fetches).
    """
    it = iter(loader)
    batch = next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        if step is not None:
            step(batch)
        batch = next(it)
    dt = time.perf_counter() - t0
    for _ in it:  # nothing is left (the epoch is 1 + steps batches); ends the epoch cleanly
        pass
    return dt


def run_pipeline_benchmark(spec: PipelineSpec, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Build and time the memory, loader and fed rows of ``spec``; one dict per row."""
    from tubevit.bench.model import BenchSpec, build_train_step, machine_info
    from tubevit.data.loader import build_loader

    spec.check()
    say = progress or (lambda _msg: None)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = torch.device("cpu")  # the loader and the step share this machine's cores
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(spec.data_dir) if spec.data_dir else Path(tmp)
        say(f"writing {spec.data} videos under {folder}")
        t0 = time.perf_counter()
        paths, data_desc = make_videos(spec, folder)
        say(f"  {time.perf_counter() - t0:.1f} s")
        dataset = build_dataset(spec, paths)

        torch.manual_seed(0)
        model = create_model(spec.model, num_classes=NUM_CLASSES, **(spec.overrides or {})).to(device)
        model.train()
        train_step = build_train_step(model, BenchSpec(model=spec.model, device=device.type), spec.precision)

        def step(batch):
            x = batch["video"].to(device, non_blocking=True)
            return train_step([("default", x, batch["label"].to(device, non_blocking=True))])

        loaders = {n: build_loader(dataset, batch_size=spec.batch, workers=n, shuffle=True, seed=0, drop_last=True)
                   for n in spec.workers}
        say(f"decoding one batch; warming up the step ({spec.model}, {spec.batch}x3x{spec.frames}x{spec.size}"
            f"x{spec.size}, {spec.precision})")
        held = next(iter(loaders[0] if 0 in loaders else build_loader(dataset, batch_size=spec.batch, workers=0,
                                                                     shuffle=True, seed=0)))
        if "video" not in held:
            raise ValueError(f"no video of the first batch could be read ({data_desc}); check --data-root "
                             f"(the directory the listed paths are relative to) and the warnings above")
        shape = tuple(held["video"].shape)
        step(held)  # oneDNN builds its kernels on the first step

        def memory_window() -> float:
            t = time.perf_counter()
            for _ in range(spec.steps):
                step(held)
            return time.perf_counter() - t

        rows = [_Row("memory", None, memory_window, [])]
        for n in spec.workers:
            rows.append(_Row("loader", n, lambda ld=loaders[n]: _loader_window(ld, spec.steps), []))
            rows.append(_Row("fed", n, lambda ld=loaders[n]: _loader_window(ld, spec.steps, step), []))
        say("starting workers")
        for n in spec.workers:  # persistent workers start once, outside any window
            _loader_window(loaders[n], 1)
        for r in range(spec.repeats):
            say(f"round {r + 1}/{spec.repeats}")
            for row in rows:
                row.times.append(row.run())
        del loaders  # ends the persistent workers

    info = machine_info("cpu")
    mem_sps = spec.steps / statistics.median(rows[0].times)
    out = []
    for row in rows:
        med = statistics.median(row.times)
        per_s = spec.steps / med
        rec = dict(
            row=row.kind, workers=row.workers,
            steps_per_s=round(per_s, 4) if row.kind != "loader" else None,
            batches_per_s=round(per_s, 4),
            clips_per_s=round(per_s * spec.batch, 4),
            ms_per_batch=round(med / spec.steps * 1e3, 2),
            best_clips_per_s=round(spec.steps * spec.batch / min(row.times), 4),
            fraction_of_memory=round(per_s / mem_sps, 4),
            loader_is_bottleneck=None, limited_by=None,
        )
        out.append(rec)
    by_loader = {r["workers"]: r for r in out if r["row"] == "loader"}
    for rec in out:
        if rec["row"] == "fed":
            alone = by_loader[rec["workers"]]["batches_per_s"]
            rec["loader_is_bottleneck"] = alone < mem_sps
            # loader: it cannot keep up even alone; shared cores: each keeps up alone, but together
            # they compete for the same cores (fed below 90% of both); step: the step sets the pace.
            rec["limited_by"] = ("loader" if alone < mem_sps
                                 else "shared cores" if rec["batches_per_s"] < 0.9 * min(alone, mem_sps) else "step")
    common = dict(model=spec.model, precision=spec.precision, batch=spec.batch, frames=spec.frames, size=spec.size,
                  input_shape=list(shape), stride=spec.stride, fps=spec.fps, randaugment=spec.randaugment, data=data_desc,
                  steps=spec.steps, repeats=spec.repeats, threads=torch.get_num_threads(), cores=info["cores"],
                  device=info["device"], torch=info["torch"])
    return [{**rec, **common} for rec in out]


# --------------------------------------------------------------------------- printing

def format_rows(rows: list[dict]) -> str:
    """A table of the rows, then the fraction of step throughput kept with real decoding."""
    if not rows:
        return ""
    r0 = rows[0]
    lines = [f"{r0['model']} {r0['precision']}  input {'x'.join(map(str, r0['input_shape']))}  "
             f"{r0['device']}  threads {r0['threads']}  torch {r0['torch']}",
             f"data {r0['data']}; clip {r0['frames']} frames at "
             f"{'%g fps' % r0['fps'] if r0.get('fps') else 'stride %g' % r0['stride']}, "
             f"RandAugment {'on' if r0['randaugment'] else 'off'}; "
             f"median of {r0['repeats']} interleaved rounds of {r0['steps']} steps"]
    head = ("row", "workers", "steps/s", "batches/s", "clips/s", "best", "ms/batch", "x memory")
    table = [head] + [(
        r["row"], "-" if r["workers"] is None else str(r["workers"]),
        "-" if r["steps_per_s"] is None else f"{r['steps_per_s']:.3f}", f"{r['batches_per_s']:.3f}",
        f"{r['clips_per_s']:.2f}", f"{r['best_clips_per_s']:.2f}", f"{r['ms_per_batch']:.0f}",
        f"{r['fraction_of_memory']:.2f}") for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        lines.append("  ".join(c.rjust(w) if i > 0 else c.ljust(w) for i, (c, w) in enumerate(zip(t, widths))))
    lines.append("")
    memory = next(r for r in rows if r["row"] == "memory")
    for r in rows:
        if r["row"] == "fed":
            alone = next(x for x in rows if x["row"] == "loader" and x["workers"] == r["workers"])
            lines.append(f"workers {r['workers']}: fed / memory = {r['fraction_of_memory']:.2f} of the step's "
                         f"throughput kept with real decoding; loader alone {alone['clips_per_s']:.2f} clips/s vs "
                         f"{memory['clips_per_s']:.2f} consumed from memory: "
                         f"{'the loader IS' if r['loader_is_bottleneck'] else 'the loader is not'} the bottleneck"
                         + (" (limited by loader and step sharing the cores)" if r["limited_by"] == "shared cores"
                            else ""))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tubevit_tiny", choices=list_models(), help="preset (default tubevit_tiny)")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip (default 32)")
    parser.add_argument("--size", type=int, default=112, help="crop size (default 112; the demo uses 64)")
    parser.add_argument("--stride", type=float, default=2, help="frame stride (default 2)")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per step (default 4)")
    parser.add_argument("--workers", default="0,1,2", help="comma list of loader worker counts (default 0,1,2)")
    parser.add_argument("--steps", type=int, default=4,
                        help="timed steps (batches) per row per round; a multiple of every worker count (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported (default 3)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="train step precision")
    parser.add_argument("--threads", type=int, help="torch threads of the main process (default: torch's)")
    parser.add_argument("--data", default="long", choices=DATA_KINDS,
                        help="long: 10 s 604x340 30 fps clips (default); synthetic: the demo's 48-frame 64x64 files")
    parser.add_argument("--videos", type=int, default=2, help="distinct files written (default 2)")
    parser.add_argument("--seconds", type=float, default=10, help="length of the long clips (default 10)")
    parser.add_argument("--no-randaugment", action="store_true", help="train transforms without RandAugment")
    parser.add_argument("--data-dir", help="write (or reuse) the videos here instead of a temporary folder")
    parser.add_argument("--train-list", help="your own annotation file (list/CSV/Kinetics/SSv2) instead of --data")
    parser.add_argument("--data-root", help="directory the --train-list paths are relative to (default: its folder)")
    parser.add_argument("--fps", type=float, help="sample clips at this frame rate (as data.fps) instead of --stride")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per row")


def spec_from_args(args) -> PipelineSpec:
    workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    return PipelineSpec(model=args.model, frames=args.frames, size=args.size, stride=args.stride,
                        batch=args.batch_size, workers=workers, steps=args.steps, repeats=args.repeats,
                        precision=args.precision, threads=args.threads, data=args.data, videos=args.videos,
                        seconds=args.seconds, randaugment=not args.no_randaugment, data_dir=args.data_dir,
                        train_list=args.train_list, data_root=args.data_root, fps=args.fps)


def main(args) -> int:
    progress = None if args.json else (lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    rows = run_pipeline_benchmark(spec_from_args(args), progress)
    print(json.dumps(rows, indent=1) if args.json else format_rows(rows))
    return 0
