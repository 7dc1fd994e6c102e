"""The library functions behind ``tubevit eval`` and ``tubevit predict``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from tubevit.evaluate.evaluator import DEFAULT_MAX_FAIL_FRACTION, PRECISIONS, autocast_context, evaluate
from tubevit.evaluate.loading import LoadedModel, load_model
from tubevit.evaluate.multiview import aggregate_views, check_aggregation
from tubevit.model.precision import cast_for_inference

__all__ = ["clip_settings", "evaluate_checkpoint", "predict_files", "resolve_device"]


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def clip_settings(loaded: LoadedModel, *, frames=None, size=None, stride=None, fps=None, decoder=None) -> dict:
    """Clip geometry for evaluation: the checkpoint's training config, overridden by what is given."""
    d = loaded.data_config()
    out = {
        "frames": int(frames if frames else d.get("frames", 32)),
        "size": int(size if size else d.get("size", 224)),
        "stride": float(stride if stride else d.get("stride", 2.0)),
        "fps": float(fps if fps is not None else d.get("fps", 0.0) or 0.0),
        "decoder": decoder or d.get("decoder", "auto"),
    }
    out["fps"] = out["fps"] or None
    return out


def _default_head(loaded: LoadedModel) -> str:
    video = (loaded.data_config().get("video") or {}) if isinstance(loaded.data_config().get("video"), dict) else {}
    return video.get("name", "video")


def _is_index_names(names: Sequence[str]) -> bool:
    return list(names) == [str(i) for i in range(len(names))]


def check_classes(samples, list_names, ckpt_names, *, list_path, head) -> list[str]:
    """Fail before running when the evaluation list cannot belong to the checkpoint's head."""
    k = len(ckpt_names)
    top = max((lab for _, lab in samples), default=-1)
    if top >= k:
        raise ValueError(
            f"{list_path} has label {top}, but head {head!r} of the checkpoint has {k} classes; "
            "pass the validation list of the dataset the checkpoint was trained on (or the right --head)"
        )
    if not _is_index_names(list_names) and len(list_names) != k:
        raise ValueError(
            f"{list_path} has {len(list_names)} classes but head {head!r} of the checkpoint has {k}; "
            "pass the validation list (and --classes file) of the dataset the checkpoint was trained on, "
            "or choose another head with --head"
        )
    if not _is_index_names(list_names) and not _is_index_names(ckpt_names) and list(list_names) != list(ckpt_names):
        print(f"note: class names of {list_path} differ from the checkpoint's; reporting the checkpoint's names",
              file=sys.stderr)
    return list(ckpt_names)


def evaluate_checkpoint(
    checkpoint,
    val_list,
    data_root,
    *,
    classes=None,
    clips: int = 4,
    crops: int = 3,
    aggregation: str = "mean_logits",
    precision: str = "fp32",
    batch_size: int = 4,
    workers: int = 0,
    head: str | None = None,
    frames: int | None = None,
    size: int | None = None,
    stride: float | None = None,
    fps: float | None = None,
    decoder: str | None = None,
    device: str | None = "auto",
    view_batch: int | None = None,
    max_fail_fraction: float = DEFAULT_MAX_FAIL_FRACTION,
    out=None,
    plot: bool = True,
    progress: bool = False,
    stride_scale: float | None = None,
) -> dict:
    """Evaluate a checkpoint on an annotation file with multi-view testing; write the confusion
    matrix PNG (and the result JSON) to ``out`` (default: the checkpoint's folder).
    ``stride_scale`` evaluates with the tubes' spatial strides scaled (Table 7d; default: the
    checkpoint's ``model.eval_stride_scale``).

    Everything that can be checked before decoding a video (checkpoint, list file, data root,
    class count, options) is checked first.
    """
    from tubevit.data import VideoDataset, build_loader, read_annotations

    check_aggregation(aggregation)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if clips < 1 or crops not in (1, 3):
        raise ValueError(f"--clips must be >= 1 and --crops 1 or 3, got {clips} and {crops}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    loaded = load_model(checkpoint, device=dev)
    if stride_scale is not None:
        if not stride_scale > 0:
            raise ValueError(f"--stride-scale must be a positive number, got {stride_scale}")
        loaded.model.set_eval_stride_scale(stride_scale)
    # bf16/fp16: cast the weights once (autocast alone re-casts every weight on every forward).
    cast_for_inference(loaded.model, precision)
    head = loaded.head(head, prefer=_default_head(loaded))
    ckpt_names = loaded.classes[head]
    samples, list_names = read_annotations(val_list, data_root, classes)
    names = check_classes(samples, list_names, ckpt_names, list_path=val_list, head=head)
    geo = clip_settings(loaded, frames=frames, size=size, stride=stride, fps=fps, decoder=decoder)
    dataset = VideoDataset(
        samples, data_root, frames=geo["frames"], stride=geo["stride"], fps=geo["fps"], size=geo["size"],
        train=False, clips=clips, crops=crops, decoder=geo["decoder"], class_names=names, name=head,
    )
    loader = build_loader(dataset, batch_size=batch_size, workers=workers, shuffle=False)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset) * dataset.views, unit="view", file=sys.stderr, desc="eval", leave=False)
    try:
        result = evaluate(
            loaded.model, loader, head=head, aggregation=aggregation, precision=precision, device=dev,
            max_fail_fraction=max_fail_fraction, view_batch=view_batch, expected_views=dataset.views,
            progress=bar.update if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    result.update(
        checkpoint=str(checkpoint), head=head, classes=list(names), clips=clips, crops=crops,
        frames=geo["frames"], size=geo["size"], stride=geo["stride"], fps=geo["fps"], device=str(dev),
        stride_scale=loaded.model.cfg.eval_stride_scale,
        per_class_named={n: a for n, a in zip(names, result["per_class"])},
    )
    folder = Path(out) if out else Path(checkpoint).parent
    stem = Path(checkpoint).stem
    if plot:
        from tubevit.evaluate.plots import plot_confusion

        png = plot_confusion(
            result["confusion"], names, folder / f"{stem}_confusion.png",
            title=f"{stem} ({head}): top-1 {100 * result['top1']:.1f}% over {result['videos']} videos, "
                  f"{clips}x{crops} views",
        )
        result["confusion_png"] = str(png)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}_eval.json").write_text(json.dumps(_jsonable(result), indent=1) + "\n")
    result["result_json"] = str(folder / f"{stem}_eval.json")
    return result


