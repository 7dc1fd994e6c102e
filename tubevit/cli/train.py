"""`tubevit train`: train (or resume) a TubeViT on videos, images, or both jointly.

Configuration is resolved as: the preset's defaults <- ``--recipe NAME`` <- ``--config FILE.yaml``
<- the shortcut flags <- ``--set key=value`` (see docs/TRAINING.md). Under ``torchrun`` it runs distributed.
"""

from __future__ import annotations

import json
import os
import sys

from tubevit.configs.load import load_config
from tubevit.defaults import INFLATE_STRATEGIES, PRECISION_CHOICES
from tubevit.model.presets import list_models
from tubevit.model.tokenizer import TOKENIZERS
from tubevit.model.tubes import TUBE_SETS

NAME = "train"
HELP = "train TubeViT on videos and/or images (joint training: one head per dataset), with resume and DDP"

# flag dest -> dotted config key
SHORTCUTS = {
    "model": "preset",
    "tubes": "model.tubes",
    "tokenizer": "model.tokenizer",
    "tube_scale": "model.tube_scale",
    "frames": "data.frames",
    "size": "data.size",
    "train_list": "data.video.train_list",
    "val_list": "data.video.val_list",
    "data_root": "data.video.root",
    "image_train_list": "data.image.train_list",
    "image_val_list": "data.image.val_list",
    "image_root": "data.image.root",
    "epochs": "epochs",
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "optim.lr",
    "workers": "data.workers",
    "threads": "threads",
    "precision": "precision",
    "out": "out",
    "seed": "seed",
    "compile": "compile",
    "init_from": "init_from",
    "inflate": "init_inflate",
    "scale_from": "scale_from",
    "freeze_until": "model.freeze_until",
}


def _tube_scale(text: str):
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        import argparse

        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive number, got {text!r}")
    return value


