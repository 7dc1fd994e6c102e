"""Resolving a :class:`TrainConfig`: preset defaults <- YAML file <- shortcut flags <- ``--set``.

Every assignment is a dotted key (``optim.lr``, ``data.video.train_list``, ``model.drop_path``)
checked against the dataclass fields: an unknown key is an error listing the valid keys at that
level, and a value of the wrong type is an error naming the expected type. ``--set`` values are
parsed as YAML (``--set optim.lr=1e-3``, ``--set model.tubes=two_tube``,
``--set 'model.num_classes={video: 10}'``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from tubevit.configs.schema import SOURCE_KINDS, TRACKER_NAMES, TrainConfig, default_config
from tubevit.defaults import AGGREGATIONS, DECODERS, INFLATE_STRATEGIES, PRECISION_CHOICES, SHORT_POLICIES
from tubevit.model.presets import list_models

__all__ = ["load_config", "parse_set", "apply_updates", "validate", "save_config", "config_from_dict"]


def parse_set(item: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", yaml-parsed value)``."""
    if "=" not in item:
        raise ValueError(f"--set expects KEY=VALUE (e.g. --set optim.lr=1e-3), got {item!r}")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        raise ValueError(f"--set {key}: cannot parse {text!r} as YAML ({err})") from None
    return key, value


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value, tp, key: str):
    """Check ``value`` against the annotation ``tp``; return it (ints widen to float, numbers
    become strings for str fields)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, key)
            except ValueError:
                pass
        raise ValueError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        if dataclasses.is_dataclass(item):  # e.g. data.sources: each entry a checked mapping
            out = []
            for i, v in enumerate(value):
                if dataclasses.is_dataclass(v):
                    v = dataclasses.asdict(v)
                if not isinstance(v, Mapping):
                    raise ValueError(f"{key}[{i}]: expected a mapping of "
                                     f"{', '.join(f.name for f in dataclasses.fields(item))}, got {v!r}")
                entry = item()
                for k, x in v.items():
                    _assign(entry, [str(k)], x, f"{key}[{i}].{k}")
                out.append(entry)
            return out
        return list(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads a path like 2024 as a number
        if value is None:
            return ""
        raise ValueError(f"{key}: expected a string, got {value!r}")
    return value


def _hints(obj) -> dict:
    return typing.get_type_hints(type(obj))


def _assign(obj, parts: list[str], value, full: str) -> None:
    name = parts[0]
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        where = full[: len(full) - len(".".join(parts))].rstrip(".")
        prefix = f"{where}." if where else ""
        raise ValueError(
            f"unknown config key {full!r}; valid keys{' under ' + where if where else ''}: "
            f"{', '.join(prefix + k for k in fields)}"
        )
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if len(parts) > 1:
            _assign(current, parts[1:], value, full)
            return
        if not isinstance(value, Mapping):
            raise ValueError(f"{full}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(current))}")
        for k, v in value.items():
            _assign(current, [str(k)], v, f"{full}.{k}")
        return
    if len(parts) > 1:
        raise ValueError(f"{full}: {'.'.join(parts[:1])} is a value, not a section")
    setattr(obj, name, _coerce(value, _hints(obj)[name], full))


def apply_updates(cfg: TrainConfig, updates: Iterable[tuple[str, Any]]) -> TrainConfig:
    """Apply dotted assignments in order (later wins)."""
    for key, value in updates:
        _assign(cfg, key.split("."), value, key)
    return cfg


def validate(cfg: TrainConfig) -> TrainConfig:
    """Range and choice checks that need no files; each message names the fix."""
    from tubevit.model.tokenizer import TOKENIZERS
    from tubevit.model.tubes import get_tube_set

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(msg)

    need(cfg.preset in list_models(), f"preset {cfg.preset!r} is unknown; use --model with one of {list_models()}")
    need(cfg.precision in PRECISION_CHOICES,
         f"precision {cfg.precision!r}: use --precision with one of {PRECISION_CHOICES}")
    need(cfg.eval.aggregation in AGGREGATIONS, f"eval.aggregation must be one of {AGGREGATIONS}")
    need(cfg.data.short in SHORT_POLICIES,
         f"data.short {cfg.data.short!r}: use --set data.short= one of {SHORT_POLICIES}")
    need(cfg.data.decoder in DECODERS, f"data.decoder {cfg.data.decoder!r}: use --set data.decoder= one of {DECODERS}")
    need(cfg.init_inflate in INFLATE_STRATEGIES,
         f"init_inflate {cfg.init_inflate!r}: use --inflate with one of {INFLATE_STRATEGIES}")
    need(0 <= cfg.data.max_fail_fraction <= 1, "data.max_fail_fraction must be in [0, 1] (--set data.max_fail_fraction=F)")
    need(cfg.data.max_frame_pixels > 0, "data.max_frame_pixels must be > 0 (--set data.max_frame_pixels=N)")
    need(cfg.model.tokenizer in TOKENIZERS, f"model.tokenizer must be one of {TOKENIZERS}")
    get_tube_set(cfg.model.tubes)  # raises with the valid names
    need(cfg.batch_size >= 1, "batch_size must be >= 1 (--batch-size)")
    need(cfg.grad_accum >= 1, "grad_accum must be >= 1")
    need(cfg.steps >= 0 and cfg.epochs >= 0, "steps and epochs must be >= 0")
    for key, value in _flat_numbers(cfg.to_dict()):
        need(math.isfinite(value), f"{key} = {value} is not a finite number; give a finite value "
                                   f"(--set {key}=...)")
    need(0 < cfg.optim.lr <= MAX_LR, f"optim.lr = {cfg.optim.lr:g} is not a usable learning rate: it must be > 0 "
                                     f"and at most {MAX_LR:g} (AdamW peaks are typically 1e-4 .. 1e-3); pass e.g. "
                                     f"--lr 1e-3")
    need(cfg.optim.lr_scaling in ("sqrt", "linear", "none"), "optim.lr_scaling must be one of sqrt, linear, none")
    need(cfg.optim.lr_ref_batch >= 0, "optim.lr_ref_batch must be >= 0 (0: the lr is used as given)")
    need(0 <= cfg.optim.warmup_fraction < 1, "optim.warmup_fraction must be in [0, 1)")
    need(cfg.optim.clip_grad >= 0, "optim.clip_grad must be >= 0 (0 disables clipping)")
    bad = [t for t in cfg.trackers if t not in TRACKER_NAMES]
    need(not bad, f"unknown tracker(s) {bad}; trackers can be {list(TRACKER_NAMES)}")
    need(0 < cfg.optim.layer_decay <= 1, "optim.layer_decay must be in (0, 1] (1 disables it; e.g. 0.75)")
    need(0 <= cfg.optim.ema_decay < 1, "optim.ema_decay must be in [0, 1) (0 disables the EMA; e.g. 0.9998)")
    need(0 <= cfg.label_smoothing < 1, "label_smoothing must be in [0, 1)")
    need(cfg.mixup >= 0 and cfg.cutmix >= 0, "mixup and cutmix alphas must be >= 0 (0 disables)")
    need(cfg.log_every >= 1, "log_every must be >= 1")
    need(cfg.ckpt_every >= 0 and cfg.eval.every >= 0, "ckpt_every and eval.every must be >= 0")
    need(cfg.data.frames >= 1 and cfg.data.size >= 1, "data.frames and data.size must be >= 1")
    need(cfg.data.workers >= -1, "data.workers must be >= 0, or -1 to choose from the machine (--workers)")
    need(cfg.threads >= -1, "threads must be >= 1, 0 for all cores, or -1 to choose from the machine (--threads)")
    for key in ("mean", "std"):
        v = getattr(cfg.data, key)
        need(not v or (len(v) == cfg.model.in_chans and all(isinstance(x, (int, float)) for x in v)),
             f"data.{key} must be {cfg.model.in_chans} numbers (one per channel), e.g. --set data.{key}=[0.5,0.5,0.5], "
             f"got {v}")
    need(all(x > 0 for x in cfg.data.std), f"data.std must be > 0, got {cfg.data.std}")
    need(bool(cfg.data.mean) == bool(cfg.data.std), "set data.mean and data.std together (or neither)")
    ra = cfg.data.randaugment_magnitude
    need(ra == "auto" or (not isinstance(ra, str) and 0 <= ra <= 30),
         f"data.randaugment_magnitude must be 'auto' or a number in [0, 30] (the paper's is 10), got {ra!r}")
    if cfg.scale_from:
        need(bool(cfg.init_from),
             f"scale_from {cfg.scale_from!r} needs the large image ViT whose blocks the scaled model takes: "
             f"pass --init-from LARGE_IMAGE_VIT (timm / Hugging Face / Google .npz, of the --model size)")
        need(cfg.model.gate_layer in (None, cfg.model.freeze_until),
             f"with scale_from the gated shortcut sits at the first trained block (model.freeze_until "
             f"{cfg.model.freeze_until}), not at model.gate_layer {cfg.model.gate_layer}; use --freeze-until S "
             f"(with --no-gate for none)")
    d = cfg.data
    if d.sources:
        given = [f"data.{k}.train_list" for k in ("video", "image") if getattr(d, k).train_list]
        need(not given, f"data.sources is set, so {' and '.join(given)} (--train-list / --image-train-list) "
                        f"must not be: list every dataset in data.sources, or use the shorthand alone")
        for i, s in enumerate(d.sources):
            need(bool(s.name), f"data.sources[{i}]: give each source a name (its head)")
            need(s.kind in SOURCE_KINDS, f"data.sources[{i}] ({s.name}): kind must be one of {SOURCE_KINDS}, "
                                         f"got {s.kind!r}")
            need(bool(s.train_list), f"data.sources[{i}] ({s.name}): train_list is required")
        names = [s.name for s in d.sources]
    else:
        names = [s.name for s in (d.video, d.image)]
        d.video.kind, d.image.kind = "video", "image"
    need(all(names) and len(set(names)) == len(names),
         f"source names (heads) must be distinct and non-empty, got {names}")
    for s in [*d.sources, d.video, d.image]:
        need(s.weight >= 0 and s.batch_size >= 0 and s.num_classes >= 0,
             f"{s.name}: weight, batch_size and num_classes must be >= 0")
        need(s.frames >= 0 and s.stride >= 0 and s.size >= 0 and (s.fps >= 0 or s.fps == -1),
             f"{s.name}: frames, stride and size must be >= 0 (0 = the run's data.*), fps >= 0 or -1 (the run's)")
    return cfg


def config_from_dict(d: Mapping) -> TrainConfig:
    """A config saved by :func:`save_config` (or stored in a checkpoint) back to a dataclass."""
    cfg = default_config(d.get("preset", "tubevit_base"))
    return apply_updates(cfg, list(d.items()))


def load_config(
    path: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    recipe: str | None = None,
) -> TrainConfig:
    """Defaults of the preset <- the named ``recipe`` (tubevit.configs.recipes) <- YAML ``path``
    <- ``overrides`` (dotted keys, e.g. from shortcut flags) <- ``sets`` (``"a.b=value"``
    strings). Validated before it is returned."""
    updates: list[tuple[str, Any]] = []
    by_preset: dict = {}
    if recipe:
        from tubevit.configs.recipes import recipe_updates

        updates, by_preset = recipe_updates(recipe)
    n_recipe = len(updates)
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} does not exist; pass an existing YAML file to --config")
        raw = yaml.safe_load(p.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"config file {p} must hold a mapping of sections (model, data, optim, ...)")
        updates += [(str(k), v) for k, v in raw.items()]  # sections recurse in _assign
    updates += list((overrides or {}).items())
    updates += [parse_set(s) for s in sets]
    presets = [v for k, v in updates if k == "preset"]
    preset = str(presets[-1]) if presets else "tubevit_base"
    if preset in by_preset:  # the recipe's settings for this size, still under --config / flags / --set
        updates[n_recipe:n_recipe] = [(str(k), v) for k, v in (by_preset[preset] or {}).items()]
    cfg = default_config(preset)
    return validate(apply_updates(cfg, updates))


# Above this a peak AdamW learning rate only sends the weights to inf/NaN (--lr 1e39 did, silently).
MAX_LR = 10.0


def _flat_numbers(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat_numbers(v, f"{prefix}{k}.")
        elif isinstance(v, float):
            yield f"{prefix}{k}", v


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    # Atomic (temporary file + fsync + rename): a kill or a full disk while a resumed run
    # rewrites config.yaml leaves the old file, never an empty one.
    from tubevit.io.files import atomic_write_text

    return atomic_write_text(text, path)
