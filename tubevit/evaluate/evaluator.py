"""The evaluation loop: multi-view forward passes -> per-video scores -> metrics.

``evaluate(model, loader, ...)`` is what ``tubevit eval`` and the trainer's periodic validation
call. Its signature and the keys of its result are a contract (docs/EVALUATION.md).

Batches
-------
The loader yields the batches of ``tubevit.data.loader.collate`` (``build_loader`` over a
``VideoDataset``/``ImageDataset`` with ``train=False``)::

    video   float [sum V, C, T, H, W]  every view of every readable video in the batch
                                       (``image`` [sum V, C, H, W] for image sets)
    index   int64 [sum V]              the video index (position in the evaluation list) per view
    view    int64 [sum V]              the view index per view (clip * crops + crop)
    label   int64 [sum V]              the label per view (-1: unlabelled)
    skipped list[int]                  indices of the batch's videos that could not be decoded

Also accepted (so any loader fits): a dict with ``video``/``image``/``clips``/``x`` of
``[B, V, C, T, H, W]`` or ``[B, C, T, H, W]`` plus ``label [B]`` and ``index [B]``; or a
``(clips, labels)`` / ``(clips, labels, index)`` tuple of those shapes (without ``index`` the
videos are numbered in order of arrival, which is right for one process only).

Skipped samples
---------------
A video that cannot be decoded is *skipped*: it is counted in ``skipped`` (and named in
``skipped_files``), it is never replaced by another sample and it does not enter top-1/top-5,
which are over the ``videos`` that were evaluated. If ``skipped / (videos + skipped)`` exceeds
``max_fail_fraction`` the evaluation stops with :class:`TooManyFailures` (as soon as the count
makes that certain when the dataset's length is known, else at the end).

Distributed
-----------
If ``torch.distributed`` is initialised with more than one process, each rank evaluates its shard,
then per-video sums and skipped indices are gathered to every rank and de-duplicated by video
index (a ``DistributedSampler`` pads the last shard by repeating samples), so every rank returns
the same result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from tubevit.evaluate.metrics import confusion_matrix, mean_class_accuracy, per_class_accuracy, topk_accuracy
from tubevit.evaluate.multiview import VideoScores, ViewAccumulator, check_aggregation
from tubevit.defaults import MAX_FAIL_FRACTION, PRECISIONS
from tubevit.model.precision import autocast

__all__ = ["PRECISIONS", "TooManyFailures", "ViewRun", "evaluate", "forward_views", "autocast_context"]

# Views per forward pass when view_batch is not given: batched across videos, so a 1-clip
# evaluation does not run the model on a handful of clips at a time.
DEFAULT_VIEW_BATCH = 32


class TooManyFailures(RuntimeError):
    """More than ``max_fail_fraction`` of the videos could not be decoded."""


@dataclass
class ViewRun:
    """What :func:`forward_views` returns: per-video scores plus bookkeeping."""

    scores: VideoScores
    skipped: dict[int, tuple[str, str]]  # video index -> (path, reason)
    total_views: int
    expected_views: int | None
    decode_s: float  # time spent waiting for the loader (decoding and transforms)
    model_s: float  # time spent in forward passes
    extra: dict = field(default_factory=dict)
    short: set = field(default_factory=set)  # indices of the videos shorter than one clip (looped)


def autocast_context(device: torch.device, precision: str):
    """Autocast for the precision (the one shared helper, ``tubevit.model.precision.autocast``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return autocast(device, precision)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    # DDP / FSDP-free forward for inference: DDP's forward would try to sync buffers.
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _num_classes(model: torch.nn.Module, head: str | None) -> int | None:
    heads = getattr(model, "heads", None)
    if heads is None or not hasattr(heads, "resolve"):
        return None
    return int(heads[heads.resolve(head)].out_features)


def _parse_batch(batch, counter: list[int]):
    """-> clips [N, ...], video index [N], view index [N], labels [N] or None, failed indices."""
    if isinstance(batch, dict):
        failed = [int(i) for i in (batch.get("skipped") or [])]
        key = next((k for k in ("video", "image", "clips", "x") if k in batch and torch.is_tensor(batch[k])), None)
        if key is None:
            if batch.get("num_samples", None) == 0 or "index" in batch:
                return None, None, None, None, failed  # every sample of this batch failed
            raise ValueError(f"cannot find the clips in a batch with keys {sorted(batch)}")
        x = batch[key]
        labels = batch.get("label", batch.get("labels"))
        index = batch.get("index")
        if "view" in batch and index is not None:  # tubevit.data.loader.collate: views flattened
            return x, torch.as_tensor(index), torch.as_tensor(batch["view"]), labels, failed
    elif isinstance(batch, (tuple, list)):
        failed = []
        x, labels = batch[0], batch[1] if len(batch) > 1 else None
        index = batch[2] if len(batch) > 2 else None
    else:
        raise ValueError(f"unsupported batch type {type(batch).__name__}")
    if x.dim() == 5:
        x = x.unsqueeze(1)
    if x.dim() != 6:
        raise ValueError(f"clips must be [B, V, C, T, H, W] or [B, C, T, H, W], got {tuple(x.shape)}")
    b, v = x.shape[:2]
    if index is None:
        index = torch.arange(counter[0], counter[0] + b)
        counter[0] += b
    index = torch.as_tensor(index).long().reshape(b)
    labels = torch.full((b,), -1, dtype=torch.long) if labels is None else torch.as_tensor(labels).long().reshape(b)
    return (
        x.reshape(b * v, *x.shape[2:]),
        index.repeat_interleave(v),
        torch.arange(v).repeat(b),
        labels.repeat_interleave(v),
        failed,
    )


def _sample_path(dataset, index: int) -> str:
    """The file of sample ``index`` if the dataset (or the loader's wrapper around it) lists them."""
    for ds in (dataset, getattr(dataset, "dataset", None)):
        samples = getattr(ds, "samples", None)
        if samples is not None and 0 <= index < len(samples):
            rel = str(samples[index][0])
            root = getattr(ds, "root", None)
            return str(root / rel) if root is not None and not rel.startswith("/") else rel
    return ""


def _is_sharded(model: torch.nn.Module) -> bool:
    """FSDP (1 or 2) anywhere in the model: forward passes are collective operations."""
    return any(type(m).__name__.startswith(("FullyShardedDataParallel", "FSDP")) for m in model.modules())


def _dataset_input_shape(dataset) -> tuple | None:
    """``(C, T, H, W)`` of one view when the dataset says so (for empty lock-step forwards)."""
    for ds in (dataset, getattr(dataset, "dataset", None)):
        frames, size = getattr(ds, "frames", None), getattr(ds, "size", None)
        if isinstance(frames, int) and isinstance(size, int):
            return (3, frames, size, size)
    return None


def _max_over_ranks(value: int, device: torch.device) -> int:
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.long, device=on)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def _dist_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.inference_mode()
def forward_views(
    model: torch.nn.Module,
    loader,
    *,
    head: str | None = None,
    aggregation: str = "mean_logits",
    precision: str = "fp32",
    device=None,
    view_batch: int | None = None,
    max_fail_fraction: float = MAX_FAIL_FRACTION,
    expected_views: int | None = None,
    missing: str = "average",
    num_classes: int | None = None,
    progress=None,
    fail_flag: str = "--max-fail-fraction F",
) -> ViewRun:
    """Run every view through the model and aggregate per video (no metrics). See module doc."""
    check_aggregation(aggregation)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not 0.0 <= max_fail_fraction <= 1.0:
        raise ValueError(f"max_fail_fraction must be in [0, 1], got {max_fail_fraction}")
    net = _unwrap(model)
    device = torch.device(device) if device is not None else _model_device(net)
    dataset = getattr(loader, "dataset", None)
    if expected_views is None:
        expected_views = getattr(dataset, "views", None) or getattr(getattr(dataset, "dataset", None), "views", None)
    try:
        dataset_len = len(loader.dataset)  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        dataset_len = None

    was_training = net.training
    net.eval()
    acc: ViewAccumulator | None = None
    if num_classes is None:
        num_classes = _num_classes(net, head)
    if num_classes is not None:
        acc = ViewAccumulator(num_classes, aggregation, expected_views=expected_views, missing=missing)
    skipped: dict[int, tuple[str, str]] = {}
    short: set[int] = set()
    total_views, counter = 0, [0]
    lockstep = _dist_active() and _is_sharded(model)
    empty_shape = _dataset_input_shape(dataset)
    decode_s = model_s = 0.0
    # Views are forwarded in chunks of `view_batch` gathered across videos and loader batches (a
    # 1-view evaluation with 4 videos per loader batch would otherwise run batches of 4). Under
    # FSDP lock-step every rank must run the same number of passes: per loader batch, as before.
    chunk = view_batch or (None if lockstep else DEFAULT_VIEW_BATCH)
    pending: list[tuple] = []  # (clips, videos, views, labels) not forwarded yet
    pending_n = 0

    def forward(x, vids, views, labels):
        nonlocal acc, empty_shape
        x = x.to(device, non_blocking=True)
        empty_shape = tuple(x.shape[1:])
        with autocast_context(device, precision):
            out = net(x, head=head) if head is not None else net(x)
        out = out.float().cpu()
        if acc is None:
            acc = ViewAccumulator(out.shape[1], aggregation, expected_views=expected_views, missing=missing)
        acc.add(vids, views, out, labels)
        if progress is not None:
            progress(x.shape[0])

    def drain(final: bool) -> None:
        nonlocal pending, pending_n
        while pending_n >= chunk or (final and pending_n > 0):
            parts = [torch.cat(p) if p[0] is not None else None for p in zip(*pending)]
            take = min(chunk, pending_n)
            forward(*(p[:take] if p is not None else None for p in parts))
            pending_n -= take
            pending = [tuple(p[take:] if p is not None else None for p in parts)] if pending_n else []

    try:
        t0 = time.perf_counter()
        for batch in loader:
            decode_s += time.perf_counter() - t0
            clips, vids, views, labels, failed = _parse_batch(batch, counter)
            if isinstance(batch, dict):
                short.update(int(i) for i in batch.get("short") or ())
            for idx in failed:
                if idx < 0:  # index unknown: count it under a key of its own
                    idx = -1 - len([k for k in skipped if k < 0])
                skipped[idx] = (_sample_path(dataset, idx), "could not be decoded")
            if dataset_len and not _dist_active() and len(skipped) > max_fail_fraction * dataset_len:
                raise TooManyFailures(_failure_message(skipped, dataset_len, max_fail_fraction, fail_flag))
            t1 = time.perf_counter()
            n = 0 if clips is None else clips.shape[0]
            if not lockstep:
                if n:
                    pending.append((clips, vids, views, labels))
                    pending_n += n
                drain(final=False)
            else:
                step = chunk or max(n, 1)
                # Sharded parameters (FSDP) all-gather inside forward: every rank must run the same
                # number of forward passes, so a rank with fewer readable views runs empty ones.
                chunks = _max_over_ranks(-(-n // step), device)
                for c in range(chunks):
                    s = c * step
                    if s >= n:
                        if empty_shape is None:
                            raise RuntimeError("cannot run an empty forward pass in lock-step: no input shape known yet")
                        with autocast_context(device, precision):
                            net(torch.zeros(0, *empty_shape, device=device), head=head) if head is not None else net(
                                torch.zeros(0, *empty_shape, device=device))
                        continue
                    forward(clips[s : s + step], vids[s : s + step], views[s : s + step],
                            None if labels is None else labels[s : s + step])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            model_s += time.perf_counter() - t1
            total_views += n
            t0 = time.perf_counter()
        t1 = time.perf_counter()
        if not lockstep:
            drain(final=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        model_s += time.perf_counter() - t1
    finally:
        net.train(was_training)
    if acc is None:
        raise ValueError("cannot tell the class count: the loader gave no readable views and the model has no heads")

    if _dist_active():
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, {"acc": acc.state(), "skipped": skipped, "views": total_views, "short": short})
        merged = ViewAccumulator(acc.num_classes, aggregation, expected_views=expected_views, missing=missing)
        skipped = {}
        for st in states:
            merged.merge(st["acc"], dedupe=True)
            for k, v in st["skipped"].items():
                skipped.setdefault(k, v)
        total_views = sum(st["views"] for st in states)
        short = set().union(*(st["short"] for st in states))
        acc = merged
    # A video may be both skipped on one rank and read on another only if reading is flaky; the
    # evaluated copy wins.
    for v in acc.videos:
        skipped.pop(v, None)
    attempted = len(acc.videos) + len(skipped)
    scores = acc.result()
    if skipped and len(skipped) > max_fail_fraction * max(attempted, 1):
        raise TooManyFailures(_failure_message(skipped, attempted, max_fail_fraction, fail_flag))
    return ViewRun(scores, skipped, total_views, expected_views, decode_s, model_s, short=short)


def _failure_message(skipped: dict, total: int, fraction: float, flag: str = "--max-fail-fraction F") -> str:
    first = sorted(skipped.items())[:3]
    names = "; ".join(f"{p or f'video {i}'}: {r}" for i, (p, r) in first)
    return (
        f"{len(skipped)} of {total} videos could not be read, more than max_fail_fraction={fraction:g} "
        f"(first: {names}). Fix or remove those files, or raise the limit ({flag})."
    )


def evaluate(
    model: torch.nn.Module,
    loader,
    *,
    head: str | None = None,
    aggregation: str = "mean_logits",
    precision: str = "fp32",
    device=None,
    max_fail_fraction: float = MAX_FAIL_FRACTION,
    view_batch: int | None = None,
    expected_views: int | None = None,
    missing: str = "average",
    topk: tuple[int, ...] = (1, 5),
    progress=None,
    fail_flag: str = "--max-fail-fraction F",
) -> dict:
    """Video-level accuracy of ``model`` over ``loader`` (multi-view batches; see module doc).

    Returns a JSON-serialisable dict:

    ``top1``, ``top5``          fractions in [0, 1] over evaluated videos (NaN if none)
    ``videos``                  videos evaluated (with at least one view)
    ``skipped``                 videos that could not be decoded (never substituted)
    ``skipped_files``           up to 20 ``{"index", "path", "reason"}``
    ``short_videos``            videos shorter than one clip (their clips loop, pad or fit: data.short; never an error)
    ``views``                   views per video (clips x crops; the most seen if not known)
    ``total_views``             views forwarded in all
    ``incomplete``              videos with fewer than ``views`` views (see ``missing``)
    ``num_classes``, ``per_class`` (accuracy per class, None where a class has no video),
    ``mean_class_accuracy``, ``confusion`` (``[K][K]`` list, rows true, columns predicted),
    ``aggregation``, ``precision``, ``decode_s``, ``model_s``, ``seconds``.

    ``view_batch`` is how many views go through the model at once, gathered across videos and
    loader batches (default ``DEFAULT_VIEW_BATCH`` = 32; under FSDP, per loader batch: the loader's
    whole batch). The model's train/eval mode is restored afterwards. Unlabelled videos
    (label -1) count in ``videos`` but not in the accuracy figures.
    """
    start = time.perf_counter()
    run = forward_views(
        model, loader, head=head, aggregation=aggregation, precision=precision, device=device,
        view_batch=view_batch, max_fail_fraction=max_fail_fraction, expected_views=expected_views,
        fail_flag=fail_flag,
        missing=missing, progress=progress,
    )
    s = run.scores
    k = s.scores.shape[1]
    labelled = s.labels >= 0
    if bool((s.labels[labelled] >= k).any()):
        raise ValueError(f"a label is >= the model's {k} classes; the evaluation list does not match the model")
    acc = topk_accuracy(s.scores[labelled], s.labels[labelled], ks=tuple(sorted(set(topk) | {1, 5})))
    conf = confusion_matrix(s.scores[labelled].argmax(1) if labelled.any() else torch.zeros(0, dtype=torch.long),
                            s.labels[labelled], k)
    per_class = [None if math.isnan(a) else a for a in per_class_accuracy(conf).tolist()]
    views = run.expected_views if run.expected_views is not None else (int(s.views.max()) if len(s) else 0)
    out = {
        "top1": acc[1],
        "top5": acc[5],
        "videos": len(s),
        "labelled_videos": int(labelled.sum()),
        "skipped": len(run.skipped),
        "short_videos": len(run.short),
        "skipped_files": [{"index": i, "path": p, "reason": r} for i, (p, r) in sorted(run.skipped.items())[:20]],
        "views": int(views),
        "total_views": int(run.total_views),
        "incomplete": len(s.incomplete),
        "num_classes": int(k),
        "per_class": per_class,
        "mean_class_accuracy": mean_class_accuracy(conf),
        "confusion": conf.tolist(),
        "aggregation": aggregation,
        "precision": precision,
        "decode_s": round(run.decode_s, 4),
        "model_s": round(run.model_s, 4),
        "seconds": round(time.perf_counter() - start, 4),
    }
    for kk, v in acc.items():
        if kk not in (1, 5):
            out[f"top{kk}"] = v
    return out
