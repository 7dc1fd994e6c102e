"""ONNX export of a TubeViT (one head), with a dynamic batch axis, checked in onnxruntime.

The graph takes ``video [B, 3, T, H, W]`` (or ``image [B, 3, H, W]`` for an image head, through
the 2D tube alone) at the clip size the model was trained with (``pretrained_cfg``: frames, size)
or the one given, and returns ``logits [B, classes]``. T, H and W are fixed in the graph: the tube
layout and the position table (§3.3) are computed for that shape at export time, which is what
lets the exported graph stay free of the layout arithmetic. The batch axis is dynamic.

Needs the ``onnx`` extra (onnx, onnxscript; onnxruntime for the check):
``pip install -c constraints.txt -e ".[onnx]"``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from tubevit.io.errors import ModelFileError
from tubevit.io.files import atomic_write

__all__ = ["check_onnx", "export_onnx", "onnx_input_shape"]

INSTALL = 'pip install -c constraints.txt -e ".[onnx]"  (or: make install-extra EXTRA=onnx)'


class _OneHead(nn.Module):
    def __init__(self, model: nn.Module, head: str):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, head=self.head)


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelFileError(f"ONNX export needs the package {module!r}, which is not installed; {INSTALL}") from None


def onnx_input_shape(model, head: str, frames: int | None, size: int | None) -> tuple[int, ...]:
    """``(3, T, H, W)`` for a video head, ``(3, H, W)`` for an image head (a head named for an image
    source, or ``frames=1``); sizes from the model's ``pretrained_cfg`` unless given."""
    cfg = model.pretrained_cfg
    size = int(size or (cfg["input_size"] or (None, 224))[-1])
    is_image = frames == 1 or (frames is None and head == "image")
    if is_image:
        return (model.cfg.in_chans, size, size)
    return (model.cfg.in_chans, int(frames or cfg["num_frames"] or 32), size, size)


def export_onnx(model, path, *, head: str | None = None, frames: int | None = None, size: int | None = None,
                check: bool = True, opset: int | None = None, atol: float = 1e-4) -> Path:
    """Write ``path`` (.onnx) for ``head`` (default: the only head; ``--head`` for joint models) and,
    with ``check``, compare onnxruntime with PyTorch at batch sizes 1 and 3 (max error <= ``atol``).
    The eager model is unchanged afterwards (the position cache keeps no traced tensor)."""
    _require("onnx")
    _require("onnxscript")
    path = Path(path)
    head = model.heads.resolve(head)
    shape = onnx_input_shape(model, head, frames, size)
    was_training = model.training
    model.eval()
    wrapped = _OneHead(model, head).eval()
    example = torch.randn(2, *shape)
    batch = torch.export.Dim("batch", min=1, max=4096)

    def write(tmp: Path) -> None:
        kwargs = {"opset_version": opset} if opset else {}
        program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=["video" if len(shape) == 4 else "image"],
                                    output_names=["logits"], dynamic_shapes=({0: batch},), external_data=False,
                                    verbose=False, **kwargs)
        program.save(str(tmp))

    try:
        atomic_write(path.with_suffix(".onnx") if path.suffix != ".onnx" else path, write)
    finally:
        model.train(was_training)
    if check:
        err = check_onnx(model, path, head=head, shape=shape)
        if err > atol:
            raise ModelFileError(f"{path}: onnxruntime differs from PyTorch by {err:.2e} (> {atol:g}); the export is "
                                 "not faithful, please report it")
    return path


def check_onnx(model, path, *, head: str, shape, batches=(1, 3), seed: int = 0) -> float:
    """Max absolute difference between onnxruntime and the eager model over random inputs of the
    given batch sizes (the dynamic axis)."""
    ort = _require("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    was_training = model.training
    model.eval()
    try:
        for b in batches:
            x = torch.randn(b, *shape, generator=g)
            with torch.no_grad():
                want = model(x, head=head).float()
            got = torch.from_numpy(sess.run(None, {name: x.numpy()})[0])
            if got.shape != want.shape:
                raise ModelFileError(f"{path}: onnxruntime returned shape {tuple(got.shape)} for batch {b}, "
                                     f"PyTorch {tuple(want.shape)}")
            worst = max(worst, float((got - want).abs().max()))
    finally:
        model.train(was_training)
    return worst
