"""The one metadata schema of every model file this project writes (versioned).

Every file kind carries the same fields (a training checkpoint as dict entries, a ``.safetensors``
file and a ``save_pretrained`` folder as JSON strings in the safetensors header):

    format         "tubevit/2" (this schema; older files are read, see LEGACY_FORMATS)
    kind           what the file holds (KINDS)
    model_config   the ModelConfig as a dict: the file rebuilds its model alone
    class_names    {head: [class names]}, one entry per head ({} when no head was trained)
    preprocessing  mean, std and the clip settings the weights expect (Preprocessing): what timm
                   calls pretrained_cfg; eval and predict use it, training writes what it used
    provenance     step, epoch, the source file, source format, tubevit version, notes
    checksum       "sha256:..." over the model tensors (tubevit.io.checksum), verified on load
    train_config   the resolved training config (training checkpoints and their exports)

Written by :mod:`tubevit.io.files` only; read back by :func:`meta_from_strings` /
:func:`meta_from_checkpoint`, which also accept the two formats of earlier versions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from tubevit.defaults import SHORT_POLICIES
from tubevit.io.errors import ModelFileError

SCHEMA_VERSION = 2
FORMAT = f"tubevit/{SCHEMA_VERSION}"
# Earlier formats still read: the training checkpoint / export of version 1, and the bare
# "tubevit" of `tubevit convert` outputs (model config under "config").
LEGACY_FORMATS = ("tubevit-checkpoint/1", "tubevit")

TRAINING_CHECKPOINT = "training-checkpoint"  # last.pt / best.pt: weights + optimizer, RNG, data state
WEIGHTS = "weights"                          # a whole model for sharing (.safetensors or folder)
CONVERTED = "converted"                      # an image ViT converted by `tubevit convert` (no pool/heads)
KINDS = (TRAINING_CHECKPOINT, WEIGHTS, CONVERTED)

# ImageNet statistics: the default of this project's training and of most timm weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Google ViT / AugReg (.npz) and google/vit-* on the Hugging Face hub: inputs in [-1, 1].
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass
class Preprocessing:
    """What the weights expect of their input (pixels in [0, 1] are normalised ``(x - mean) / std``)."""

    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    # Clip settings of training (None: not known, e.g. a converted image ViT; the reader's defaults apply).
    frames: int | None = None
    size: int | None = None
    stride: float | None = None
    fps: float | None = None
    # data.short of training (tubevit.defaults.SHORT_POLICIES; None: not known, the reader's default).
    short: str | None = None
    # Where mean/std came from (imagenet default, data.mean, timm, google npz, preprocessor_config.json).
    source: str = "imagenet default"

    def __post_init__(self):
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if len(self.mean) != len(self.std) or not self.mean or any(s <= 0 for s in self.std):
            raise ModelFileError(f"preprocessing: mean {list(self.mean)} and std {list(self.std)} must have one "
                                 "value per channel and std > 0")
        if self.short is not None and self.short not in SHORT_POLICIES:
            raise ModelFileError(f"preprocessing: short {self.short!r} is not one of {SHORT_POLICIES}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "Preprocessing":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_train_config(cls, config: Mapping | None, **extra) -> "Preprocessing":
        """From a training config's ``data`` section (older checkpoints carry only that)."""
        data = dict((config or {}).get("data") or {})
        mean, std = data.get("mean"), data.get("std")
        fps = data.get("fps") or None
        return cls(mean=mean or IMAGENET_MEAN, std=std or IMAGENET_STD, frames=data.get("frames"),
                   size=data.get("size"), stride=data.get("stride"), fps=fps, short=data.get("short"),
                   source="data.mean" if mean else "imagenet default", **extra)


@dataclass
class ModelMeta:
    kind: str
    model_config: dict
    class_names: dict = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    provenance: dict = field(default_factory=dict)
    checksum: str | None = None
    train_config: dict | None = None
    format: str = FORMAT

    def to_strings(self) -> dict[str, str]:
        """The safetensors header metadata (string -> string)."""
        out = {
            "format": FORMAT, "kind": self.kind, "model_config": json.dumps(self.model_config),
            "class_names": json.dumps(self.class_names), "preprocessing": json.dumps(self.preprocessing.to_dict()),
            "provenance": json.dumps(self.provenance),
        }
        if self.checksum:
            out["checksum"] = self.checksum
        if self.train_config is not None:
            out["train_config"] = json.dumps(self.train_config)
        return out

    def to_json(self) -> dict:
        """The same fields as one JSON object (a folder's config.json)."""
        d = {k: json.loads(v) if k not in ("format", "kind", "checksum") else v for k, v in self.to_strings().items()}
        return d