def add_arguments(p) -> None:
    p.add_argument("--recipe", metavar="NAME", help="a named recipe (k400, ssv2, charades, in1k_k400, small, demo; "
                   "--list-recipes): the base that --config, flags and --set override")
    p.add_argument("--list-recipes", action="store_true", help="list the named recipes with their command, budget and "
                   "expected result, and exit")
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML config (e.g. the config.yaml of an earlier run)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.weight_decay=0.05 --set model.drop_path=0.1 "
                        "(repeatable; values are YAML)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=list_models(), help="preset (default tubevit_base)")
    g.add_argument("--tubes", choices=sorted(TUBE_SETS), help="tube set (default paper); custom sets via --set model.tubes=[...]")
    g.add_argument("--tokenizer", choices=TOKENIZERS)
    g.add_argument("--tube-scale", type=_tube_scale, metavar="auto|FACTOR",
                   help="scale the tubes' spatial strides and offsets: auto (default) from the set's 224 px to --size, "
                        "or by FACTOR; the 1x16x16 image tube is kept (docs/MODEL.md)")
    g.add_argument("--init-from", metavar="PATH", help="initial weights: an image ViT (timm / HF .safetensors|.pth|.bin, "
                   "Google .npz) or a `tubevit convert` output (docs/PRETRAINED.md)")
    g.add_argument("--inflate", choices=INFLATE_STRATEGIES, help="how --init-from's 2D kernel fills the video tubes")
    g.add_argument("--freeze-until", type=int, metavar="S", help="freeze the tubes and blocks before S, train blocks "
                   "S.. and the heads, with the gated shortcut at block S (§3.6, Eq. 8)")
    g.add_argument("--no-gate", action="store_true", help="with --freeze-until: no gated shortcut (Table 6 ablation)")
    g.add_argument("--scale-from", metavar="SMALL_CKPT", help="image-to-video scaling (§3.6): video tubes from this "
                   "trained smaller TubeViT (widened by space-to-depth), blocks from the --init-from image ViT of the "
                   "--model size; use with --freeze-until S (docs/PRETRAINED.md)")
    g = p.add_argument_group("data")
    g.add_argument("--frames", type=int, help="frames per clip")
    g.add_argument("--size", type=int, help="crop size in pixels")
    g.add_argument("--train-list", help="video annotations: list file, CSV, Kinetics CSV or SSv2 JSON")
    g.add_argument("--val-list", help="video validation annotations (same formats)")
    g.add_argument("--data-root", help="directory the video paths are relative to")
    g.add_argument("--classes", help="video classes: a classes file (one name per line) or a class count")
    g.add_argument("--image-train-list", help="image annotations: list file or an ImageFolder directory")
    g.add_argument("--image-val-list")
    g.add_argument("--image-root", help="directory the image paths are relative to")
    g.add_argument("--workers", type=int, help="data-loading processes per source and rank")
    g.add_argument("--threads", type=int,
                   help="torch threads per process (default -1: OMP_NUM_THREADS, else the cores the workers "
                        "leave; 0: all cores, when loading costs little)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=float, help="passes over the (first) training set")
    g.add_argument("--steps", type=int, help="optimizer steps (wins over --epochs)")
    g.add_argument("--batch-size", type=int, help="clips per micro-batch per process")
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--precision", choices=PRECISION_CHOICES)
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("run")
    g.add_argument("--out", help="output directory (config.yaml, metrics.jsonl, last.pt, best.pt, plots)")
    g.add_argument("--resume", metavar="CKPT", nargs="?", const="auto", default=None,
                   help="continue from CKPT (default OUT/last.pt) even if the configuration changed; without "
                        "it a run continues from OUT/last.pt only when its configuration matches apart from "
                        "the run length")
    g.add_argument("--fresh", action="store_true", help="ignore OUT/last.pt and start over")
    g.add_argument("--json", action="store_true", help="print the final result as one JSON object")


def overrides_from_args(args) -> dict:
    """Shortcut flags that were given -> dotted config keys."""
    out = {key: getattr(args, dest) for dest, key in SHORTCUTS.items() if getattr(args, dest, None) is not None}
    if getattr(args, "classes", None) is not None:
        text = str(args.classes)
        out["data.video.num_classes" if text.isdigit() else "data.video.classes"] = int(text) if text.isdigit() else text
    if getattr(args, "freeze_until", None) is not None and not getattr(args, "no_gate", False):
        out["model.gate_layer"] = args.freeze_until  # the gate sits at the first trained block
    return out


def run(args) -> int:
    from tubevit.engine.trainer import DiskFull, NonFiniteLoss, train

    if args.list_recipes:
        from tubevit.configs.recipes import format_recipes

        print(format_recipes())
        return 0
    cfg = load_config(args.config, overrides=overrides_from_args(args), sets=args.sets, recipe=args.recipe)
    if args.fresh and args.resume:
        raise ValueError("--fresh and --resume contradict each other; pass one of them")
    resume = None if args.fresh else (args.resume or "auto")
    try:
        result = train(cfg, resume=resume, allow_changes=args.resume is not None)
    except (NonFiniteLoss, DiskFull) as err:
        print(f"tubevit train: stopped: {err}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") != "0":
        pass  # under torchrun, rank 0 reports
    elif args.json:
        print(json.dumps(result))
    else:
        val = result["val"] or {}
        top1 = val.get("val_top1")
        msg = f"step {result['step']}/{result['total_steps']} in {result['seconds']:.0f} s"
        if top1 is not None:
            msg += f"; validation top-1 {top1:.3f} ({val.get('val_top5', float('nan')):.3f} top-5)"
        skipped = result.get("skipped") or {}
        if any(skipped.values()):
            msg += "; skipped unreadable training samples: " + ", ".join(f"{n} {k}" for n, k in skipped.items())
        else:
            msg += "; no training sample skipped"
        print(f"{msg}; outputs in {result['out']}")
    if result["interrupted"]:
        return 130 if result["interrupted"] == "SIGINT" else 143
    return 0
