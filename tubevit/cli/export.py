"""`tubevit export CKPT OUT.safetensors`: the weights of a training checkpoint for sharing, with
the model config, class names and training config as JSON in the safetensors metadata.

The file loads without pickle (``safetensors.torch.load_file``); ``tubevit.engine.export.load_exported``
rebuilds the model from it.
"""

from __future__ import annotations

from tubevit.engine.export import export_checkpoint

NAME = "export"
HELP = "write a checkpoint's weights + config (JSON metadata) to a .safetensors file for sharing"


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="a run's --out folder (its newest checkpoint), a last.pt / best.pt, or a "
                                      "sharded last.dcp / best.dcp folder of an fsdp run")
    p.add_argument("output", help="the .safetensors file to write")
    p.add_argument("--ema", action="store_true", help="export the EMA of the weights (runs with optim.ema_decay)")


def run(args) -> int:
    path, n = export_checkpoint(args.checkpoint, args.output, ema=args.ema)
    print(f"wrote {n} tensors to {path}")
    return 0
