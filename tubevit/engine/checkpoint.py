"""Training checkpoints, as the training engine uses them. The file itself is written and read by
:mod:`tubevit.io` (the only code that touches model files); this module adds what only training
needs: the RNG state, and the checks that a run and a checkpoint belong together.

Contents of a checkpoint (``tubevit.io.schema`` describes the shared fields)::

    format, kind  "tubevit/2", "training-checkpoint"   (version 1 files, "tubevit-checkpoint/1", load)
    checksum      "sha256:..." of ``model``, verified on load
    model         the TubeViT state dict (unwrapped from DDP/FSDP/compile; CPU)
    model_config  the ModelConfig as a dict (also at config["model"])
    config        the resolved TrainConfig as a dict
    class_names   {head name: [class names]}, one entry per head
    preprocessing mean, std and clip settings the model was trained with
    step          optimizer steps done
    epoch         epochs of the first source done (float)
    optimizer, scheduler, scaler     state dicts (scaler {} unless fp16)
    rng           {"torch", "cuda", "numpy", "python"} generator states of rank 0
    data_state    the joint schedule: {"seed", "micro_step", "weights", "batches": {source: count}}
    best_top1     best validation top-1 so far (-1 before any validation)
    metrics       the last validation result ({} before any)

``load_checkpoint`` also takes a sharded checkpoint folder (``last.dcp`` of an fsdp run, see
tubevit.io.sharded; consolidated into one process, weights and metadata only) and a run folder
(its newest ``last.pt`` or ``last.dcp``). ``model_from_checkpoint`` rebuilds the model from ``config["model"]`` and loads it strictly;
``check_classes`` compares the class counts of a run with those of a checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from tubevit.io import TRAINING_CHECKPOINT, ModelFileError, atomic_save, build_model, read_model_file, save_checkpoint
from tubevit.io.files import atomic_write_text
from tubevit.io.model_file import architecture_diff, config_from_meta, latest_in_run
from tubevit.io.schema import FORMAT
from tubevit.model.config import ModelConfig
from tubevit.model.tubevit import TubeViT

__all__ = [
    "FORMAT", "atomic_save", "atomic_write_text", "capture_rng", "check_architecture", "check_classes",
    "latest_in_run", "load_checkpoint", "model_config_of", "model_from_checkpoint", "remove_stale_temporaries",
    "restore_rng", "save_checkpoint",
]


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files (``.NAME.tmpPID``) that a killed process left in ``folder``: those
    of a process that no longer runs (a live one may be writing). Returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        pid = tmp.name.rsplit(".tmp", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def load_checkpoint(path: str | Path, map_location="cpu", *, reader: str = "tubevit train --resume") -> dict:
    """The checkpoint dict of a training checkpoint (checksum verified); a one-line error for a
    missing file or another kind of file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found; pass the last.pt or best.pt of a training run")
    mf = read_model_file(path, reader=reader, mmap=False)
    if mf.kind != TRAINING_CHECKPOINT:
        raise ModelFileError(f"{path} (given to {reader}) is {mf.describe()}, not a training checkpoint "
                             "(last.pt / best.pt of tubevit train)")
    ckpt = dict(mf.raw)
    if map_location not in (None, "cpu"):
        ckpt["model"] = {k: v.to(map_location) for k, v in ckpt["model"].items()}
    return ckpt


def model_config_of(ckpt: Mapping) -> ModelConfig:
    return config_from_meta(ckpt.get("model_config") or ckpt["config"]["model"], "the checkpoint")


def model_from_checkpoint(ckpt_or_path, map_location="cpu") -> tuple[TubeViT, dict]:
    """``(model in eval mode, checkpoint dict)``; the state dict is loaded strictly."""
    if isinstance(ckpt_or_path, (str, Path)):
        mf = read_model_file(ckpt_or_path, reader="model_from_checkpoint")
        return build_model(mf, reader="model_from_checkpoint"), dict(mf.raw or {})
    ckpt = ckpt_or_path
    model = TubeViT(model_config_of(ckpt))
    model.load_state_dict(ckpt["model"], strict=True)
    return model.eval(), ckpt


def check_architecture(ckpt: Mapping, model_cfg: ModelConfig, where: str) -> None:
    """Raise, naming every field that differs (e.g. ``depth 2 vs 4``), when the checkpoint's model
    is not the configured one (resuming with other model options)."""
    diff = architecture_diff(model_config_of(ckpt), model_cfg)
    if diff:
        raise ValueError(f"{where} was trained with another model ({', '.join(diff)}; checkpoint vs now); resume "
                         "with the model options it was trained with (its config.yaml), or start a new run in "
                         "another --out directory")


def check_classes(ckpt: Mapping, num_classes: Mapping[str, int], where: str = "the checkpoint") -> None:
    """Raise if a head of the run has a different class count than the checkpoint's head."""
    saved = dict(model_config_of(ckpt).num_classes)
    for head, n in num_classes.items():
        if head in saved and int(saved[head]) != int(n):
            raise ValueError(
                f"head {head!r} has {n} classes in the data but {saved[head]} in {where}; use the "
                f"data the checkpoint was trained on, start a new run in another --out directory, "
                f"or give the classes file that matches"
            )
    missing = sorted(set(num_classes) - set(saved))
    if missing:
        raise ValueError(
            f"the data has heads {sorted(num_classes)} but {where} has {sorted(saved)}; the sources' "
            f"names (data.video.name, data.image.name) must match the checkpoint's heads, or start "
            f"a new run in another --out directory"
        )


def capture_rng() -> dict:
    state = np.random.get_state()
    rng = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(state[1].astype(np.int64)), "pos": int(state[2]),
                  "has_gauss": int(state[3]), "cached": float(state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: Mapping) -> None:
    torch.set_rng_state(rng["torch"].cpu())
    n = rng["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
