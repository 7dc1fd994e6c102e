"""`tubevit convert`: an image-ViT checkpoint (timm, Hugging Face, Google .npz; a file or a
save_pretrained folder) -> TubeViT .safetensors with the tubevit schema (model config, class
names, the source's mean/std). Keys the model does not have are refused by name before anything
is written."""

from __future__ import annotations

from tubevit.convert.image_vit import convert_checkpoint
from tubevit.defaults import INFLATE_STRATEGIES
from tubevit.model.presets import list_models
from tubevit.model.tokenizer import TOKENIZERS
from tubevit.model.tubes import TUBE_SETS

NAME = "convert"
HELP = "convert an image ViT (timm / Hugging Face .safetensors|.pth|.bin, Google .npz) into TubeViT weights"


def add_arguments(p) -> None:
    p.add_argument("src", help="image-ViT checkpoint file or Hugging Face folder; the format is detected from its keys")
    p.add_argument("--model", default=None, choices=list_models(),
                   help="TubeViT preset of the checkpoint's size (default: from the folder's config.json, else "
                        "from the weights' shapes: ViT-B/16 -> tubevit_base)")
    p.add_argument("--out", required=True, metavar="DST.safetensors")
    p.add_argument("--tubes", default=None, choices=sorted(TUBE_SETS), help="tube set (default: the preset's, 'paper')")
    p.add_argument("--tokenizer", default=None, choices=TOKENIZERS, help="default: s2d, the paper's main model")
    p.add_argument("--inflate", default="central", choices=INFLATE_STRATEGIES,
                   help="how 2D kernels fill a tube's frames: the central frame, or the average over frames")
    p.add_argument("--keep-classifier", action="store_true", help="keep the image classifier as the head 'imagenet'")


def run(args) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    r = convert_checkpoint(args.src, args.out, model=args.model, tubes=args.tubes, tokenizer=args.tokenizer,
                           inflate=args.inflate, keep_classifier=args.keep_classifier)
    print(f"{r['source_format']} -> {r['model']} ({r['tokenizer']} tokenizer, {r['inflate']} inflation): "
          f"{r['tensors']} tensors ({r['copied']} copied, {len(r['derived'])} derived from the patch kernel); "
          f"new at load: {r['new_keys']}")
    print(f"input normalisation mean {r['mean']} std {r['std']} (travels with the weights)")
    print(f"wrote {r['out']}")
    return 0
