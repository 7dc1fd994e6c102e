"""Why a from-scratch run learns or collapses: loss at init, per-block activation and gradient
statistics, and short in-memory learning curves (docs/TRAINING.md, "Why the old defaults did not
train").

The clips are rendered in memory by the built-in generator (tubevit.data.synthetic) or by the
second, different generator of this file (``--data bars``: textured bars that drift and flicker in
time-reversed pairs), so a curve costs only the model's compute, not decoding. Augmentation is
optional (``--randaugment``, ``--hflip``) to measure its effect on the same clips.

    python benchmarks/train_diagnostics.py stats --model tubevit_tiny --size 64 --tube-scale auto
    python benchmarks/train_diagnostics.py curve --lr 1e-3 --batch 16 --steps 150 --tube-scale auto
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from tubevit.data.synthetic import _video_params, render_video
from tubevit.data.transforms import RandAugment, hflip, normalize
from tubevit.engine.optim import lr_factor
from tubevit.model.tubes import scaled_tube_set
from tubevit.factory import create_model


def bars_video(cls: int, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A second frame-order set, unlike the built-in shapes: K/2 pairs of a striped texture that
    (pair 0) drifts sideways, (1) drifts vertically, (2) brightens, (3) thickens its stripes, (4)
    rotates; odd classes are the even ones played backwards. uint8 [T, S, S, 3]."""
    kind, rev = cls // 2, cls % 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(8, 16)
    ang = rng.uniform(0, math.pi)
    col = rng.uniform(120, 255, 3)
    bg = rng.uniform(0, 80, 3)
    phase = rng.uniform(0, 1)
    out = np.empty((frames, size, size, 3), np.uint8)
    for i in range(frames):
        t = frames - 1 - i if rev else i
        saw = (phase + t / frames) % 1.0
        a, p, shift_x, shift_y, bright = ang, period, 0.0, 0.0, 1.0
        if kind == 0:
            shift_x = 1.5 * t
        elif kind == 1:
            shift_y = 1.5 * t
        elif kind == 2:
            bright = 0.2 + 0.8 * saw
        elif kind == 3:
            p = period * (0.6 + 0.8 * saw)
        else:
            a = ang + 0.08 * t
        u = (xx - shift_x) * math.cos(a) + (yy - shift_y) * math.sin(a)
        m = (np.sin(2 * math.pi * u / p) > 0).astype(np.float32)[..., None]
        out[i] = np.clip(bg + m * bright * (col - bg), 0, 255).astype(np.uint8)
    return out


def make_clips(kind: str, n_per_class: int, classes, frames: int, size: int, seed: int):
    """``[N, 3, frames, S, S]`` float clips (normalised) and labels, rendered in memory.

    ``classes``: a count (classes 0..K-1) or a list of class ids of the generator (labels are
    their positions in the list, e.g. ``[6, 7]``: the rotation pair alone as classes 0 / 1)."""
    rng = np.random.default_rng(seed)
    ids = list(range(classes)) if isinstance(classes, int) else list(classes)
    xs, ys = [], []
    for label, c in enumerate(ids):
        for _ in range(n_per_class):
            v = render_video(c, _video_params(rng, c, size), frames, size) if kind == "shapes" \
                else bars_video(c, rng, frames, size)
            xs.append(torch.from_numpy(v).permute(3, 0, 1, 2).float() / 255)
            ys.append(label)
    return torch.stack(xs), torch.tensor(ys)


def norm_batch(x: torch.Tensor) -> torch.Tensor:
    """``normalize`` of a batch ``[B, C, ...]`` (it takes one clip ``[C, ...]``)."""
    return normalize(x.transpose(0, 1)).transpose(0, 1)


def class_ids(args) -> list[int]:
    return args.class_ids or list(range(args.classes))


def build(args):
    tubes = scaled_tube_set(args.tubes, args.tube_scale if args.tube_scale == "auto" else float(args.tube_scale),
                            args.size)
    model = create_model(args.model, num_classes=len(class_ids(args)), tubes=tubes, tokenizer="s2d",
                         **({"depth": args.depth} if args.depth else {}))
    if args.head_init == "xavier":  # what the model-wide init used to leave in the head
        for h in model.heads.values():
            torch.nn.init.xavier_uniform_(h.weight)
    return model


def batch_of(x, y, idx, frames, gen, ra, flip, stride=1):
    clips = []
    span = (frames - 1) * stride + 1
    for i in idx.tolist():
        t0 = int(torch.randint(0, x.shape[2] - span + 1, (1,), generator=gen))
        c = x[i, :, t0:t0 + span:stride]
        if ra is not None:
            c = ra(c, gen)
        if flip and float(torch.rand((), generator=gen)) < 0.5:
            c = hflip(c)
        clips.append(normalize(c))
    return torch.stack(clips), y[idx]


