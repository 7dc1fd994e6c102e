"""One reader for every model file: :func:`read_model_file` tells the kind from the content (never
from the name alone) and returns a :class:`ModelFile`; :func:`check_shapes` compares a file's
tensor shapes with its model config *before* the model is built; :func:`build_model` builds it.

Kinds (``ModelFile.kind``):

* ``training-checkpoint``: ``last.pt`` / ``best.pt`` of ``tubevit train``;
* ``weights``: a whole TubeViT for sharing (``tubevit export`` ``.safetensors``, or a
  ``save_pretrained`` folder);
* ``converted``: an image ViT converted by ``tubevit convert`` (no trained pool or heads);
* ``image-vit``: a foreign file (timm / Hugging Face / Google weights), for ``convert``;
* ``hf-folder``: a Hugging Face ``save_pretrained`` folder (``config.json`` + weights), for ``convert``.

Folders that are not ``save_pretrained`` folders: a sharded checkpoint (``last.dcp`` of an FSDP
run, :mod:`tubevit.io.sharded`, consolidated into this process) reads as a training checkpoint,
and a run folder (``--out``) as its newest checkpoint (:func:`latest_in_run`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from tubevit.io import files
from tubevit.io.checksum import tensor_checksum, verify_checksum
from tubevit.io.errors import ModelFileError
from tubevit.io.schema import CONVERTED, FORMAT, TRAINING_CHECKPOINT, WEIGHTS, ModelMeta, meta_from_checkpoint, meta_from_strings
from tubevit.model.config import ModelConfig

IMAGE_VIT = "image-vit"
HF_FOLDER = "hf-folder"
# Keys a converted image ViT does not provide (new at load): readout, heads, gate.
NEW_PREFIXES = ("pool.", "heads.", "gate.")


@dataclass
class ModelFile:
    path: Path
    kind: str
    state_dict: dict | None            # the tensors (None: a foreign torch object, see ``raw``)
    meta: ModelMeta | None = None      # the schema (None for foreign files)
    raw: Any = None                    # a training checkpoint's whole dict, or a foreign torch object
    extra: dict = field(default_factory=dict)  # hf-folder: {"config": ..., "preprocessor": ...}; header metadata

    @property
    def is_tubevit(self) -> bool:
        return self.meta is not None

    def model_config(self) -> ModelConfig:
        return config_from_meta(self.meta.model_config, self.path)

    def describe(self) -> str:
        return {TRAINING_CHECKPOINT: "a tubevit training checkpoint", WEIGHTS: "tubevit model weights",
                CONVERTED: "an image ViT converted by tubevit convert (no trained pool or heads)",
                IMAGE_VIT: "an image-ViT checkpoint (timm / Hugging Face / Google), not a TubeViT",
                HF_FOLDER: "a Hugging Face model folder (an image ViT, not a TubeViT)"}.get(self.kind, self.kind)


def config_from_meta(raw: Mapping, where) -> ModelConfig:
    try:
        return ModelConfig.from_dict(dict(raw))
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{where}: its model config does not fit this tubevit ({err}); was it written by "
                             "a newer version?") from None


def _is_tubevit_checkpoint(obj) -> bool:
    return (isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping)
            and (isinstance(obj.get("model_config"), Mapping)
                 or (isinstance(obj.get("config"), Mapping) and isinstance(obj["config"].get("model"), Mapping))))


def read_model_file(path, *, reader: str, verify: bool = True, mmap: bool = True) -> ModelFile:
    """Read any model file (module doc). ``reader`` names the call, for the error messages. The
    checksum of a tubevit file is verified (``verify``); a file without one (older versions) loads.
    Torch files are memory-mapped (``mmap``): shapes are known before the data is read."""
    path = Path(path)
    if path.is_dir():
        from tubevit.io import sharded

        if sharded.is_sharded_checkpoint(path):
            # Consolidated into this process; DCP shards carry no checksum of the whole.
            return _checkpoint_file(path, sharded.consolidate(path), reader, verify=False)
        if not (path / files.CONFIG_NAME).is_file():
            found = latest_in_run(path)
            if found is None:
                raise ModelFileError(f"{path} (given to {reader}) holds no model file: neither a run folder "
                                     "(last.pt / a complete last.dcp), a sharded checkpoint folder, nor a "
                                     "save_pretrained folder (config.json + model.safetensors)")
            return read_model_file(found, reader=reader, verify=verify, mmap=mmap)
        return _read_folder(path, reader, verify)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (given to {reader}); give a last.pt / best.pt, a .safetensors "
                                "file or a save_pretrained folder")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path, reader, verify)
    if suffix == ".npz":
        return ModelFile(path, IMAGE_VIT, files.load_npz(path, reader=reader))
    if suffix in files.TORCH_SUFFIXES:
        obj = files.load_torch(path, reader=reader, mmap=mmap)
        if _is_tubevit_checkpoint(obj):
            return _checkpoint_file(path, obj, reader, verify)
        return ModelFile(path, IMAGE_VIT, None, raw=obj)
    raise ModelFileError(f"{path} (given to {reader}): unknown model file type {suffix!r}; use a .pt/.pth/.bin "
                         "checkpoint, .safetensors, .npz or a folder with config.json + model.safetensors")


def _checkpoint_file(path: Path, obj: Mapping, reader: str, verify: bool) -> ModelFile:
    where = f"{path} (given to {reader})"
    meta = meta_from_checkpoint(obj, where)
    sd = dict(obj["model"])
    if verify:
        verify_checksum(sd, meta.checksum, where)
    return ModelFile(path, TRAINING_CHECKPOINT, sd, meta, raw=obj)


def latest_in_run(run: Path) -> Path | None:
    """The newest of a run folder's ``last.pt`` and sharded ``last.dcp`` (None: neither)."""
    from tubevit.io import sharded

    run = Path(run)
    found = [p for p in (run / "last.pt",) if p.is_file()]
    dcp_dir = sharded.latest(run)
    if dcp_dir is not None:
        found.append(dcp_dir)
    return max(found, key=lambda p: (p / sharded.META if p.is_dir() else p).stat().st_mtime) if found else None


