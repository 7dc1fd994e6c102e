"""Loading a trained model for evaluation and prediction: any whole-model file (a training
checkpoint, an exported ``.safetensors``, a save_pretrained folder) through :mod:`tubevit.io`
(safe loading, checksum, shapes checked before building, one-line errors). This module only adds
what evaluation needs on top: the class names of every head and the clip settings and
normalisation the model was trained with (the file's ``preprocessing``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tubevit.io import Preprocessing, build_model, read_model_file
from tubevit.model import TubeViT

__all__ = ["LoadedModel", "load_model"]


@dataclass
class LoadedModel:
    model: TubeViT
    config: dict  # the resolved training config stored in the file (may be {})
    classes: dict[str, list[str]]  # head -> class names (names "0".."K-1" if none were stored)
    path: Path
    extra: dict = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

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


def load_model(path, *, device="cpu", reader: str = "tubevit eval/predict --checkpoint") -> LoadedModel:
    """Build the model stored in ``path`` (eval mode, on ``device``)."""
    mf = read_model_file(path, reader=reader)
    model = build_model(mf, reader=reader)
    m = mf.meta
    extra = {k: m.provenance[k] for k in ("step", "epoch") if k in m.provenance}
    if mf.raw is not None and "metrics" in mf.raw:
        extra["metrics"] = mf.raw["metrics"]
    return LoadedModel(model.to(device).eval(), dict(m.train_config or {}), dict(model.class_names), Path(path),
                       extra, m.preprocessing)
