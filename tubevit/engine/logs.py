"""Run records on rank 0: ``OUT/metrics.jsonl`` (one JSON object per log or evaluation), the
optional trackers (tubevit.engine.trackers: TensorBoard, W&B, MLflow), and PNG plots of the loss and accuracy curves drawn from the JSONL
at the end of a run (``plot_metrics`` works on any finished or interrupted run directory)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

__all__ = ["MetricsLog", "plot_metrics", "read_metrics"]

log = logging.getLogger(__name__)


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill: ignore it
                continue
    return rows


def _finite(v):
    """NaN and infinities are not JSON: they are written as ``null`` (a value that could not be had)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _dumps(record: dict) -> str:
    return json.dumps(_finite(record), allow_nan=False)


class MetricsLog:
    """Appends records to ``metrics.jsonl``; on resume, drops records past the resumed step
    (they belong to the part of the killed run that is being redone)."""

    def __init__(self, out: Path, *, resume_step: int | None = None, trackers=(), config=None):
        self.path = Path(out) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        from tubevit.engine.checkpoint import atomic_write_text

        # Atomic: a kill or a full disk during the rewrite keeps the old file, never an empty one.
        if resume_step is None:
            atomic_write_text("", self.path)
        else:
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_text("".join(_dumps(r) + "\n" for r in kept), self.path)
        from tubevit.engine.trackers import build_trackers

        self.trackers = build_trackers(trackers, out, config or {}, resume=resume_step is not None)

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(_dumps(record) + "\n")
        for t in self.trackers:
            t.log(record)

    def close(self) -> None:
        for t in self.trackers:
            t.close()


def plot_metrics(out: str | Path) -> list[Path]:
    """Draw ``loss.png`` (training loss per source, keys ``loss/<source>``) and ``accuracy.png``
    (validation top-1/top-5 per source, keys ``val/<source>/top1``) from ``out/metrics.jsonl``;
    returns the files written."""
    out = Path(out)
    rows = read_metrics(out / "metrics.jsonl")
    written = []
    train = [r for r in rows if "loss" in r]
    if train:
        keys = sorted({k for r in train for k in r if k.startswith("loss/")}) or ["loss"]
        written.append(_plot_series(out / "loss.png", train, keys, "training loss",
                                    label=lambda k: k.removeprefix("loss/")))
    evals = [r for r in rows if "val_top1" in r]
    if evals:
        keys = sorted({k for r in evals for k in r if k.startswith("val/") and k.rsplit("/", 1)[-1] in ("top1", "top5")})
        written.append(_plot_series(out / "accuracy.png", evals, keys or ["val_top1", "val_top5"],
                                    "validation accuracy", label=lambda k: k.removeprefix("val/").replace("val_", ""),
                                    marker="o", ylim=(0, 1)))
    return written


def _plot_series(path: Path, rows: list[dict], keys: list[str], ylabel: str, *, label, marker=None, ylim=None) -> Path:
    """One line per key over ``step`` (non-finite points left out), saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if r.get(k) is not None and math.isfinite(r[k])]
        if pts:
            ax.plot(*zip(*pts), marker=marker, label=label(k))
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
