"""Confusion-matrix picture (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["plot_confusion"]


def plot_confusion(confusion, class_names: Sequence[str], path, *, title: str = "", normalize: bool = True) -> Path:
    """Write ``confusion`` (``[K, K]``, rows true, columns predicted) as a PNG with class names.

    ``normalize``: colour by row fraction (per-class recall), and print counts in the cells when
    K <= 30. Large K (Kinetics-400) gives an unlabelled heat map (names would be unreadable).
    The file is written to a temporary name and renamed, so a reader never sees half a PNG.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    m = np.asarray(confusion, dtype=np.float64)
    k = m.shape[0]
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix must be square, got {m.shape}")
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}-class confusion matrix")
    shown = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalize else m
    side = min(max(4.0, 0.45 * k + 2.5), 30.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    try:
        im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "videos")
        if k <= 60:
            ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8 if k > 15 else 9)
            ax.set_yticks(range(k), names, fontsize=8 if k > 15 else 9)
        if k <= 30:
            for i in range(k):
                for j in range(k):
                    if m[i, j]:
                        ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                                color="white" if shown[i, j] > 0.5 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title or "confusion matrix")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.png")
        fig.savefig(tmp, dpi=100)
        tmp.replace(path)
    finally:
        plt.close(fig)
    return path
