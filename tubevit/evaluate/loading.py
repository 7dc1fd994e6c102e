"""Loading a trained model for evaluation and prediction.

The checkpoint is read and the model rebuilt by the training engine
(``tubevit.engine.checkpoint``: ``torch.load(weights_only=True)``, so no pickled code is ever
executed; strict state-dict load; an unreadable file is one clear ``ValueError``). This module
only adds what evaluation needs on top: the class names of every head and the data settings the
model was trained with (``config.data``: ``frames``, ``stride``, ``fps``, ``size``, ``decoder``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tubevit.engine.checkpoint import load_checkpoint, model_from_checkpoint
from tubevit.model import TubeViT

__all__ = ["LoadedModel", "load_model"]


@dataclass
class LoadedModel:
    model: TubeViT
    config: dict  # the resolved training config stored in the checkpoint (may be {})
    classes: dict[str, list[str]]  # head -> class names (names "0".."K-1" if none were stored)
    path: Path
    extra: dict = field(default_factory=dict)

    def head(self, name: str | None = None, prefer: str = "video") -> str:
        """Resolve the head to evaluate: ``name``, else the only head, else ``prefer``."""
        names = self.model.head_names
        if name is not None:
            if name not in names:
                raise ValueError(f"unknown head {name!r}; the checkpoint has heads {names} (use --head)")
            return name
        if len(names) == 1:
            return names[0]
        if prefer in names:
            return prefer
        raise ValueError(f"the checkpoint has several heads {names}; choose one with --head NAME")

    def data_config(self) -> dict:
        return dict(self.config.get("data", {})) if isinstance(self.config, dict) else {}


def _classes(ckpt: dict, model: TubeViT) -> dict[str, list[str]]:
    stored = ckpt.get("class_names") or {}
    out: dict[str, list[str]] = {}
    for h, k in model.cfg.num_classes.items():
        names = [str(n) for n in stored.get(h, [])] or [str(i) for i in range(int(k))]
        if len(names) != int(k):
            raise ValueError(f"checkpoint: head {h!r} has {k} outputs but {len(names)} class names")
        out[h] = names
    return out


def load_model(path, *, device="cpu") -> LoadedModel:
    """Build the model stored in checkpoint ``path`` (eval mode, on ``device``)."""
    ckpt = load_checkpoint(path)
    try:
        model, _ = model_from_checkpoint(ckpt)
    except (RuntimeError, KeyError, TypeError) as err:
        raise ValueError(f"checkpoint {path} does not match its own model config: {err}") from None
    config = ckpt["config"] if isinstance(ckpt["config"], dict) else {}
    return LoadedModel(model.to(device).eval(), config, _classes(ckpt, model), Path(path),
                       {k: ckpt[k] for k in ("step", "epoch", "metrics") if k in ckpt})