def _jsonable(x):
    import math

    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def predict_files(
    checkpoint,
    files: Sequence,
    *,
    topk: int = 5,
    clips: int = 4,
    crops: int = 3,
    aggregation: str = "mean_logits",
    precision: str = "fp32",
    head: str | None = None,
    frames: int | None = None,
    size: int | None = None,
    stride: float | None = None,
    fps: float | None = None,
    decoder: str | None = None,
    device: str | None = "auto",
    view_batch: int | None = None,
) -> dict:
    """Top-k classes with probabilities for each video file; an unreadable file is reported
    (``ok: False`` with the reason) and counted in ``failed``, the others still run."""
    from tubevit.data import VideoDataset, probe
    from tubevit.data.decode import VideoDecodeError

    check_aggregation(aggregation)
    if topk < 1:
        raise ValueError(f"--topk must be >= 1, got {topk}")
    if not files:
        raise ValueError("give at least one video file")
    dev = resolve_device(device)
    t_load = time.perf_counter()
    loaded = load_model(checkpoint, device=dev)
    # bf16/fp16: cast the weights once (autocast alone re-casts every weight on every forward).
    cast_for_inference(loaded.model, precision)
    head = loaded.head(head, prefer=_default_head(loaded))
    names = loaded.classes[head]
    geo = clip_settings(loaded, frames=frames, size=size, stride=stride, fps=fps, decoder=decoder)
    samples = [(str(Path(f).absolute()), -1) for f in files]
    dataset = VideoDataset(
        samples, "/", frames=geo["frames"], stride=geo["stride"], fps=geo["fps"], size=geo["size"], train=False,
        clips=clips, crops=crops, decoder=geo["decoder"], class_names=names, name=head,
    )
    load_s = time.perf_counter() - t_load
    k = min(topk, len(names))
    predictions, failed = [], 0
    for i, f in enumerate(files):
        entry = {"file": str(f)}
        t0 = time.perf_counter()
        try:
            probe(samples[i][0])
            item = dataset.get(i)
            reason = "could not be decoded"
        except VideoDecodeError as err:
            item, reason = None, err.reason
        except (OSError, ValueError, RuntimeError) as err:
            item, reason = None, f"{type(err).__name__}: {err}"
        decode_s = time.perf_counter() - t0
        if item is None:
            failed += 1
            predictions.append({**entry, "ok": False, "error": reason, "decode_s": round(decode_s, 4)})
            continue
        views = item["video"]
        t1 = time.perf_counter()
        outs = []
        with torch.inference_mode():
            step = view_batch or views.shape[0]
            for s in range(0, views.shape[0], step):
                x = views[s : s + step].to(dev)
                with autocast_context(dev, precision):
                    outs.append(loaded.model(x, head=head).float().cpu())
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        model_s = time.perf_counter() - t1
        logits = torch.cat(outs)
        agg = aggregate_views([0] * logits.shape[0], item["view"], logits, aggregation=aggregation,
                              expected_views=dataset.views, missing="error")
        probs = agg.probs[0]
        top = probs.topk(k)
        predictions.append({
            **entry, "ok": True,
            "topk": [{"class": names[j], "index": int(j), "prob": float(p)} for p, j in zip(top.values.tolist(), top.indices.tolist())],
            "views": int(logits.shape[0]),
            "decode_s": round(decode_s, 4),
            "model_s": round(model_s, 4),
        })
    return {
        "checkpoint": str(checkpoint), "head": head, "aggregation": aggregation, "clips": clips, "crops": crops,
        "frames": geo["frames"], "size": geo["size"], "device": str(dev), "files": len(files), "failed": failed,
        "load_s": round(load_s, 4),
        "decode_s": round(sum(p["decode_s"] for p in predictions), 4),
        "model_s": round(sum(p.get("model_s", 0.0) for p in predictions), 4),
        "predictions": predictions,
    }
