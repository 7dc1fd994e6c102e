"""Model benchmark: TubeViT in fp32 and bf16 against a dense video ViT, inference and training.

Every row is one (variant, precision, mode) on the same input ``[batch, 3, frames, size, size]``:

* variant ``tubevit``: the preset with its sparse tubes; ``dense``: the same preset with ViViT-style
  dense 2x16x16 tubelets (``tubes="dense"``), so the width, depth, blocks and readout are shared and
  only the token count differs;
* mode ``infer``: a forward under ``torch.inference_mode`` with the weights cast once
  (:func:`tubevit.model.precision.cast_for_inference`) and autocast around it, as eval and predict
  run it; mode ``train``: one call of the trainer's own :class:`tubevit.engine.step.TrainStep`
  (autocast forward, fp32 loss, backward, gradient clipping, AdamW, schedule) on fp32 master
  weights.

Measured per row: clips/s (wall clock, median over ``repeats`` interleaved rounds: every round
times each row once, so a noisy neighbour slows all rows alike), tokens per clip, GFLOPs per clip
(2 x multiply-adds; forward for ``infer``, forward plus backward for ``train``; counted with
``FlopCounterMode`` on the meta device under the MATH attention backend, because fused attention
kernels are opaque to the counter), achieved TFLOP/s and its fraction of the measured peak of a
large matrix product in the same precision (MFU), peak memory and, for bf16 inference, the relative
error of the logits against fp32.

Peak memory is measured for each row in a fresh process that builds only that row and runs it
twice: on CPU the resident set's high-water mark (``VmHWM``) less the resident size before the
model was built, so weights, optimizer state, activations and oneDNN workspaces all count
(tracemalloc does not see torch's allocator); on CUDA ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tubevit.defaults import PRECISIONS
from tubevit.factory import create_model
from tubevit.model import list_models
from tubevit.model.flops import count_flops
from tubevit.model.precision import autocast, cast_for_inference, compute_dtype

__all__ = ["PRESETS", "BenchSpec", "run_benchmark", "format_rows", "machine_info", "matmul_peak_tflops",
           "train_flops"]

# Input and batch per preset: tiny is the quick CPU check, base the paper's model at its 32-frame
# input; the other sizes take base's.
PRESETS = {
    "tubevit_tiny": dict(frames=32, size=112, batch=4),
    "tubevit_base": dict(frames=32, size=224, batch=1),
}
NUM_CLASSES = 400  # a Kinetics-400 head
VARIANT_TUBES = {"tubevit": None, "dense": "dense"}  # None: the preset's own (paper) tube set
MODES = ("infer", "train")


@dataclass
class BenchSpec:
    model: str = "tubevit_tiny"
    # Input clip and batch; None takes the preset's (PRESETS).
    frames: int | None = None
    size: int | None = None
    batch: int | None = None
    precisions: tuple[str, ...] = ("fp32", "bf16")
    modes: tuple[str, ...] = MODES
    variants: tuple[str, ...] = tuple(VARIANT_TUBES)
    # Interleaved timing rounds (the median is reported) and steps timed per round.
    repeats: int = 3
    iters: int = 1
    # Untimed steps per row first: oneDNN builds its kernels (and torch.compile compiles) on the first.
    warmup: int = 1
    threads: int | None = None
    device: str | None = None  # None: cuda when available, else cpu
    # Precisions whose rows run under torch.compile (CPU inference: with freezing; see
    # tubevit.model.precision.cast_for_inference); the others run eagerly.
    compile: tuple[str, ...] = ()
    # Peak memory costs a fresh process and two steps per row; off for quick runs.
    memory: bool = True
    # Profile one more step per row and report its time by kind of op (profile_ms).
    profile: bool = False
    # ModelConfig overrides, e.g. {"depth": 2} for tests.
    overrides: dict = field(default_factory=dict)

    def resolved(self) -> "BenchSpec":
        preset = PRESETS.get(self.model, PRESETS["tubevit_base"])
        out = copy.copy(self)
        out.frames = self.frames or preset["frames"]
        out.size = self.size or preset["size"]
        out.batch = self.batch or preset["batch"]
        out.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        for name, values, valid in (("precision", self.precisions, PRECISIONS),
                                    ("mode", self.modes, MODES), ("variant", self.variants, tuple(VARIANT_TUBES))):
            bad = [v for v in values if v not in valid]
            if bad or not values:
                raise ValueError(f"unknown {name} {bad or values}; choose from {valid}")
        return out


# --------------------------------------------------------------------------- building rows

def build_model(spec: BenchSpec, variant: str, device=None):
    tubes = VARIANT_TUBES[variant]
    kw = dict(spec.overrides)
    if tubes is not None:
        kw["tubes"] = tubes
    return create_model(spec.model, num_classes=NUM_CLASSES, device=device, **kw)


def make_batch(spec: BenchSpec, device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(spec.batch, 3, spec.frames, spec.size, spec.size, generator=g)
    y = torch.randint(0, NUM_CLASSES, (spec.batch,), generator=g)
    return x.to(device), y.to(device)


def build_train_step(model, spec: BenchSpec, precision: str):
    """The trainer's step (tubevit.engine.step) with AdamW, fused on CUDA, and a constant schedule."""
    from tubevit.configs.schema import OptimConfig
    from tubevit.engine.optim import param_groups
    from tubevit.engine.step import TrainStep

    device = torch.device(spec.device)
    cfg = OptimConfig()
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            eps=cfg.eps, fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return TrainStep(model, opt, sched, device=device, num_classes={"default": NUM_CLASSES}, precision=precision,
                     clip_grad=cfg.clip_grad)


