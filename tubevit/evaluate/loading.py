"""Loading a trained model for evaluation and prediction.

The checkpoint is read with ``torch.load(weights_only=True)`` (no pickled code is ever executed;
an unreadable file is one clear ``ValueError``), and the model is rebuilt by the training engine's
``tubevit.engine.checkpoint.model_from_checkpoint`` (strict state-dict load). The contract
(``tubevit-checkpoint/1``, see tubevit/engine/checkpoint.py):

    {"model": state_dict, "config": TrainConfig.to_dict(), "classes": {head: [names]}, ...}

``config`` holds ``preset``, ``model`` (a ``ModelConfig`` dict, which fixes the architecture and
every head's class count) and ``data`` (``frames``, ``stride``, ``fps``, ``size``, ``decoder``,
per-source ``name``). Files from elsewhere are read by a fallback here: a flat ``ModelConfig``
dict under ``config`` or ``model_config``, ``state_dict``/``model_state`` for the weights,
``class_names`` for the names, ``module.``/``_orig_mod.`` key prefixes (DDP, ``torch.compile``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from tubevit.model import ModelConfig, TubeViT

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


def _strip(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def _model_config(config: dict, ckpt: dict) -> ModelConfig:
    raw = None
    if isinstance(config.get("model"), dict):
        raw = config["model"]
    elif isinstance(ckpt.get("model_config"), dict):
        raw = ckpt["model_config"]
    elif config and "width" in config:
        raw = config
    if raw is None:
        raise ValueError("the checkpoint has no model configuration (config.model); was it written by tubevit train?")
    return ModelConfig.from_dict(dict(raw))


def _classes(ckpt: dict, config: dict, model: TubeViT) -> dict[str, list[str]]:
    stored = ckpt.get("classes", ckpt.get("class_names"))
    heads = dict(model.cfg.num_classes)
    out: dict[str, list[str]] = {}
    if isinstance(stored, dict):
        for h, names in stored.items():
            if names:
                out[str(h)] = [str(n) for n in names]
    elif isinstance(stored, (list, tuple)) and stored and len(heads) == 1:
        out[next(iter(heads))] = [str(n) for n in stored]
    for h, k in heads.items():
        if h not in out:
            out[h] = [str(i) for i in range(int(k))]
        elif len(out[h]) != int(k):
            raise ValueError(f"checkpoint: head {h!r} has {k} outputs but {len(out[h])} class names")
    return out


def load_model(path, *, device="cpu") -> LoadedModel:
    """Build the model stored in checkpoint ``path`` (eval mode, on ``device``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; pass the last.pt or best.pt of a tubevit train run")
    ckpt = _read(path)  # weights_only=True; any failure becomes one clear ValueError
    try:
        from tubevit.engine.checkpoint import model_from_checkpoint  # the trainer's own loader
    except ImportError:
        model_from_checkpoint = None
    if model_from_checkpoint is not None and isinstance(ckpt.get("config"), dict) and "model" in ckpt["config"]:
        try:
            model, _ = model_from_checkpoint(ckpt)
        except (RuntimeError, KeyError, TypeError) as err:
            raise ValueError(f"checkpoint {path} does not match its own model config: {err}") from None
    else:
        config = ckpt.get("config") or {}
        cfg = _model_config(config if isinstance(config, dict) else {}, ckpt)
        model = TubeViT(cfg)
        state = ckpt.get("model", ckpt.get("state_dict", ckpt.get("model_state")))
        if not isinstance(state, dict):
            raise ValueError(f"checkpoint {path} holds no model weights (expected a 'model' state dict)")
        missing, unexpected = model.load_state_dict(_strip(state), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {path} does not match its own model config: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
    config = ckpt.get("config") or {}
    model = model.to(device).eval()
    return LoadedModel(model, config if isinstance(config, dict) else {}, _classes(ckpt, config, model), path,
                       {k: ckpt[k] for k in ("step", "epoch", "metrics") if k in ckpt})


def _read(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad checkpoint for the user
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"cannot read checkpoint {path} (not a tubevit checkpoint, or damaged): "
                         f"{type(err).__name__}: {first}") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint {path} is not a dict (got {type(ckpt).__name__})")
    return ckpt

