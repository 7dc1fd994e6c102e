"""Training engine: the loop (trainer.py), one optimizer step (step.py), AdamW and the schedule
(optim.py), checkpoints (checkpoint.py), DDP/FSDP (distributed.py), metrics and plots (logs.py)."""

from tubevit.engine.checkpoint import load_checkpoint, model_from_checkpoint
from tubevit.engine.trainer import NonFiniteLoss, Source, Trainer, build_model, build_sources, train

__all__ = ["NonFiniteLoss", "Source", "Trainer", "build_model", "build_sources", "load_checkpoint",
           "model_from_checkpoint", "train"]
