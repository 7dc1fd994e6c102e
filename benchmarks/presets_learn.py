"""Every preset from tiny to base trains from scratch under the default recipe (issue 13): a short
run of each through the real trainer on a small built-in set, reporting the loss curve against
ln K and the validation top-1, so a recipe that collapses a larger model to the uniform
prediction shows here (docs/TRAINING.md, "Every preset trains").

    OMP_NUM_THREADS=1 python benchmarks/presets_learn.py --out runs/presets --precision bf16

Everything but the preset, the run's length and the data is the default recipe (lr, its batch
scaling, warm-up, tubes scaled to the frame size, augmentation); ``--set`` adds config keys.
A run counts as collapsed when the mean loss of its last 20% of steps stays above 0.9 ln K.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from tubevit.configs import load_config
from tubevit.data.synthetic import make_synthetic_data
from tubevit.engine.optim import scaled_lr
from tubevit.engine.trainer import train


def run_preset(preset: str, paths: dict, args) -> dict:
    out = Path(args.out) / preset
    cfg = load_config(overrides={
        "preset": preset,
        "data.video.train_list": str(paths["video_train"]), "data.video.root": str(paths["root"]),
        "data.video.val_list": str(paths["video_val"]),
        "data.frames": args.frames, "data.stride": 1.0, "data.size": args.size, "data.workers": 0,
        "batch_size": args.batch, "steps": args.steps, "log_every": 10, "ckpt_every": 0, "progress": False,
        "device": "cpu", "precision": args.precision, "out": str(out), "seed": args.seed,
    }, sets=args.sets)
    result = train(cfg, resume=None)
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    if not losses:
        raise SystemExit(f"{preset}: no loss logged in {out / 'metrics.jsonl'}; run at least 10 steps (--steps)")
    tail = losses[-max(1, len(losses) // 5):]
    ln_k = math.log(args.classes)
    return {
        "preset": preset, "peak_lr": scaled_lr(cfg.optim, cfg.batch_size * cfg.grad_accum), "steps": result["step"], "ln_K": round(ln_k, 3),
        "loss_curve": [round(x, 3) for x in losses], "loss_end": round(sum(tail) / len(tail), 3),
        "loss_end_over_ln_K": round(sum(tail) / len(tail) / ln_k, 3),
        "collapsed": sum(tail) / len(tail) > 0.9 * ln_k,
        "val_top1": round(result["val"]["val_top1"], 3), "chance": round(1 / args.classes, 3),
        "seconds": result["seconds"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/presets")
    p.add_argument("--presets", nargs="+", default=["tubevit_tiny", "tubevit_small", "tubevit_base"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--videos-per-class", type=int, default=16)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="sets", action="append", default=[])
    args = p.parse_args()
    data = Path(args.out) / "data"
    paths = make_synthetic_data(data, seed=args.seed, num_classes=args.classes,
                                videos_per_class=args.videos_per_class, images_per_class=2,
                                frames=args.frames + 8, size=args.size)
    for preset in args.presets:
        print(json.dumps(run_preset(preset, paths, args)), flush=True)


if __name__ == "__main__":
    main()
