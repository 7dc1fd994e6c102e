"""`tubevit demo` (what `make demo` runs): the whole product on the built-in data, on a CPU.

1. Writes the built-in data (tubevit.data.synthetic): 10 video classes in time-reversed pairs
   (only the order of frames tells a pair apart) and 5 image classes of the same shapes.
2. Trains the paper's model jointly on images and videos (one head each, §3.5): the unmodified
   ``tubevit_tiny`` preset, the paper's four tubes with the ``s2d`` tokenizer, scaled to the demo's
   64 px frames (``model.tube_scale: auto``: 294 tokens per 32-frame clip, 16 per image).
3. Evaluates the best checkpoint with multi-view testing and prints the video top-1.
4. Leaves loss.png, accuracy.png, the confusion matrix and metrics.jsonl in the work directory.

Demo choices (documented in docs/TRAINING.md): 80 videos per class (600 training, 200 validation;
``DEMO_DATA``), since in the same 640 steps (now 720) the model generalised from 600 videos and not from 180;
the videos are 48 frames long so the 32-frame
training clips are random temporal crops and the test views are 4 distinct temporal clips; the
frames are square and already 64 px, so the 3 spatial crops of the paper's 4x3 protocol would be
identical and the default is 4x1. Horizontal flips are off (they turn "move right" into
"move left"), and RandAugment is off (too strong for a few hundred steps).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tubevit.configs.load import load_config
from tubevit.defaults import EVAL_CLIPS, EVAL_CROPS, PRECISION_CHOICES

NAME = "demo"
HELP = "generate the built-in data, train tubevit_tiny jointly on its images and videos (CPU, minutes), evaluate"

# The demo's settings are the `demo` recipe (tubevit/configs/recipes/demo.yaml); the command only
# adds the paths of the data it writes, the run length and the validation schedule.
RECIPE = "demo"
# Seconds per demo training step, measured alone on 2 cores (docs/TRAINING.md, "The demo"): with
# bf16 on the Zen 5 EPYC (640 steps in 474 s) and in fp32 on a Zen 3 EPYC without bf16
# instructions (60 and 160 steps in 88.3 and 201.9 s).
BF16_S_PER_STEP = 0.74
FP32_S_PER_STEP = 1.14
# The default 720 steps in fp32 there, with the 3 in-loop validations: an estimate from those runs.
FP32_MINUTES = "about 15 minutes, estimated"


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo", help="work directory (data/, train/) (default runs/demo)")
    p.add_argument("--steps", type=int, default=720,
                   help="optimizer steps (default 720: about 9 minutes of training on 2 cores with bf16, "
                        "from 640 steps measured in 474 s)")
    p.add_argument("--clips", type=int, default=EVAL_CLIPS,
                   help=f"temporal views in the final evaluation (default {EVAL_CLIPS}, as tubevit eval)")
    # The built-in frames are square and already at the crop size: the 3 spatial crops of the
    # paper's protocol would be the same picture three times, so the demo takes one.
    p.add_argument("--crops", type=int, default=1, choices=(1, 3),
                   help="spatial views in the final evaluation (default 1: the built-in frames are square "
                        f"at the crop size, so {EVAL_CROPS} crops would be identical)")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="auto (default): bf16 where the CPU or GPU computes it natively (about 2x faster "
                        "on an AVX512-BF16 CPU), fp32 elsewhere")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any training config key (see tubevit train)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _precision_note(cfg) -> str:
    """Say up front when ``auto`` falls back to fp32 on a CPU: the demo's time budget was measured
    with bf16 instructions, and without them the same steps take several times longer."""
    from tubevit.devices import resolve_device
    from tubevit.model.precision import resolve_precision

    if cfg.precision != "auto":
        return ""
    try:
        device = resolve_device(cfg.device, "device")
    except ValueError:  # the trainer reports a bad device with its own message
        return ""
    if device.type != "cpu" or resolve_precision("auto", device) != "fp32":
        return ""
    # The estimate follows the run's own length (--steps), not the default's.
    minutes = cfg.steps * FP32_S_PER_STEP / 60
    return (f" in fp32: this CPU has no bf16 instructions, so a step takes longer than the {BF16_S_PER_STEP} s"
            f" measured with them ({FP32_S_PER_STEP} s on a 2-core Zen 3 EPYC: ~{minutes:.0f} min for"
            f" {cfg.steps} steps; the default 720: {FP32_MINUTES}; docs/TRAINING.md, \"The demo\")")


def run(args) -> int:
    from tubevit.data.synthetic import DEMO_DATA, ensure_synthetic_data, synthetic_data_matches
    from tubevit.engine.trainer import train
    from tubevit.evaluate.commands import evaluate_checkpoint

    t0 = time.perf_counter()
    work = Path(args.out)
    data = work / "data"
    say = (lambda *a: print(*a, file=sys.stderr, flush=True))
    if synthetic_data_matches(data, seed=args.seed, **DEMO_DATA):
        say(f"[1/3] built-in data already in {data}")
    else:  # absent, incomplete, or another seed or version's set: written again
        say(f"[1/3] writing the built-in data to {data} ...")
        ensure_synthetic_data(data, seed=args.seed, **DEMO_DATA)
    t_data = time.perf_counter() - t0

    overrides = {
        "steps": args.steps, "eval.every": max(args.steps // 4, 1), "precision": args.precision, "seed": args.seed,
        "out": str(work / "train"),
        "data.video.train_list": str(data / "videos" / "train.txt"), "data.video.val_list": str(data / "videos" / "val.txt"),
        "data.video.root": str(data),
        "data.image.train_list": str(data / "images" / "train.txt"), "data.image.val_list": str(data / "images" / "val.txt"),
        "data.image.root": str(data),
    }
    cfg = load_config(overrides=overrides, sets=args.sets, recipe=RECIPE)
    say(f"[2/3] training {cfg.preset} jointly on videos and images for {cfg.steps} steps -> {cfg.out}"
        + _precision_note(cfg))
    result = train(cfg, resume=None)
    t_train = time.perf_counter() - t0 - t_data
    if result["interrupted"]:  # Ctrl-C / SIGTERM: stop here, do not go on to the evaluation
        say(f"stopped by {result['interrupted']} at step {result['step']}; nothing evaluated")
        return 130 if result["interrupted"] == "SIGINT" else 143

    ckpt = Path(cfg.out) / ("best.pt" if (Path(cfg.out) / "best.pt").is_file() else "last.pt")
    say(f"[3/3] multi-view evaluation of {ckpt} ({args.clips} clips x {args.crops} crops)")
    ev = evaluate_checkpoint(ckpt, data / "videos" / "val.txt", data, clips=args.clips, crops=args.crops,
                             precision=args.precision, batch_size=8, workers=cfg.data.workers, head="video",
                             device=cfg.device)
    total = time.perf_counter() - t0
    image_top1 = (result["val"] or {}).get(f"val/{cfg.data.image.name}/top1")
    summary = {
        "video_top1": ev["top1"], "video_top5": ev["top5"], "videos": ev["videos"], "views": ev["views"],
        "image_top1": image_top1, "chance_video": 1 / len(ev["classes"]), "steps": result["step"],
        "seconds": {"data": round(t_data, 1), "train": round(t_train, 1),
                    "eval": round(total - t_data - t_train, 1), "total": round(total, 1)},
        "out": str(work), "plots": [str(Path(cfg.out) / n) for n in ("loss.png", "accuracy.png")]
                                   + [ev.get("confusion_png", "")],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"video top-1 {ev['top1']:.3f} (top-5 {ev['top5']:.3f}) over {ev['videos']} videos x {ev['views']} views"
              f" (chance {summary['chance_video']:.2f})"
              + (f"; image top-1 {image_top1:.3f}" if image_top1 is not None else "")
              + f"; {total:.0f} s in all (data {t_data:.0f} s, training {t_train:.0f} s, "
                f"evaluation {summary['seconds']['eval']:.0f} s)")
        print(f"plots and checkpoints in {cfg.out}")
    return 0