def _read_safetensors(path: Path, reader: str, verify: bool, *, header_meta: Mapping | None = None) -> ModelFile:
    where = f"{path} (given to {reader})"
    shapes, strings = files.read_safetensors_header(path, reader=reader)
    meta = meta_from_strings(header_meta if header_meta is not None else strings, where)
    if meta is not None:
        # Refuse a config far larger than the tensors before anything is read or built.
        check_shapes(meta.model_config, shapes, where, partial=meta.kind == CONVERTED)
    sd = files.load_safetensors(path, reader=reader)
    if meta is None:
        return ModelFile(path, IMAGE_VIT, sd, extra={"metadata": strings})
    if verify:
        verify_checksum(sd, meta.checksum, where)
    return ModelFile(path, meta.kind, sd, meta, extra={"metadata": strings})


def _read_folder(path: Path, reader: str, verify: bool) -> ModelFile:
    cfg_path = path / files.CONFIG_NAME
    if not cfg_path.is_file():
        raise ModelFileError(f"{path} (given to {reader}) is a folder without {files.CONFIG_NAME}; give a folder "
                             "written by save_pretrained (config.json + model.safetensors) or a model file")
    config = files.read_json(cfg_path, reader=reader)
    if config.get("model_type") == "tubevit" or str(config.get("format", "")).startswith("tubevit"):
        weights = path / files.WEIGHTS_NAME
        if not weights.is_file():
            raise ModelFileError(f"{path} (given to {reader}) has a tubevit config.json but no {files.WEIGHTS_NAME}")
        strings = {k: v if isinstance(v, str) else __import__("json").dumps(v) for k, v in config.items()
                   if k in ("format", "kind", "model_config", "class_names", "preprocessing", "provenance",
                            "checksum", "train_config")}
        return _read_safetensors(weights, reader, verify, header_meta=strings)
    # A Hugging Face folder: its weights are an image ViT for convert.
    candidates = [path / files.WEIGHTS_NAME, path / "pytorch_model.bin"]
    weights = next((c for c in candidates if c.is_file()), None)
    if weights is None:
        raise ModelFileError(f"{path} (given to {reader}) has a config.json but neither model.safetensors nor "
                             "pytorch_model.bin (sharded Hugging Face checkpoints are not read; merge them first)")
    inner = read_model_file(weights, reader=reader, verify=verify)
    pre = path / files.PREPROCESSOR_NAME
    preprocessor = files.read_json(pre, reader=reader) if pre.is_file() else None
    return ModelFile(path, HF_FOLDER, inner.state_dict, raw=inner.raw,
                     extra={"config": config, "preprocessor": preprocessor, "weights": str(weights)})


# --------------------------------------------------------------------------- shapes before building

def _depth_width(shapes: Mapping[str, tuple]) -> tuple[int | None, int | None]:
    blocks = [int(m[1]) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))]
    depth = 1 + max(blocks) if blocks else None
    norm = shapes.get("norm.weight")
    return depth, (int(norm[0]) if norm else None)


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """The state-dict shapes of a model of config ``cfg``, built on the meta device (no memory)."""
    from tubevit.model.tubevit import TubeViT

    with torch.device("meta"):
        model = TubeViT(ModelConfig.from_dict(cfg.to_dict()))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_shapes(model_config, shapes: Mapping[str, Iterable[int]], where: str, *, partial: bool = False) -> None:
    """Raise unless the tensors are exactly those of the model ``model_config`` describes (with
    ``partial``, the new keys pool/heads/gate may be missing). Depth and width are compared first,
    from the keys alone, so a config far larger than its tensors is refused before anything is built."""
    cfg = model_config if isinstance(model_config, ModelConfig) else config_from_meta(model_config, where)
    shapes = {k: tuple(v) for k, v in shapes.items()}
    depth, width = _depth_width(shapes)
    if (depth is not None and depth != cfg.depth) or (width is not None and width != cfg.width):
        raise ModelFileError(f"{where}: its config describes depth {cfg.depth}, width {cfg.width}, but its tensors "
                             f"are of depth {depth}, width {width}; the file is inconsistent (edited or damaged), "
                             "write it again")
    want = expected_shapes(cfg)
    missing = [k for k in want if k not in shapes and not (partial and k.startswith(NEW_PREFIXES))]
    unexpected = [k for k in shapes if k not in want]
    wrong = [f"{k} {list(shapes[k])} vs {list(want[k])}" for k in want if k in shapes and shapes[k] != want[k]]
    problems = []
    if missing:
        problems.append(f"missing {_preview(missing)}")
    if unexpected:
        problems.append(f"not in the model {_preview(unexpected)}")
    if wrong:
        problems.append(f"shape (file vs config) {'; '.join(wrong[:4])}" + (" ..." if len(wrong) > 4 else ""))
    if problems:
        raise ModelFileError(f"{where}: the tensors do not match its model config: {' | '.join(problems)}")


