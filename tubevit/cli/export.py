"""`tubevit export MODEL OUT`: a model file for sharing, chosen by OUT's extension:

* ``OUT.safetensors``: the weights with the schema of tubevit.io (config, class names,
  preprocessing, provenance, checksum) in the header; ``tubevit.from_pretrained`` reads it back;
* ``OUT`` without extension: a save_pretrained folder (config.json + model.safetensors);
* ``OUT.onnx``: an ONNX graph of one head (``--head`` for joint models) with a dynamic batch axis,
  checked against PyTorch in onnxruntime (needs the ``onnx`` extra).

MODEL is any whole-model file: a training checkpoint, an export, or a save_pretrained folder.
"""

from __future__ import annotations

from tubevit.engine.export import export_checkpoint

NAME = "export"
HELP = "write a model file for sharing: .safetensors, a save_pretrained folder, or .onnx (by extension)"


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="a run's --out folder (its newest checkpoint), a last.pt / best.pt, a sharded "
                                      "last.dcp / best.dcp folder, an exported .safetensors or a save_pretrained folder")
    p.add_argument("output", help="OUT.safetensors | OUT.onnx | a folder")
    p.add_argument("--head", default=None, help="ONNX: the head to export (joint models have several)")
    p.add_argument("--frames", type=int, default=None, help="ONNX: frames per clip (default: the model's; 1 = image)")
    p.add_argument("--size", type=int, default=None, help="ONNX: frame size (default: the model's)")
    p.add_argument("--ema", action="store_true", help="export the EMA of the weights (runs with optim.ema_decay)")


def run(args) -> int:
    path, n = export_checkpoint(args.checkpoint, args.output, head=args.head, frames=args.frames, size=args.size, ema=args.ema)
    if str(path).endswith(".onnx"):
        print(f"wrote {path} (checked against PyTorch in onnxruntime at batch sizes 1 and 3)")
    else:
        print(f"wrote {n} tensors to {path}")
    return 0