@dataclass
class _Row:
    variant: str
    precision: str
    mode: str
    step: Callable[[], object]  # the hot loop's unit: no host reads inside
    times: list = field(default_factory=list)  # wall seconds per step, one per round
    cpu_times: list = field(default_factory=list)  # this process's CPU seconds per step
    train_step: object = None  # the TrainStep of a train row (tests inspect its optimizer)


def _infer_fn(model, x, device, precision):
    def step():
        model.eval()
        with torch.inference_mode(), autocast(device, precision):
            return model(x)
    return step


def _train_fn(model, train_step, x, y):
    micros = [("default", x, y)]

    def step():
        model.train()
        return train_step(micros)
    return step


def build_rows(spec: BenchSpec, x: torch.Tensor, y: torch.Tensor) -> tuple[list[_Row], dict]:
    """Rows in (variant, mode, precision) order, plus the bf16-vs-fp32 logits error per variant.

    One fp32 model per variant serves the fp32 inference row and every training row (precision
    only changes autocast, and weight values do not change speed); bf16 inference gets a cast copy.
    """
    rows, rel_err = [], {}
    device = spec.device
    for variant in spec.variants:
        torch.manual_seed(0)
        master = build_model(spec, variant).to(device)
        infer = {}
        if "infer" in spec.modes:
            for p in spec.precisions:
                m = master if p == "fp32" else copy.deepcopy(master)
                infer[p] = _infer_fn(cast_for_inference(m, p, compile=p in spec.compile), x, device, p)
        compiled = torch.compile(master) if spec.compile else None
        for mode in spec.modes:
            for p in spec.precisions:
                if mode == "infer":
                    rows.append(_Row(variant, p, mode, infer[p]))
                else:
                    ts = build_train_step(compiled if p in spec.compile else master, spec, p)
                    rows.append(_Row(variant, p, mode, _train_fn(master, ts, x, y), train_step=ts))
        if "infer" in spec.modes and "fp32" in infer:
            ref = infer["fp32"]().float()
            for p in spec.precisions:
                if p != "fp32":
                    out = infer[p]().float()
                    rel_err[(variant, p)] = float((out - ref).norm() / ref.norm())
    return rows, rel_err


# --------------------------------------------------------------------------- counting

def train_flops(model, input_shape) -> int:
    """FLOPs of forward plus backward on one input ``(C, T, H, W)``, counted on the meta device."""
    meta = model if next(model.parameters()).device.type == "meta" else copy.deepcopy(model).to("meta")
    meta.train()
    x = torch.empty((1, *input_shape), device="meta")
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        F.cross_entropy(meta(x), torch.zeros(1, dtype=torch.long, device="meta")).backward()
    return int(counter.get_total_flops())


