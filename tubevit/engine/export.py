"""Sharing trained weights: any whole-model file (a training checkpoint, an export, a
save_pretrained folder) -> a ``.safetensors`` file or a folder with the schema of
:mod:`tubevit.io.schema` (model config, class names, preprocessing, provenance, checksum), or an
ONNX graph (:mod:`tubevit.io.onnx`), chosen by the output's extension."""

from __future__ import annotations

from pathlib import Path

from tubevit.io import WEIGHTS, build_model, read_model_file, write_folder, write_weights
from tubevit.io.model_file import meta_for_model

__all__ = ["export_checkpoint", "load_exported"]

READER = "tubevit export"


def export_checkpoint(checkpoint, output, *, head: str | None = None, frames: int | None = None,
                      size: int | None = None, ema: bool = False) -> tuple[Path, int]:
    """Write ``output`` (``.safetensors``, ``.onnx`` or a folder); returns (path, tensors or graph inputs).
    ``checkpoint``: any model file, a sharded ``.dcp`` folder or a run folder (its newest
    checkpoint). ``ema=True`` exports the EMA of the weights (runs with ``optim.ema_decay``)."""
    output = Path(output)
    mf = read_model_file(checkpoint, reader=READER)
    model = build_model(mf, reader=READER)
    sd = dict(mf.state_dict)
    if ema:
        sd = _with_ema(mf, checkpoint)
        model.load_state_dict(sd, strict=True)
    if output.suffix == ".onnx":
        from tubevit.io.onnx import export_onnx

        return export_onnx(model, output, head=head, frames=frames, size=size), 1
    if output.suffix not in ("", ".safetensors"):
        raise ValueError(f"the output should end in .safetensors or .onnx (or be a folder), got {output}")
    prov = {**mf.meta.provenance, "source": str(checkpoint), "source_kind": mf.kind, "ema": ema}
    meta = meta_for_model(model, kind=WEIGHTS, provenance=prov, train_config=mf.meta.train_config, state_dict=sd)
    if output.suffix == ".safetensors":
        write_weights(sd, meta, output)
    else:
        write_folder(sd, meta, output)
    return output, len(sd)


def load_exported(path):
    """``(model in eval mode, metadata dict)`` of an exported file (any whole-model file, in fact)."""
    mf = read_model_file(path, reader="load_exported")
    model = build_model(mf, reader="load_exported")
    m = mf.meta
    info = {"format": m.format, "kind": m.kind, "model_config": m.model_config, "class_names": m.class_names,
            "preprocessing": m.preprocessing.to_dict(), "provenance": m.provenance, "config": m.train_config or {},
            "step": m.provenance.get("step", 0)}
    return model, info


def _with_ema(mf, where) -> dict:
    """The EMA weights of a training checkpoint, with the buffers (which are not averaged)."""
    raw = mf.raw or {}
    if raw.get("sharded_from"):
        from tubevit.io.sharded import consolidate

        return consolidate(raw["sharded_from"], ema=True)["model"]
    if not raw.get("ema"):
        raise ValueError(f"{where} holds no EMA of the weights (the run had optim.ema_decay 0); export without --ema")
    return {**mf.state_dict, **raw["ema"]}
