"""The library functions behind ``tubevit eval`` and ``tubevit predict``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from tubevit.defaults import EVAL_CLIPS, EVAL_CROPS, MAX_FAIL_FRACTION
from tubevit.evaluate.evaluator import evaluate
from tubevit.evaluate.multiview import check_aggregation
from tubevit.evaluate.predictor import Predictor, is_image_file
from tubevit.evaluate.session import InferenceSession


def _set_threads(workers: int, device) -> None:
    """Torch threads = the cores the loader workers leave (tubevit.data.loader.plan_cpu). On a
    shared 2-core machine two OpenMP threads next to two busy workers made a 200-video tiny
    evaluation 5x slower than one thread (docs/BENCHMARKS.md, Evaluation). OMP_NUM_THREADS wins."""
    import os

    import torch

    from tubevit.data.loader import plan_cpu

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(plan_cpu(workers, device_type=torch.device(device).type)[1])

__all__ = ["clip_settings", "evaluate_checkpoint", "predict_files", "to_checkpoint_labels"]


def clip_settings(session: InferenceSession, *, frames=None, size=None, stride=None, fps=None, decoder=None) -> dict:
    """Clip geometry for evaluation: the model file's settings, overridden by what is given."""
    c = session.clip_settings(frames=frames, size=size, stride=stride, fps=fps, decoder=decoder)
    return {"frames": c.frames, "size": c.size, "stride": c.stride, "fps": c.fps, "decoder": c.decoder,
            "mean": c.mean, "std": c.std, "max_frame_pixels": c.max_frame_pixels, "short": c.short}


def _is_index_names(names: Sequence[str]) -> bool:
    return list(names) == [str(i) for i in range(len(names))]


def to_checkpoint_labels(samples, list_names, ckpt_names, *, list_path, head):
    """Renumber ``samples`` by the checkpoint's class names whenever both the list and the
    checkpoint carry names: a list's own numbering (sorted names, or another classes file's order)
    is not the one the head was trained with. A list lacking some classes is fine (the trainer
    validated on it); a name the checkpoint does not know is an error naming it."""
    if _is_index_names(list_names) or _is_index_names(ckpt_names):
        return list(samples)
    index = {c: i for i, c in enumerate(ckpt_names)}
    unknown = sorted({list_names[lab] for _, lab in samples if lab >= 0 and list_names[lab] not in index})
    if unknown:
        raise ValueError(
            f"{list_path} has class name(s) {unknown[:5]} that head {head!r} of the checkpoint does not have "
            f"({len(ckpt_names)} classes, e.g. {list(ckpt_names)[:3]}); pass the validation list of the dataset "
            f"the checkpoint was trained on, or choose another head with --head")
    return [(p, index[list_names[lab]] if lab >= 0 else lab) for p, lab in samples]


def check_list_fits_head(samples, list_names, ckpt_names, *, list_path, head) -> list[str]:
    """Fail before running when the evaluation list cannot belong to the checkpoint's head."""
    k = len(ckpt_names)
    top = max((lab for _, lab in samples), default=-1)
    if top >= k:
        raise ValueError(
            f"{list_path} has label {top}, but head {head!r} of the checkpoint has {k} classes; "
            "pass the validation list of the dataset the checkpoint was trained on (or the right --head)"
        )
    if not _is_index_names(list_names) and _is_index_names(ckpt_names) and len(list_names) != k:
        raise ValueError(
            f"{list_path} has {len(list_names)} classes but head {head!r} of the checkpoint has {k}; "
            "pass the validation list (and --classes file) of the dataset the checkpoint was trained on, "
            "or choose another head with --head"
        )
    return list(ckpt_names)


