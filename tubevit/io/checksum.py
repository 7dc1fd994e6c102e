"""Checksum of a state dict's tensor data, stored in every model file and verified on load, so a
file damaged in transfer or edited by hand is refused instead of silently giving other outputs.

The digest covers, in sorted name order, each tensor's name, dtype, shape and raw bytes (so a
renamed key or a reshaped tensor changes it as well as a flipped bit). Cost: one SHA-256 pass
over the weights (about 1 s per GB on one core).
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import torch

ALGORITHM = "sha256"


def tensor_checksum(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``"sha256:<hex>"`` of the tensors (any dtype, any device)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach()
        h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}\n".encode())
        if t.numel():
            # View the storage as bytes: works for every dtype (bf16 has no numpy type).
            data = t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
            h.update(memoryview(data))
    return f"{ALGORITHM}:{h.hexdigest()}"


def verify_checksum(state_dict: Mapping[str, torch.Tensor], expected: str | None, where: str) -> bool:
    """Raise if ``expected`` is given and does not match; ``False`` when the file has none (older
    files of this project), ``True`` when verified."""
    from tubevit.io.errors import ModelFileError

    if not expected:
        return False
    if not expected.startswith(ALGORITHM + ":"):
        raise ModelFileError(f"{where}: unknown checksum kind {expected.split(':')[0]!r} (this tubevit knows "
                             f"{ALGORITHM}); upgrade tubevit or re-export the file")
    actual = tensor_checksum(state_dict)
    if actual != expected:
        raise ModelFileError(f"{where}: the tensor data does not match the checksum stored in the file (damaged "
                             f"in transfer or edited); copy or export the file again")
    return True