def matmul_peak_tflops(device, precision: str, n: int | None = None, repeats: int = 5) -> float:
    """Best TFLOP/s of an ``n x n`` matrix product in the precision's dtype: the MFU denominator."""
    device = torch.device(device)
    # 1024 on CPU: large enough to reach the GEMM peak there, and where torch has no fast bf16
    # kernel for the CPU (seen on Zen 5 without AMX) a 2048 product alone took minutes.
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device).to(compute_dtype(precision))
    b = torch.randn(n, n, device=device).to(compute_dtype(precision))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


# --------------------------------------------------------------------------- memory (a process per row)

def _status_mb(field_name: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its high-water mark) of this process, in MB.

    Not ``ru_maxrss``: Linux carries that across fork and exec, so a child would report its
    parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise OSError(f"{field_name} not in /proc/self/status")


def _peak_memory_here(spec: BenchSpec, variant: str, precision: str, mode: str) -> float:
    """Peak MB of one row, measured in this (fresh) process."""
    device = torch.device(spec.device)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _status_mb("VmRSS")
    x, y = make_batch(spec, device)
    # An inference row is born in its compute dtype, so no fp32 copy inflates its high-water mark.
    dtype = compute_dtype(precision) if mode == "infer" else torch.float32
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        model = build_model(spec, variant).to(device)
    finally:
        torch.set_default_dtype(default)
    if mode == "infer":
        model = cast_for_inference(model, precision, compile=precision in spec.compile)
        step = _infer_fn(model, x, device, precision)
    else:
        trained = torch.compile(model) if precision in spec.compile else model
        step = _train_fn(model, build_train_step(trained, spec, precision), x, y)
    for _ in range(2):
        step()
    if cuda:
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    return _status_mb("VmHWM") - before


