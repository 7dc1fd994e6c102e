"""Bytes on disk: the readers and writers of each file kind, all atomic, all safe.

* training checkpoint ``.pt``: ``torch.save`` of one dict, read with ``torch.load(weights_only=True)``
  (no pickled code runs) and memory-mapped, so shapes can be checked before the data is touched;
* ``.safetensors``: the header (tensor names, dtypes, shapes and the schema metadata) is parsed
  and validated here before safetensors reads anything, so a malformed file is one clear error;
* a ``save_pretrained`` folder: ``config.json`` + ``model.safetensors`` (the Hugging Face layout);
* foreign files (image-ViT ``.pth``/``.bin``/``.npz``) are read as raw tensors for ``convert``.

Every writer goes through :func:`atomic_write` (temporary file in the same folder, fsync, rename),
so a run killed at any moment leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from tubevit.io.errors import ModelFileError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PREPROCESSOR_NAME = "preprocessor_config.json"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# A safetensors header larger than this is not a real header (safetensors itself caps it at 100 MB).
MAX_HEADER = 100 * 1024 * 1024
_ST_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
              "U16", "U32", "U64", "C64"}


def _first_line(err: BaseException, limit: int = 160) -> str:
    return (str(err).strip().splitlines() or [""])[0][:limit]


# --------------------------------------------------------------------------- writing

def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` then fsync and rename over ``path``; the temporary file never survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(text: str, path: str | Path) -> Path:
    """``text`` (UTF-8) atomically: a kill or a full disk during a rewrite keeps the old file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_safetensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: str | Path) -> Path:
    from safetensors.torch import save_file

    # safetensors refuses shared or non-contiguous storage: give every tensor its own copy.
    own = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(own, str(tmp), metadata=dict(metadata)))


def write_json(obj, path: str | Path) -> Path:
    text = json.dumps(obj, indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------- reading: torch

def load_torch(path: str | Path, *, reader: str, mmap: bool = True):
    """``torch.load(weights_only=True)``: no pickled code ever runs. A pickle holding Python objects,
    a raw pickle or a damaged file is one line naming the file, what it is and the call."""
    import re
    import warnings

    path = Path(path)
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save's zip format (the only one that mmaps)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol warnings of foreign pickles; the error below says it all
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipped)
    except pickle.UnpicklingError as err:
        msg = str(err)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
        with open(path, "rb") as f:
            first = f.read(1)
        if found:
            what = f"is a pickle with Python objects ({found[1]}) beyond tensors"
        elif first == b"\x80" or zipped:
            what = "is a pickle that is not a plain torch.save of tensors"
        else:
            raise ModelFileError(f"cannot read {path} (given to {reader}): not a torch checkpoint, or damaged") from None
        raise ModelFileError(
            f"{path} (given to {reader}) {what}, which safe loading (weights_only=True) refuses to run; save the "
            "weights alone (torch.save(model.state_dict())) or as .safetensors") from None
    except Exception as err:  # noqa: BLE001 - any other load failure means a damaged or foreign file
        raise ModelFileError(f"cannot read {path} (given to {reader}): not a torch checkpoint, or damaged "
                             f"({type(err).__name__}: {_first_line(err)})") from None


# --------------------------------------------------------------------------- reading: safetensors

def read_safetensors_header(path: str | Path, *, reader: str) -> tuple[dict[str, tuple], dict[str, str]]:
    """``({name: shape}, metadata)`` from the header alone (nothing else is read); a malformed header
    is one ``ModelFileError`` naming the file and what is wrong."""
    path = Path(path)
    size = path.stat().st_size

    def bad(why: str) -> ModelFileError:
        return ModelFileError(f"{path} (given to {reader}) is not a valid .safetensors file: {why}")

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or n > size - 8:
            raise bad(f"header length {n} exceeds the file ({size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise bad(f"the header is not JSON ({type(err).__name__})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise bad("__metadata__ must map strings to strings")
    data_len = size - 8 - n
    shapes = {}
    for name, info in header.items():
        ok = (isinstance(info, dict) and info.get("dtype") in _ST_DTYPES and isinstance(info.get("shape"), list)
              and all(isinstance(s, int) and s >= 0 for s in info["shape"])
              and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2)
        if not ok:
            raise bad(f"tensor {name!r} has a malformed entry")
        begin, end = info["data_offsets"]
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= data_len):
            raise bad(f"tensor {name!r} lies outside the file (offsets {begin}..{end} of {data_len} data bytes); "
                      "truncated?")
        shapes[name] = tuple(info["shape"])
    return shapes, meta


def load_safetensors(path: str | Path, *, reader: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - the header was checked; what remains is damage
        raise ModelFileError(f"cannot read {path} (given to {reader}): {type(err).__name__}: {_first_line(err)}") from None


# --------------------------------------------------------------------------- reading: others

def load_npz(path: str | Path, *, reader: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as err:
        raise ModelFileError(f"{path} (given to {reader}) holds pickled objects, which are not loaded; "
                             f"use a plain .npz of arrays ({_first_line(err)})") from None
    except Exception as err:  # noqa: BLE001
        raise ModelFileError(f"cannot read {path} (given to {reader}): not a .npz file, or damaged "
                             f"({type(err).__name__}: {_first_line(err)})") from None


def read_json(path: str | Path, *, reader: str) -> dict:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"cannot read {path} (given to {reader}): {type(err).__name__}: {_first_line(err)}") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path} (given to {reader}) is not a JSON object")
    return obj