def check_format(fmt: str | None, where: str) -> None:
    if fmt is None or fmt == FORMAT or fmt in LEGACY_FORMATS:
        return
    if fmt.startswith("tubevit/"):
        try:
            newer = int(fmt.split("/", 1)[1]) > SCHEMA_VERSION
        except ValueError:
            newer = False
        if newer:
            raise ModelFileError(f"{where} was written by a newer tubevit (format {fmt}, this one reads up to "
                                 f"{FORMAT}); upgrade tubevit to read it")
    raise ModelFileError(f"{where} has format {fmt!r}, which is not a tubevit model file format ({FORMAT})")


def _json(value: Any, key: str, where: str):
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{where}: metadata field {key!r} is not valid JSON ({err.msg}); the file is damaged "
                             "or was not written by tubevit") from None


def meta_from_strings(meta: Mapping[str, str], where: str) -> ModelMeta | None:
    """The schema from a safetensors header's metadata; ``None`` when it carries no tubevit model config
    (a plain image-ViT file)."""
    meta = dict(meta or {})
    fmt = meta.get("format")
    if "model_config" not in meta and not (fmt == "tubevit" and "config" in meta):
        if fmt is not None and fmt.startswith("tubevit"):
            raise ModelFileError(f"{where} says it is a tubevit file ({fmt}) but has no model_config; damaged?")
        return None
    check_format(fmt, where)
    if fmt == "tubevit":  # a `tubevit convert` output of version 1
        prov = {k: meta[k] for k in ("source", "source_format", "inflate") if k in meta}
        if "notes" in meta:
            prov["notes"] = _json(meta["notes"], "notes", where)
        return ModelMeta(CONVERTED, _json(meta["config"], "config", where), provenance=prov, format=fmt)
    if fmt == "tubevit-checkpoint/1":  # `tubevit export` of version 1: the training config under "config"
        train = _json(meta.get("config", "{}"), "config", where)
        return ModelMeta(WEIGHTS, _json(meta["model_config"], "model_config", where),
                         _json(meta.get("class_names", "{}"), "class_names", where),
                         Preprocessing.from_train_config(train), {"step": int(meta.get("step", 0))},
                         train_config=train, format=fmt)
    kind = meta.get("kind", WEIGHTS)
    if kind not in KINDS:
        raise ModelFileError(f"{where} is a tubevit file of unknown kind {kind!r} (known: {', '.join(KINDS)})")
    return ModelMeta(
        kind, _json(meta["model_config"], "model_config", where), _json(meta.get("class_names", "{}"), "class_names", where),
        Preprocessing.from_dict(_json(meta.get("preprocessing", "{}"), "preprocessing", where)),
        _json(meta.get("provenance", "{}"), "provenance", where), meta.get("checksum"),
        _json(meta["train_config"], "train_config", where) if "train_config" in meta else None, fmt,
    )


def meta_from_checkpoint(ckpt: Mapping, where: str) -> ModelMeta:
    """The schema from a training checkpoint dict (this version's or version 1's)."""
    check_format(ckpt.get("format"), where)
    config = ckpt.get("config") if isinstance(ckpt.get("config"), Mapping) else {}
    raw = ckpt.get("model_config") or config.get("model")
    if not isinstance(raw, Mapping):
        raise ModelFileError(f"{where} is a torch checkpoint without a tubevit model config (no 'model_config' "
                             "or config['model']); it is not a tubevit training checkpoint")
    prep = ckpt.get("preprocessing")
    preprocessing = Preprocessing.from_dict(prep) if prep else Preprocessing.from_train_config(config)
    prov = dict(ckpt.get("provenance") or {})
    for k in ("step", "epoch"):
        if k in ckpt:
            prov.setdefault(k, ckpt[k])
    return ModelMeta(TRAINING_CHECKPOINT, dict(raw), dict(ckpt.get("class_names") or {}), preprocessing, prov,
                     ckpt.get("checksum"), dict(config) if config else None, ckpt.get("format") or "tubevit-checkpoint/1")
