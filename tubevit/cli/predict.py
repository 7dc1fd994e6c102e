"""`tubevit predict`: top-k classes of video and image files (and folders of them) with a model
file; a thin layer over :class:`tubevit.Predictor`."""

from __future__ import annotations

import json

from tubevit.defaults import AGGREGATIONS, DECODERS, EVAL_CLIPS, EVAL_CROPS, PRECISION_CHOICES

NAME = "predict"
HELP = "top-k class names and probabilities for video and image files or folders, with timing"


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a model file: last.pt / best.pt, an exported .safetensors, or a save_pretrained folder")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="video or image files, folders of them (searched recursively), or frame folders")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--clips", type=int, default=EVAL_CLIPS, help=f"temporal views per video (paper: {EVAL_CLIPS})")
    p.add_argument("--crops", type=int, default=EVAL_CROPS, choices=(1, 3),
                   help=f"spatial views per clip or image (paper: {EVAL_CROPS})")
    p.add_argument("--batch-size", type=int, default=4, help="files per forward batch")
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes (overlap with the model)")
    p.add_argument("--view-batch", type=int, default=None, help="at most this many views per forward pass")
    p.add_argument("--aggregation", default="mean_logits", choices=AGGREGATIONS)
    p.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES)
    p.add_argument("--head", default=None, help="which dataset head (joint checkpoints)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the checkpoint's)")
    p.add_argument("--size", type=int, default=None, help="crop size (default: the checkpoint's)")
    p.add_argument("--stride", type=float, default=None)
    p.add_argument("--fps", type=float, default=None)
    p.add_argument("--decoder", default=None, choices=DECODERS)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from tubevit.evaluate.commands import predict_files

    import sys

    r = predict_files(
        args.checkpoint, args.files, topk=args.topk, clips=args.clips, crops=args.crops,
        aggregation=args.aggregation, precision=args.precision, head=args.head, frames=args.frames,
        size=args.size, stride=args.stride, fps=args.fps, decoder=args.decoder, device=args.device,
        batch_size=args.batch_size, workers=args.workers, view_batch=args.view_batch,
        progress=not args.json and sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(r))
    else:
        for p in r["predictions"]:
            if not p["ok"]:
                print(f"{p['file']}: ERROR {p['error']}")
                continue
            print(f"{p['file']}  ({p['kind']}, head {p['head']}, {p['views']} views; decode {p['decode_s']:.3f}s, "
                  f"model {p['model_s']:.3f}s)")
            for t in p["topk"]:
                print(f"  {t['prob']:7.2%}  {t['class']}")
        print(f"{r['files'] - r['failed']} of {r['files']} files predicted; {r['failed']} failed; "
              f"decode {r['decode_s']:.2f}s, model {r['model_s']:.2f}s, load {r['load_s']:.2f}s")
    return 1 if r["failed"] == r["files"] else 0
