"""Experiment trackers behind optional extras: TensorBoard, Weights & Biases, MLflow. None is
required; ``trackers: [wandb, mlflow, tensorboard]`` in the config turns them on, and a tracker
whose package is missing stops the run before its first step with a one-line error naming what
to install. Each receives the same records as ``metrics.jsonl`` (numbers only), on rank 0.

A resumed run continues the same tracker run: the W&B run id and MLflow run id are kept in
``OUT/trackers.json``. W&B honours its own ``WANDB_MODE`` (``offline`` for machines without
network); MLflow logs to ``OUT/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Mapping

__all__ = ["TRACKERS", "Tracker", "build_trackers", "check_trackers", "flatten"]

from tubevit.configs.schema import TRACKER_NAMES

# name -> (module imported, what to install); the names are the config's choices.
TRACKERS = {
    "tensorboard": ("torch.utils.tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}
assert tuple(TRACKERS) == TRACKER_NAMES


def _import(name: str):
    module, package = TRACKERS[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"tracker {name!r} is configured but {package} is not installed; "
                         f"pip install -c constraints.txt {package} (or remove {name} from trackers)") from None


def check_trackers(names) -> None:
    """Fail before training on an unknown tracker or a missing package."""
    for n in names:
        if n not in TRACKERS:
            raise ValueError(f"unknown tracker {n!r}; trackers can be {sorted(TRACKERS)}")
        _import(n)


def flatten(d: Mapping, prefix: str = "") -> dict:
    """Nested config -> ``{"optim.lr": 5e-4, ...}`` (lists and dicts below as JSON text)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def _numbers(record: Mapping) -> dict:
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    def log(self, record: Mapping) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TensorBoard(Tracker):
    def __init__(self, out: Path, config: Mapping, ids: dict):
        self.writer = _import("tensorboard").SummaryWriter(str(out / "tb"))

    def log(self, record):
        for k, v in _numbers(record).items():
            self.writer.add_scalar(k, v, record.get("step", 0))

    def close(self):
        self.writer.close()


class WandB(Tracker):
    def __init__(self, out: Path, config: Mapping, ids: dict):
        self.wandb = _import("wandb")
        ids.setdefault("wandb", self.wandb.util.generate_id() if hasattr(self.wandb, "util") else os.urandom(4).hex())
        self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", "tubevit"), name=out.name, id=ids["wandb"],
                                   resume="allow", dir=str(out), config=dict(config))

    def log(self, record):
        self.run.log(_numbers(record), step=int(record.get("step", 0)))

    def close(self):
        self.run.finish()


class MLflow(Tracker):
    def __init__(self, out: Path, config: Mapping, ids: dict):
        self.mlflow = _import("mlflow")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            self.mlflow.set_tracking_uri((out / "mlruns").resolve().as_uri())
        resumed = "mlflow" in ids
        run = self.mlflow.start_run(run_id=ids.get("mlflow"), run_name=None if resumed else out.name)
        ids["mlflow"] = run.info.run_id
        if not resumed:  # MLflow refuses to change a logged parameter
            self.mlflow.log_params({k: str(v)[:500] for k, v in flatten(config).items()})

    def log(self, record):
        self.mlflow.log_metrics(_numbers(record), step=int(record.get("step", 0)))

    def close(self):
        self.mlflow.end_run()


_CLASSES = {"tensorboard": TensorBoard, "wandb": WandB, "mlflow": MLflow}


def build_trackers(names, out: str | Path, config: Mapping, *, resume: bool) -> list[Tracker]:
    """The configured trackers, continuing the runs of ``OUT/trackers.json`` when resuming."""
    out = Path(out)
    ids_path = out / "trackers.json"
    ids = json.loads(ids_path.read_text()) if resume and ids_path.is_file() else {}
    made = [_CLASSES[n](out, config, ids) for n in dict.fromkeys(names)]
    if made:
        tmp = ids_path.with_name(f".{ids_path.name}.tmp")
        tmp.write_text(json.dumps(ids))
        os.replace(tmp, ids_path)
    return made
