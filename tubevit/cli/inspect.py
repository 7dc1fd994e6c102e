"""`tubevit inspect`: tokens, parameters and cost of a model on one input, and a picture of its tubes."""

from __future__ import annotations

import json

from tubevit.cli.train import _tube_scale
from tubevit.model.presets import list_models
from tubevit.model.tokenizer import TOKENIZERS
from tubevit.model.tubes import TUBE_SETS
from tubevit.report import format_report, inspect_model

NAME = "inspect"
HELP = "per-tube grids and tokens, parameters and GFLOPs of a model on a T x H x W input (vs a dense video ViT)"


def add_arguments(p) -> None:
    p.add_argument("--model", default="tubevit_base", choices=list_models())
    p.add_argument("--frames", type=int, default=32, help="clip length T (0 inspects the image path)")
    p.add_argument("--size", default="224", help="frame size: S for S x S, or HxW")
    p.add_argument("--tubes", default=None, choices=sorted(TUBE_SETS), help="tube set (default: the preset's, 'paper')")
    p.add_argument("--tokenizer", default=None, choices=TOKENIZERS, help="default: s2d, the paper's main model")
    p.add_argument("--tube-scale", default="auto", type=_tube_scale, metavar="auto|FACTOR",
                   help="scale the tubes' spatial strides and offsets: auto (default) from 224 px to --size, or by FACTOR")
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="draw where each tube's kernels sit in the clip")


def run(args) -> int:
    report = inspect_model(args.model, frames=args.frames, size=args.size, tubes=args.tubes,
                           tokenizer=args.tokenizer, num_classes=args.num_classes, plot=args.plot,
                           tube_scale=args.tube_scale)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0