def evaluate_checkpoint(
    checkpoint,
    val_list,
    data_root,
    *,
    classes=None,
    clips: int = EVAL_CLIPS,
    crops: int = EVAL_CROPS,
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
    max_fail_fraction: float = MAX_FAIL_FRACTION,
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
    from tubevit.data import ImageDataset, VideoDataset, build_loader, read_annotations

    check_aggregation(aggregation)
    if clips < 1 or crops not in (1, 3):
        raise ValueError(f"--clips must be >= 1 and --crops 1 or 3, got {clips} and {crops}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    session = InferenceSession(checkpoint, device=device, precision=precision, head=head,
                               reader="tubevit eval --checkpoint")
    dev = session.device
    _set_threads(workers, dev)
    if stride_scale is not None:
        if not stride_scale > 0:
            raise ValueError(f"--stride-scale must be a positive number, got {stride_scale}")
        session.model.set_eval_stride_scale(stride_scale)
    samples, list_names = read_annotations(val_list, data_root, classes)
    # Images (an ImageFolder tree or a list of image files) go through the 2D tube alone, exactly
    # as the trainer's image validation; videos through every tube with clips x crops views.
    kind = "image" if samples and all(is_image_file(p) for p, _ in samples[:50]) else "video"
    head = session.head_for(kind)
    ckpt_names = session.class_names(head)
    samples = to_checkpoint_labels(samples, list_names, ckpt_names, list_path=val_list, head=head)
    names = check_list_fits_head(samples, list_names, ckpt_names, list_path=val_list, head=head)
    geo = clip_settings(session, frames=frames, size=size, stride=stride, fps=fps, decoder=decoder)
    if kind == "image":
        if session.model.tokenizer.image_tube is None:
            raise ValueError(f"{val_list} holds images but this model's tube set has no 2D tube to take them")
        clips = 1
        dataset = ImageDataset(samples, data_root, size=geo["size"], train=False, crops=crops, mean=geo["mean"],
                               std=geo["std"], class_names=names, name=head)
    else:
        dataset = VideoDataset(
            samples, data_root, frames=geo["frames"], stride=geo["stride"], fps=geo["fps"], size=geo["size"],
            train=False, clips=clips, crops=crops, decoder=geo["decoder"], mean=geo["mean"], std=geo["std"],
            class_names=names, name=head, max_frame_pixels=geo["max_frame_pixels"], short=geo["short"],
        )
    loader = build_loader(dataset, batch_size=batch_size, workers=workers, shuffle=False)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset) * dataset.views, unit="view", file=sys.stderr, desc="eval", leave=False)
    try:
        result = evaluate(
            session.model, loader, head=head, aggregation=aggregation, precision=session.precision, device=dev,
            max_fail_fraction=max_fail_fraction, view_batch=view_batch, expected_views=dataset.views,
            progress=bar.update if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    result.update(
        checkpoint=str(checkpoint), head=head, kind=kind, classes=list(names), clips=clips, crops=crops,
        frames=geo["frames"], size=geo["size"], stride=geo["stride"], fps=geo["fps"], short=geo["short"], device=str(dev),
        stride_scale=session.model.cfg.eval_stride_scale,
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


def predict_files(checkpoint, files: Sequence, **options) -> dict:
    """``tubevit predict``: top-k classes for each video or image file (folders expanded) with
    :class:`tubevit.Predictor`; an unreadable file is reported (``ok: False`` with the reason) and
    counted in ``failed``, the others still run. ``options`` are the Predictor's."""
    predictor = Predictor(checkpoint, **options)
    predictions = predictor.predict(list(files))
    c = predictor.clip
    return {
        "checkpoint": str(checkpoint), "aggregation": predictor.aggregation, "clips": predictor.clips,
        "crops": predictor.crops, "frames": c.frames, "size": c.size, "mean": list(c.mean), "std": list(c.std),
        "device": str(predictor.session.device), "files": len(predictions),
        "failed": sum(not p["ok"] for p in predictions), "load_s": round(predictor.load_s, 4),
        "decode_s": round(sum(p["decode_s"] for p in predictions), 4),
        "model_s": round(sum(p.get("model_s", 0.0) for p in predictions), 4),
        "predictions": predictions,
    }
