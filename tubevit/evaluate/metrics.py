"""Classification metrics on per-video scores. Pure functions; torch or numpy in, Python/torch out.

Conventions: ``scores [N, K]`` (any monotone score: logits or probabilities), ``labels [N]``
integer class indices. Ties in top-k are broken by ``torch.topk`` (lowest index first on CPU),
the same rule everywhere in this package. The confusion matrix has rows = true class,
columns = predicted class. Classes without any sample have no accuracy: ``per_class_accuracy``
gives NaN for them, and ``mean_class_accuracy`` averages only classes that occur.

``mean_average_precision`` is for multi-label sets (Charades reports mAP): ``targets [N, K]`` of
0/1; classes without positives are left out of the mean.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "confusion_matrix",
    "mean_average_precision",
    "mean_class_accuracy",
    "per_class_accuracy",
    "topk_accuracy",
    "topk_correct",
]


def _scores(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dim() != 2:
        raise ValueError(f"scores must be [N, classes], got shape {tuple(t.shape)}")
    return t.detach().cpu().float()


def _labels(y, n: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).detach().cpu().reshape(-1)
    if t.is_floating_point():
        raise TypeError("labels must be integers")
    t = t.long()
    if n is not None and t.numel() != n:
        raise ValueError(f"{t.numel()} labels for {n} score rows")
    return t


def topk_correct(scores, labels, k: int) -> torch.Tensor:
    """Bool ``[N]``: is the label among the ``k`` highest scores (``k`` capped at the class count)."""
    s = _scores(scores)
    y = _labels(labels, s.shape[0])
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, s.shape[1])
    if s.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    top = s.topk(k, dim=1).indices
    return (top == y.unsqueeze(1)).any(dim=1)


def topk_accuracy(scores, labels, ks=(1, 5)) -> dict[int, float]:
    """``{k: fraction in [0, 1]}``; NaN for an empty set."""
    out = {}
    for k in ks:
        c = topk_correct(scores, labels, k)
        out[int(k)] = c.sum().item() / c.numel() if c.numel() else math.nan
    return out


def confusion_matrix(predictions, labels, num_classes: int) -> torch.Tensor:
    """``int64 [K, K]``, ``m[true, pred]`` counts. ``predictions``: class indices ``[N]`` or scores
    ``[N, K]`` (argmax taken)."""
    p = torch.as_tensor(np.asarray(predictions) if not isinstance(predictions, torch.Tensor) else predictions)
    if p.dim() == 2:
        p = p.argmax(dim=1)
    p = _labels(p)
    y = _labels(labels, p.numel())
    for name, t in (("prediction", p), ("label", y)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{name} out of range [0, {num_classes}): {int(t.min())}..{int(t.max())}")
    flat = y * num_classes + p
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion) -> torch.Tensor:
    """Recall per true class from a confusion matrix: ``float64 [K]``, NaN where a class has no sample."""
    m = torch.as_tensor(np.asarray(confusion) if not isinstance(confusion, torch.Tensor) else confusion).double()
    support = m.sum(dim=1)
    diag = torch.diagonal(m)
    return torch.where(support > 0, diag / support.clamp(min=1), torch.full_like(diag, math.nan))


def mean_class_accuracy(confusion) -> float:
    """Mean of :func:`per_class_accuracy` over the classes that have samples (NaN if none do)."""
    acc = per_class_accuracy(confusion)
    acc = acc[~torch.isnan(acc)]
    return float(acc.mean()) if acc.numel() else math.nan


def average_precision(scores, targets) -> float:
    """AP of one class: mean over the positives of precision at each positive's rank
    (ties broken by a stable sort on descending score). NaN without positives."""
    s = torch.as_tensor(np.asarray(scores) if not isinstance(scores, torch.Tensor) else scores).double().reshape(-1)
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets).reshape(-1) > 0
    if s.numel() != t.numel():
        raise ValueError(f"{s.numel()} scores for {t.numel()} targets")
    npos = int(t.sum())
    if npos == 0:
        return math.nan
    order = torch.sort(s, descending=True, stable=True).indices
    hits = t[order].double()
    precision = hits.cumsum(0) / torch.arange(1, hits.numel() + 1, dtype=torch.float64)
    return float((precision * hits).sum() / npos)


def mean_average_precision(scores, targets) -> float:
    """Multi-label mAP: mean of per-class :func:`average_precision` over classes with positives."""
    s = _scores(scores)
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if t.shape != s.shape:
        raise ValueError(f"targets {tuple(t.shape)} and scores {tuple(s.shape)} differ in shape")
    aps = [average_precision(s[:, k], t[:, k]) for k in range(s.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    return float(np.mean(aps)) if aps else math.nan
