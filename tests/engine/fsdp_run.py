"""Run the tiny trainer (in one process or under torchrun) and write what the FSDP tests compare:
``python -m tests.engine.fsdp_run OUT STEPS RESULT.pt [key=value ...]``, from the repository root
(``joint=true``: a video and an image source; ``stop_after=N``: stop after step N with a
checkpoint). RESULT.pt (rank 0) holds the per-step loss averaged over ranks (each rank's micro-batch means, so the mean over the global
batch when the ranks' batches are equal), the gradient norms, and the full state dict."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from tests.helpers.train import _parse, tiny_trainer
from tubevit.engine import distributed as D

if __name__ == "__main__":
    out, steps, result_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sets = {k: _parse(v) for k, v in (a.split("=", 1) for a in sys.argv[4:])}
    joint = bool(sets.pop("joint", False))
    stop_after = sets.pop("stop_after", None)
    # A move to another world size changes the per-process batch (same global batch): the
    # explicit continue-anyway of `--resume` (issue 10's resume check refuses it otherwise).
    trainer = tiny_trainer(out, steps, joint=joint, allow_changes=True, **sets)
    losses, norms = [], []

    class Recording(type(trainer.stepper)):
        def __call__(self, micros, generator=None):
            per_micro = super().__call__(micros, generator)
            loss = torch.stack(per_micro).mean()
            if dist.is_initialized():
                dist.all_reduce(loss)
                loss /= dist.get_world_size()
            losses.append(float(loss))
            norms.append(float(self.last_grad_norm) if self.last_grad_norm is not None else 0.0)
            return per_micro

    trainer.stepper.__class__ = Recording
    result = trainer.fit(stop_after=stop_after)
    state = D.full_state_dict(trainer.model)
    if trainer.info.is_main:
        torch.save({"losses": losses, "norms": norms, "state": state, "step": result["step"],
                    "sharded": D.is_sharded(trainer.model)}, result_path)
    D.teardown(trainer.info)
