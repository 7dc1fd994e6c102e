"""Numeric precision for training, evaluation and prediction: the one helper every engine uses.

``fp32`` runs as is. ``bf16`` (CPU or GPU) and ``fp16`` (meant for GPU; slow on CPU) run the matrix products in the
low-precision type under autocast; bf16 keeps fp32's exponent range, so it needs no loss scaling.

* Training keeps fp32 master weights and optimizer state and wraps the forward in
  :func:`autocast` (the loss is taken in fp32 from ``logits.float()``).
* Inference (eval, predict) additionally casts the weights once with :func:`cast_for_inference`:
  under autocast alone every forward re-casts every fp32 weight to bf16 (the copies took 5.4% of a
  TubeViT-B autocast forward on CPU, 1.5% with bf16 weights), and bf16 weights halve the memory
  the forward streams. Autocast is still
  wanted around the forward: it casts the fp32 input clip at the tube convolutions. ::

      model = cast_for_inference(model, "bf16")          # in place; returns the model
      with torch.inference_mode(), autocast(device, "bf16"):
          logits = model(clips).float()

  Do not cast a model that will train again (evaluation inside training): use autocast alone.

Measured speed and accuracy on CPU: docs/BENCHMARKS.md, Model.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from tubevit.defaults import PRECISION_CHOICES, PRECISIONS

__all__ = ["PRECISIONS", "autocast", "cast_for_inference", "compute_dtype", "emulation_warning", "grad_scaler", "native_bf16",
           "resolve_precision"]

# CPU feature flags (Linux /proc/cpuinfo names) with bf16 dot-product instructions: without one
# of them oneDNN emulates bf16 and a step is no faster than fp32 (often slower).
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

# The dtype of each precision name (the names: tubevit.defaults.PRECISIONS, in that order).
_DTYPES = dict(zip(PRECISIONS, (torch.float32, torch.bfloat16, torch.float16), strict=True))


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:  # not Linux: no flags to read, so no claim of native bf16
        pass
    return set()


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 matrix products in hardware: a CUDA GPU that reports bf16
    support (Ampere and newer), or a CPU with AVX512-BF16 or AMX (read from /proc/cpuinfo)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(_cpu_flags() & set(_CPU_BF16_FLAGS))
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16` holds for ``device``, else ``fp32``; any
    other name of ``PRECISIONS`` is returned as is (an unknown one is an error naming the choices).
    Measured on the AVX512-BF16 CPU of docs/BENCHMARKS.md: a tubevit_tiny training step ~2x faster
    in bf16 than fp32, and the same learning (docs/TRAINING.md, "The default recipe")."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISION_CHOICES}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def emulation_warning(precision: str, device: torch.device | str) -> str | None:
    """A one-line warning when ``bf16`` was asked for on a CPU that has no bf16 instructions:
    oneDNN then emulates it, and a tubevit_tiny training step measured 10x slower than fp32 (5.6
    against 0.55 s per batch of 4 at 32x112, a Zen 3 EPYC; docs/BENCHMARKS.md, "Pipeline")."""
    if precision != "bf16" or torch.device(device).type != "cpu" or native_bf16(device):
        return None
    return ("warning: precision bf16 on a CPU without bf16 instructions (no avx512_bf16 or amx_bf16) is "
            "emulated (a training step measured 10x slower than fp32 on a Zen 3 EPYC); use --precision auto "
            "(fp32 on this CPU) or fp32")


def compute_dtype(precision: str) -> torch.dtype:
    """``"fp32" | "bf16" | "fp16"`` -> the torch dtype the matrix products run in."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    return _DTYPES[precision]


def autocast(device: torch.device | str, precision: str):
    """Autocast to the precision's dtype on ``device`` (cpu or cuda); fp32: a no-op context.
    The one autocast helper: the train step, the evaluator and the benchmark all use it."""
    dtype = compute_dtype(precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def cast_for_inference(model: nn.Module, precision: str, compile: bool = False) -> nn.Module:
    """Put ``model`` in eval mode with its weights in the precision's dtype (in place).

    ``compile=True`` also returns ``torch.compile(model)``, on CPU with inductor's freezing
    (weights folded as constants and pre-packed for oneDNN). On the 2-core AVX-512-BF16 machine of
    docs/BENCHMARKS.md it made TubeViT-B bf16 inference only 0-5% faster than eager, for a one-off
    compile of about 40 s per input shape, so eager is the default; on a GPU it is worth trying.
    The compiled module's ``state_dict`` keys carry an ``_orig_mod.`` prefix: save the model you
    passed in, not the returned one.
    """
    dtype = compute_dtype(precision)
    model.eval()
    if dtype != torch.float32:
        model.to(dtype)
    if not compile:
        return model
    device_type = next(model.parameters()).device.type
    return torch.compile(model, options={"freezing": True} if device_type == "cpu" else None)


def grad_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (its 5-bit exponent underflows small gradients); off otherwise."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=compute_dtype(precision) == torch.float16)
