"""A tiny model and in-memory datasets for fast training tests (also run as a script by the
signal and DDP tests from the repository root: ``python -m tests.helpers.train OUT STEPS [key=value
...]``)."""

from __future__ import annotations

import sys

import torch

from tubevit.configs import load_config
from tubevit.engine.trainer import Source, Trainer

FRAMES, SIZE = 8, 16
TUBES = [
    {"kernel": [1, 8, 8], "stride": [4, 8, 8], "name": "2d"},
    {"kernel": [4, 8, 8], "stride": [4, 8, 8], "name": "3d"},
]


class TensorSet(torch.utils.data.Dataset):
    """Items in the format of tubevit.data.datasets (``{kind: [1, ...], label, index, view,
    source}``) from fixed random tensors whose mean depends on the label; augmentation is noise
    drawn from the loader's per-item generator. Indices in ``nan_from..`` return NaN inputs."""

    def __init__(self, n: int, kind: str, classes: int, name: str, seed: int = 0, nan: bool = False,
                 frames: int = FRAMES):
        g = torch.Generator().manual_seed(seed)
        shape = (3, frames, SIZE, SIZE) if kind == "video" else (3, SIZE, SIZE)
        self.labels = [i % classes for i in range(n)]
        self.x = torch.randn(n, *shape, generator=g) * 0.5 + torch.tensor(self.labels).view(-1, *[1] * len(shape)) * 0.3
        self.kind, self.name, self.nan = kind, name, nan
        self.samples = [(f"{name}/{i}", lab) for i, lab in enumerate(self.labels)]
        self.class_names = [f"c{i}" for i in range(classes)]
        self.views = 1

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, index: int, generator=None):
        x = self.x[index] + 0.1 * torch.randn(self.x.shape[1:], generator=generator)
        if self.nan:
            x = torch.full_like(x, float("nan"))
        return {self.kind: x[None], "label": self.labels[index], "index": index,
                "view": torch.zeros(1, dtype=torch.long), "source": self.name}

    def __getitem__(self, index):
        return self.get(index)


def tiny_config(out, steps: int = 8, **sets):
    overrides = {
        "preset": "tubevit_tiny", "model.width": 24, "model.depth": 2, "model.num_heads": 2, "model.mlp_dim": 48,
        "model.tubes": TUBES, "model.tokenizer": "multi", "data.frames": FRAMES, "data.size": SIZE,
        "steps": steps, "batch_size": 4, "data.workers": 0, "out": str(out), "log_every": 2, "ckpt_every": 4,
        "progress": False, "device": "cpu", "optim.lr": 1e-3,
    }
    overrides.update(sets)
    return load_config(overrides=overrides)


def tiny_sources(cfg, *, joint: bool = True, video_classes: int = 3, nan: bool = False, val: bool = True):
    out = [Source(cfg.data.video, "video", TensorSet(24, "video", video_classes, "video", 0, nan),
                  TensorSet(6, "video", video_classes, "video", 1) if val else None,
                  [f"c{i}" for i in range(video_classes)])]
    if joint:
        out.append(Source(cfg.data.image, "image", TensorSet(20, "image", 2, "image", 2, nan),
                          TensorSet(4, "image", 2, "image", 3) if val else None, ["c0", "c1"]))
    return out


def tiny_trainer(out, steps: int = 8, *, resume="auto", joint=True, nan=False, video_classes=3, allow_changes=False,
                 **sets):
    cfg = tiny_config(out, steps, **sets)
    return Trainer(cfg, resume=resume, sources=tiny_sources(cfg, joint=joint, nan=nan, video_classes=video_classes),
                   allow_changes=allow_changes)


def _parse(v: str):
    import yaml

    return yaml.safe_load(v)


if __name__ == "__main__":  # python -m tests.helpers.train OUT STEPS [key=value ...]
    out, steps = sys.argv[1], int(sys.argv[2])
    sets = dict(a.split("=", 1) for a in sys.argv[3:])
    # heartbeat=DIR: each rank keeps DIR/rank<r> at "<pid> <steps done>" (the signal tests read
    # which processes to signal and how far they had got).
    heartbeat = sets.pop("heartbeat", None)
    trainer = tiny_trainer(out, steps, **{k: _parse(v) for k, v in sets.items()})
    if heartbeat:
        import os
        from pathlib import Path

        beat = Path(heartbeat) / f"rank{trainer.info.rank}"

        class Beating(type(trainer.stepper)):
            def __call__(self, micros, generator=None):
                beat.write_text(f"{os.getpid()} {trainer.step}")
                return super().__call__(micros, generator)

        trainer.stepper.__class__ = Beating
    result = trainer.fit()
    import hashlib

    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in trainer.model.parameters())).hexdigest()
    print(f"RESULT rank={trainer.info.rank} step={result['step']} interrupted={result['interrupted']} weights={digest}",
          flush=True)
    from tubevit.engine.distributed import teardown

    if trainer.info.enabled:
        # Every rank has printed its RESULT before any exits: torchrun tears the others down as soon
        # as one rank exits non-zero (143 after a signal), which under load could cut a slower
        # rank off before its line was written (a flaky signal test, seen in session 9).
        import torch.distributed as dist

        dist.barrier()
    teardown(trainer.info)
    sys.exit(0 if not result["interrupted"] else 143)