def _preview(keys, n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" ... (+{len(keys) - n} more)" if len(keys) > n else "")


def build_model(mf: ModelFile, *, reader: str):
    """The TubeViT of a whole-model file (training checkpoint or weights), strictly loaded, eval mode.
    ``model.pretrained_cfg`` and ``model.class_names`` are set from the file."""
    from tubevit.model.tubevit import TubeViT

    where = f"{mf.path} (given to {reader})"
    if mf.kind not in (TRAINING_CHECKPOINT, WEIGHTS):
        hint = ("load it with tubevit.create_model(NAME, pretrained=PATH, num_classes=...) or train --init-from "
                "PATH" if mf.kind in (CONVERTED, IMAGE_VIT, HF_FOLDER) else "")
        raise ModelFileError(f"{where} is {mf.describe()}; {reader} needs a whole TubeViT (a training checkpoint, "
                             f"an export or a save_pretrained folder){'; ' + hint if hint else ''}")
    cfg = mf.model_config()
    check_shapes(cfg, {k: v.shape for k, v in mf.state_dict.items()}, where)
    # Every tensor comes from the file, so skip the random init: build on the meta device, then
    # allocate. (A buffer outside the state dict would stay uninitialised: then build normally.)
    with torch.device("meta"):
        model = TubeViT(cfg)
    model = TubeViT(cfg) if any(True for _ in model.buffers()) else model.to_empty(device="cpu")
    model.load_state_dict(mf.state_dict, strict=True)
    attach_meta(model, mf.meta)
    return model.eval()


def attach_meta(model, meta: ModelMeta) -> None:
    """Give the model the file's preprocessing and class names (timm's ``pretrained_cfg``)."""
    names = {h: [str(n) for n in meta.class_names.get(h, [])] or [str(i) for i in range(int(k))]
             for h, k in model.cfg.num_classes.items()}
    for h, k in model.cfg.num_classes.items():
        if len(names[h]) != int(k):
            raise ModelFileError(f"head {h!r} has {k} outputs but the file lists {len(names[h])} class names")
    model.class_names = names
    model.preprocessing = meta.preprocessing


def meta_for_model(model, *, kind: str = WEIGHTS, provenance: Mapping | None = None, train_config=None,
                   state_dict: Mapping | None = None) -> ModelMeta:
    """The schema describing ``model`` (its config, class names and preprocessing)."""
    from tubevit.io.schema import Preprocessing

    sd = state_dict if state_dict is not None else model.state_dict()
    names = getattr(model, "class_names", None) or {}
    prov = {"tubevit_version": _version(), **dict(provenance or {})}
    return ModelMeta(kind, model.cfg.to_dict(), {h: list(v) for h, v in names.items()},
                     getattr(model, "preprocessing", None) or Preprocessing(), prov, tensor_checksum(sd),
                     train_config, FORMAT)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tubevit")
    except PackageNotFoundError:
        return "unknown"


# Fields that change the tensors (or the tube layout); the others (dropout, drop path, ...) do not.
ARCHITECTURE_FIELDS = ("width", "depth", "num_heads", "mlp_dim", "tubes", "tokenizer", "in_chans", "qkv_bias",
                       "layer_scale", "pos_tau", "pos_zero_fill", "gate_layer", "gate_per_channel", "num_classes")


def architecture_diff(saved: Mapping | ModelConfig, ours: Mapping | ModelConfig) -> list[str]:
    """``["depth 2 vs 4", ...]``: the architecture fields where ``saved`` (a file's config) and
    ``ours`` differ, saved value first."""
    import json

    a = saved.to_dict() if isinstance(saved, ModelConfig) else dict(saved)
    b = ours.to_dict() if isinstance(ours, ModelConfig) else dict(ours)
    out = []
    for k in ARCHITECTURE_FIELDS:
        if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True):
            out.append(f"{k} {a.get(k)} vs {b.get(k)}")
    return out