def peak_memory_mb(spec: BenchSpec, variant: str, precision: str, mode: str) -> float | None:
    """Run :func:`_peak_memory_here` in a fresh interpreter (None where that is not possible)."""
    if sys.platform != "linux" and torch.device(spec.device).type == "cpu":
        return None  # /proc/self/status is Linux's
    payload = json.dumps({"spec": asdict(spec), "row": [variant, precision, mode]})
    out = subprocess.run([sys.executable, "-m", "tubevit.bench.model", "--peak-memory", payload],
                         capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


# --------------------------------------------------------------------------- running

def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# Where a step's time goes: profiler op names (substrings) by kind, first match wins. "optimizer"
# includes the gradient-norm clipping (vector norms).
OP_KINDS = (
    ("linear", ("addmm", "aten::mm", "linear")),
    ("attention", ("bmm", "softmax", "attention")),
    ("conv3d", ("conv",)),
    ("layernorm", ("layer_norm",)),
    ("gelu", ("gelu",)),
    ("optimizer", ("adam", "lerp", "sqrt", "addcdiv", "_foreach", "norm")),
    ("copies", ("copy_", "cat", "clone", "contiguous", "to_copy")),
)


def profile_row(row: _Row, device) -> dict[str, float]:
    """Milliseconds of one step by kind of op (self time of the profiler's ops; compiled rows show
    fused kernels under "other")."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    with profile(activities=acts) as prof:
        row.step()
        _sync(device)
    cuda = torch.device(device).type == "cuda"
    out: dict[str, float] = {}
    for ev in prof.key_averages():
        t = (ev.self_device_time_total if cuda else ev.self_cpu_time_total) / 1e3
        kind = next((k for k, names in OP_KINDS if any(n in ev.key.lower() for n in names)), "other")
        out[kind] = out.get(kind, 0.0) + t
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v >= 0.05}


def time_rows(rows: list[_Row], spec: BenchSpec) -> None:
    """Warm every row up, then ``repeats`` rounds timing each row once per round (interleaved)."""
    for row in rows:
        for _ in range(spec.warmup):
            row.step()
    _sync(spec.device)
    for _ in range(spec.repeats):
        for row in rows:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(spec.iters):
                row.step()
            _sync(spec.device)
            row.times.append((time.perf_counter() - t0) / spec.iters)
            row.cpu_times.append((time.process_time() - c0) / spec.iters)


def run_benchmark(spec: BenchSpec, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Build, time and count every row of ``spec``; returns one dict per row (see ``format_rows``)."""
    spec = spec.resolved()
    say = progress or (lambda _msg: None)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    shape = (3, spec.frames, spec.size, spec.size)
    x, y = make_batch(spec, spec.device)
    say(f"building {len(spec.variants) * len(spec.precisions) * len(spec.modes)} rows "
        f"({spec.model}, {spec.batch}x{'x'.join(map(str, shape))}, {spec.device})")
    rows, rel_err = build_rows(spec, x, y)
    say("timing")
    time_rows(rows, spec)
    profiles = {}
    if spec.profile:
        say("profiling one step per row")
        profiles = {id(row): profile_row(row, spec.device) for row in rows}
    peaks = {p: matmul_peak_tflops(spec.device, p) for p in spec.precisions}
    counts = {}
    for variant in spec.variants:
        meta = build_model(spec, variant, device="meta")
        counts[variant] = dict(tokens=meta.token_layout(shape[1:]).total,
                               infer=count_flops(meta, shape) / 1e9, train=train_flops(meta, shape) / 1e9)
    info = machine_info(spec.device)
    out = []
    for row in rows:
        med = statistics.median(row.times)
        c = counts[row.variant]
        clips = spec.batch / med
        tflops = c[row.mode] * clips / 1e3
        mem = None
        if spec.memory:
            say(f"peak memory: {row.variant} {row.precision} {row.mode}")
            mem = peak_memory_mb(spec, row.variant, row.precision, row.mode)
        out.append(dict(
            model=spec.model, variant=row.variant, precision=row.precision, mode=row.mode,
            batch=spec.batch, frames=spec.frames, size=spec.size,
            clips_per_s=round(clips, 4), clips_per_s_best=round(spec.batch / min(row.times), 4),
            step_ms=round(med * 1e3, 2), cpu_ms=round(statistics.median(row.cpu_times) * 1e3, 2),
            peak_mem_mb=mem, tokens=c["tokens"], gflops=round(c[row.mode], 3),
            tflops_per_s=round(tflops, 4), mfu=round(tflops / peaks[row.precision], 4),
            profile_ms=profiles.get(id(row)),
            logits_rel_err=rel_err.get((row.variant, row.precision)) if row.mode == "infer" else None,
            device=info["device"], threads=info["threads"], compiled=row.precision in spec.compile,
            repeats=spec.repeats,
        ))
    for r, p in zip(out, [peaks[r["precision"]] for r in out]):
        r["matmul_peak_tflops"] = round(p, 4)
    return out


def machine_info(device: str = "cpu") -> dict:
    cpu = platform.processor() or "unknown CPU"
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("unknown CPU", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    isa = ",".join(f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags) or "no bf16 ISA"
    cuda = torch.device(device).type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"{cpu} ({cores} cores, {isa})"
    return {"device": name, "cpu": cpu, "cores": cores, "threads": torch.get_num_threads(), "torch": torch.__version__}


# --------------------------------------------------------------------------- printing

def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def format_rows(rows: list[dict]) -> str:
    """A table of the rows, then the bf16/fp32 and tubevit/dense ratios."""
    head = ("variant", "prec", "mode", "tokens", "GFLOPs/clip", "clips/s", "best", "ms/step", "CPU ms", "peak MB",
            "TFLOP/s", "MFU", "logits err")
    lines = []
    if rows:
        r0 = rows[0]
        lines.append(f"{r0['model']}  input {r0['batch']}x3x{r0['frames']}x{r0['size']}x{r0['size']}  "
                     f"{r0['device']}  threads {r0['threads']}  torch {torch.__version__}  "
                     f"median of {r0['repeats']} interleaved rounds; +c: torch.compile")
        peaks = {r["precision"]: r["matmul_peak_tflops"] for r in rows}
        lines.append("matmul peak TFLOP/s: " + ", ".join(f"{p} {v:.3f}" for p, v in peaks.items()))
    table = [head] + [(
        r["variant"], r["precision"] + ("+c" if r["compiled"] else ""), r["mode"], str(r["tokens"]),
        f"{r['gflops']:.1f}", f"{r['clips_per_s']:.3f}", f"{r['clips_per_s_best']:.3f}", f"{r['step_ms']:.0f}",
        f"{r['cpu_ms']:.0f}", "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}",
        f"{r['tflops_per_s']:.3f}", f"{r['mfu']:.0%}",
        "-" if r["logits_rel_err"] is None else f"{r['logits_rel_err']:.1e}") for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        lines.append("  ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(zip(t, widths))))
    by = {(r["variant"], r["precision"], r["mode"]): r for r in rows}
    ratios = []
    for (v, p, m), r in by.items():
        if p != "fp32" and (v, "fp32", m) in by:
            f = by[(v, "fp32", m)]
            ratios.append(f"{p}/fp32  {v:7s} {m:5s}: {_ratio(r['clips_per_s'], f['clips_per_s'])} clips/s "
                          f"({_ratio(f['cpu_ms'], r['cpu_ms'])} by CPU time per step)")
    for (v, p, m), r in by.items():
        if v == "tubevit" and ("dense", p, m) in by:
            d = by[("dense", p, m)]
            ratios.append(f"tubevit/dense {p} {m:5s}: {_ratio(r['clips_per_s'], d['clips_per_s'])} clips/s, "
                          f"{_ratio(r['tokens'], d['tokens'])} tokens, {_ratio(r['gflops'], d['gflops'])} GFLOPs")
    profiled = [r for r in rows if r.get("profile_ms")]
    if profiled:
        ratios += ["", "ms per step by kind of op (profiler self time):"]
        for r in profiled:
            ops = ", ".join(f"{k} {v:.0f}" for k, v in r["profile_ms"].items())
            ratios.append(f"  {r['variant']} {r['precision']} {r['mode']}: {ops}")
    return "\n".join(lines + ([""] + ratios if ratios else []))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tubevit_tiny", choices=list_models(),
                        help="preset; tiny runs at 32x112x112 (batch 4), the others at 32x224x224 (batch 1) "
                             "(default tubevit_tiny)")
    parser.add_argument("--frames", type=int, help="frames per clip (default: the preset's)")
    parser.add_argument("--size", type=int, help="frame height and width (default: the preset's)")
    parser.add_argument("--batch", type=int, help="clips per step (default: the preset's)")
    parser.add_argument("--precision", default="fp32,bf16", help=f"comma list of {', '.join(PRECISIONS)} (default fp32,bf16)")
    parser.add_argument("--modes", default="infer,train", help="comma list of infer, train (default both)")
    parser.add_argument("--variants", default="tubevit,dense", help="comma list of tubevit, dense (default both)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds; the median is reported")
    parser.add_argument("--iters", type=int, default=1, help="steps per row per round (default 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per row first (default 1)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--compile", nargs="?", const="all", default="", metavar="PRECISIONS",
                        help="torch.compile the rows of these precisions (comma list; alone: all); CPU inference "
                             "compiles with freezing. Compile time is not timed (warm-up)")
    parser.add_argument("--profile", action="store_true", help="also break one step per row down by kind of op")
    parser.add_argument("--no-memory", action="store_true", help="skip peak memory (a fresh process per row)")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per row")


def spec_from_args(args) -> BenchSpec:
    split = lambda s: tuple(v.strip() for v in s.split(",") if v.strip())  # noqa: E731
    return BenchSpec(model=args.model, frames=args.frames, size=args.size, batch=args.batch,
                     precisions=split(args.precision), modes=split(args.modes), variants=split(args.variants),
                     repeats=args.repeats, iters=args.iters, warmup=args.warmup, threads=args.threads,
                     device=args.device, memory=not args.no_memory, profile=args.profile,
                     compile=split(args.precision) if args.compile == "all" else split(args.compile))


def main(args) -> int:
    progress = None if args.json else (lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    rows = run_benchmark(spec_from_args(args), progress)
    print(json.dumps(rows, indent=1) if args.json else format_rows(rows))
    return 0


if __name__ == "__main__":
    # Internal, for peak_memory_mb: `python -m tubevit.bench.model --peak-memory JSON` measures one
    # row in a fresh process. The command line is `tubevit bench model` (or benchmarks/bench_model.py).
    if len(sys.argv) != 3 or sys.argv[1] != "--peak-memory":
        sys.exit("usage: tubevit bench model ... (this module's own entry point is internal)")
    payload = json.loads(sys.argv[2])
    lists = ("precisions", "modes", "variants", "compile")
    print(_peak_memory_here(BenchSpec(**{**payload["spec"], **{k: tuple(payload["spec"][k]) for k in lists}}),
                            *payload["row"]))
