"""The one resolution of a device name given by a user (``--device`` of eval/predict, ``device``
of training): ``auto`` means CUDA when available, a bare ``cuda`` is this process's GPU under
torchrun (``LOCAL_RANK``); a device this machine or this PyTorch build cannot give is one error
naming the flag and the fix, never a traceback from deep inside torch."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name, flag: str = "--device", *, local_rank: int = 0) -> torch.device:
    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{flag} {name!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        why = (f"this PyTorch build has no CUDA support (torch {torch.__version__})"
               if torch.version.cuda is None else "no CUDA GPU is visible")
        raise ValueError(f"{flag} {name} requested but {why}; use {flag} cpu (or auto), or install a "
                         f"CUDA build of torch on a machine with a GPU")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device
