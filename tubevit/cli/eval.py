"""`tubevit eval`: video-level top-1/top-5 of a checkpoint with multi-view testing (paper §5: 4x3)."""

from __future__ import annotations

import json
import math
import sys

from tubevit.defaults import (
    AGGREGATIONS, DECODERS, EVAL_CLIPS, EVAL_CROPS, MAX_FAIL_FRACTION, PRECISION_CHOICES, SHORT_EFFECT,
)

NAME = "eval"
HELP = "evaluate a checkpoint: multi-view top-1/top-5, per-class accuracy, confusion-matrix PNG"

# Keys printed by --json (the full result, minus the bulky lists, is written next to the PNG).
_JSON_DROP = ("per_class_named",)


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help="last.pt / best.pt of a tubevit train run")
    p.add_argument("--val-list", required=True, help="annotations: list file, CSV, Kinetics CSV or SSv2 JSON")
    p.add_argument("--data-root", required=True, help="directory the annotation paths are relative to")
    p.add_argument("--classes", default=None, help="classes file for the annotations (names, one per line)")
    p.add_argument("--clips", type=int, default=EVAL_CLIPS, help=f"temporal views per video (paper: {EVAL_CLIPS})")
    p.add_argument("--crops", type=int, default=EVAL_CROPS, choices=(1, 3),
                   help=f"spatial views per clip (paper: {EVAL_CROPS})")
    p.add_argument("--aggregation", default="mean_logits", choices=AGGREGATIONS,
                   help="average the views' logits or their softmax probabilities")
    p.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES)
    p.add_argument("--batch-size", type=int, default=4, help="videos per batch (each brings clips x crops views)")
    p.add_argument("--view-batch", type=int, default=None, help="at most this many views per forward pass")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--head", default=None, help="which dataset head to evaluate (joint checkpoints)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the checkpoint's)")
    p.add_argument("--size", type=int, default=None, help="crop size (default: the checkpoint's)")
    p.add_argument("--stride", type=float, default=None, help="frame stride (default: the checkpoint's)")
    p.add_argument("--fps", type=float, default=None, help="target frame rate, overrides the stride")
    p.add_argument("--decoder", default=None, choices=DECODERS)
    p.add_argument("--stride-scale", type=float, default=None, metavar="F",
                   help="evaluate with the tubes' spatial strides x F (F < 1: more tokens than in training, "
                        "the same weights; Table 7d). Default: the checkpoint's model.eval_stride_scale")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--max-fail-fraction", type=float, default=MAX_FAIL_FRACTION,
                   help=f"stop if more than this fraction of the videos cannot be decoded (default {MAX_FAIL_FRACTION:g})")
    p.add_argument("--out", default=None, help="folder for the confusion matrix PNG and result JSON "
                                               "(default: next to the checkpoint)")
    p.add_argument("--no-plot", action="store_true", help="do not write the confusion-matrix PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from tubevit.evaluate.commands import _jsonable, evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint, args.val_list, args.data_root, classes=args.classes, clips=args.clips, crops=args.crops,
        aggregation=args.aggregation, precision=args.precision, batch_size=args.batch_size, workers=args.workers,
        head=args.head, frames=args.frames, size=args.size, stride=args.stride, fps=args.fps, decoder=args.decoder,
        device=args.device, view_batch=args.view_batch, max_fail_fraction=args.max_fail_fraction, out=args.out,
        plot=not args.no_plot, progress=not args.json and sys.stderr.isatty(), stride_scale=args.stride_scale,
    )
    if result.get("short_videos"):  # once per run, not once per video
        print(f"tubevit eval: warning: {short_videos_line(result)}", file=sys.stderr)
    if args.json:
        print(json.dumps(_jsonable({k: v for k, v in result.items() if k not in _JSON_DROP})))
        return 0
    print(format_result(result))
    return 0


def short_videos_line(r: dict) -> str:
    return (f"{r['short_videos']} of {r['videos']} videos are shorter than one clip ({r['frames']} frames at stride "
            f"{r['stride']:g}); {SHORT_EFFECT[r['short']]}")


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def format_result(r: dict) -> str:
    lines = [
        f"checkpoint {r['checkpoint']} (head {r['head']}, {r['num_classes']} classes)",
        f"views      {r['clips']} clips x {r['crops']} crops = {r['views']} per video, {r['aggregation']}, "
        f"{r['frames']} frames at {r['size']}px, {r['precision']} on {r['device']}",
        f"videos     {r['videos']} evaluated, {r['skipped']} skipped (could not be decoded)",
        f"top-1      {_pct(r['top1'])}",
        f"top-5      {_pct(r['top5'])}",
        f"mean class {_pct(r['mean_class_accuracy'])}",
    ]
    for s in r.get("skipped_files", []):
        lines.append(f"  skipped  {s['path'] or s['index']}")
    if r["num_classes"] <= 40:
        lines.append("per class:")
        width = max(len(n) for n in r["classes"])
        support = [sum(row) for row in r["confusion"]]
        for name, acc, n in zip(r["classes"], r["per_class"], support):
            lines.append(f"  {name:<{width}}  {_pct(acc):>8}  ({n} videos)")
    if r.get("confusion_png"):
        lines.append(f"confusion matrix: {r['confusion_png']}")
    lines.append(f"time       {r['seconds']:.1f}s (waiting for data {r['decode_s']:.1f}s, model {r['model_s']:.1f}s)")
    return "\n".join(lines)