def stats(args):
    torch.manual_seed(args.seed)
    model = build(args)
    x, y = make_clips(args.data, 2, class_ids(args), args.frames, args.size, args.seed)
    xb = norm_batch(x)
    acts = []
    hooks = [b.register_forward_hook(lambda m, i, o: acts.append(o.detach())) for b in model.blocks]
    emb = model.embed(xb)
    logits = model(xb, head="default")
    loss = F.cross_entropy(logits, y)
    loss.backward()
    for h in hooks:
        h.remove()
    tok = model.tokenizer.tokenize(xb, False)
    pos = model.position_embedding(xb, tok.dtype)
    rep = {
        "tokens": emb.shape[1], "loss_init": round(loss.item(), 4), "ln_K": round(math.log(len(class_ids(args))), 4),
        "logit_std": round(logits.std().item(), 4),
        "token_rms": round(tok.pow(2).mean().sqrt().item(), 4), "pos_rms": round(pos.pow(2).mean().sqrt().item(), 4),
        "block_out_rms": [round(a.pow(2).mean().sqrt().item(), 3) for a in acts],
        "block_grad_norm": [round(math.sqrt(sum(p.grad.pow(2).sum().item() for p in b.parameters())), 4)
                            for b in model.blocks],
        "tokenizer_grad_norm": round(math.sqrt(sum(p.grad.pow(2).sum().item() for p in model.tokenizer.parameters())), 4),
        "head_grad_norm": round(math.sqrt(sum(p.grad.pow(2).sum().item() for p in model.heads.parameters())), 4),
    }
    print(json.dumps(rep))


def curve(args):
    torch.manual_seed(args.seed)
    model = build(args)
    n_train = args.per_class
    x, y = make_clips(args.data, n_train, class_ids(args), args.video_frames, args.size, args.seed)
    xv, yv = make_clips(args.data, args.val_per_class, class_ids(args), (args.frames - 1) * args.stride + 1,
                        args.size, args.seed + 999)
    xv = xv[:, :, ::args.stride]
    params_decay = [p for n, p in model.named_parameters() if p.ndim > 1 and n != "pool.probe"]
    params_nd = [p for n, p in model.named_parameters() if not (p.ndim > 1 and n != "pool.probe")]
    opt = torch.optim.AdamW([{"params": params_decay, "weight_decay": args.wd},
                             {"params": params_nd, "weight_decay": 0.0}], lr=args.lr,
                            betas=(0.9, args.beta2))
    warm = args.warmup if args.warmup >= 0 else int(round(0.05 * args.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, args.steps, warm))
    gen = torch.Generator().manual_seed(args.seed)
    ra = RandAugment(2, args.randaugment) if args.randaugment > 0 else None
    log, t0, run = [], time.perf_counter(), []
    for step in range(args.steps):
        idx = torch.randint(0, len(y), (args.batch,), generator=gen)
        xb, yb = batch_of(x, y, idx, args.frames, gen, ra, args.hflip, args.stride)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run.append((loss.item(), gn.item(), (logits.argmax(-1) == yb).float().mean().item()))
        if (step + 1) % args.every == 0:
            log.append({"step": step + 1, "loss": round(float(np.mean([r[0] for r in run])), 3),
                        "grad_norm": round(float(np.mean([r[1] for r in run])), 3),
                        "train_top1": round(float(np.mean([r[2] for r in run])), 3)})
            run = []
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(norm_batch(xv[i:i + 16])).argmax(-1) for i in range(0, len(yv), 16)])
    out = {"args": {k: v for k, v in vars(args).items() if k != "func"}, "curve": log,
           "val_top1": round((pred == yv).float().mean().item(), 3), "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, fn in (("stats", stats), ("curve", curve)):
        q = sub.add_parser(name)
        q.set_defaults(func=fn)
        q.add_argument("--model", default="tubevit_tiny")
        q.add_argument("--depth", type=int, default=0)
        q.add_argument("--tubes", default="paper")
        q.add_argument("--tube-scale", default="auto")
        q.add_argument("--size", type=int, default=64)
        q.add_argument("--frames", type=int, default=32)
        q.add_argument("--video-frames", type=int, default=48)
        q.add_argument("--stride", type=int, default=1, help="frame stride of the training and validation clips")
        q.add_argument("--classes", type=int, default=10)
        q.add_argument("--class-ids", type=int, nargs="+", default=None,
                       help="train on these classes of the generator only (e.g. 6 7: the rotation pair)")
        q.add_argument("--data", choices=("shapes", "bars"), default="shapes")
        q.add_argument("--head-init", choices=("fixed", "xavier"), default="fixed",
                       help="fixed: the model's own head init (trunc-normal 0.02); xavier: the old, overwritten one")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--lr", type=float, default=1e-3)
        q.add_argument("--wd", type=float, default=0.05)
        q.add_argument("--beta2", type=float, default=0.999)
        q.add_argument("--warmup", type=int, default=-1)
        q.add_argument("--batch", type=int, default=16)
        q.add_argument("--steps", type=int, default=150)
        q.add_argument("--every", type=int, default=10)
        q.add_argument("--per-class", type=int, default=18)
        q.add_argument("--val-per-class", type=int, default=6)
        q.add_argument("--randaugment", type=float, default=0.0, help="RandAugment magnitude (2 layers); 0 off")
        q.add_argument("--hflip", action="store_true")
    args = p.parse_args()
    if args.cmd == "curve" and (args.frames - 1) * args.stride + 1 > args.video_frames:
        p.error(f"{args.frames} frames at stride {args.stride} span {(args.frames - 1) * args.stride + 1} frames, "
                f"more than --video-frames {args.video_frames}")
    args.func(args)


if __name__ == "__main__":
    main()
