"""Multi-view aggregation (paper §5: "4 temporal x 3 spatial views", averaged per video). Pure.

Every view is keyed on an integer pair ``(video, view)``: ``video`` is the sample's index in the
evaluation list, ``view`` is ``clip * crops + crop``. A view's output is a row of logits. Per-video
scores are the mean over that video's views of either

* ``mean_logits`` (default): the raw logits (the score is the mean logit vector), or
* ``mean_probs``: the softmax probabilities (the score is the mean probability vector).

Both are in use (Scenic and big_vision average logits; mmaction2's ``average_clips='prob'``
averages probabilities). They rank classes differently when one confident view disagrees with
several lukewarm ones, so the mode is an explicit option and is reported with the result.

Accumulation is streaming and bounded, as in Scenic's evaluators: :class:`ViewAccumulator` keeps
one running float64 sum ``[classes]`` and the set of seen view indices per video, never the views
themselves, and nothing is merged through text files (mmaction2's per-clip score dumps); results
from several processes are merged as in-memory tensors (:meth:`ViewAccumulator.merge`).

Rules (tested):

* A ``(video, view)`` pair that arrives twice is an error (:class:`DuplicateViewError`): silently
  averaging a view twice would weight it double.
* A video with fewer views than ``expected_views`` is handled by ``missing``:
  ``"average"`` (default) averages the views it has and counts it in ``incomplete``;
  ``"drop"`` leaves it out of the scores (and counts it in ``incomplete``);
  ``"error"`` raises :class:`MissingViewsError`. A view index ``>= expected_views`` is an error.
  With ``expected_views=None`` every video is complete by definition.
* Labels, when given per view, must agree across a video's views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from tubevit.defaults import AGGREGATIONS

__all__ = [
    "AGGREGATIONS",
    "MISSING_POLICIES",
    "DuplicateViewError",
    "MissingViewsError",
    "VideoScores",
    "ViewAccumulator",
    "aggregate_views",
]

MISSING_POLICIES = ("average", "drop", "error")


class DuplicateViewError(ValueError):
    """The same ``(video, view)`` pair was given twice."""


class MissingViewsError(ValueError):
    """A video has fewer views than expected and ``missing="error"``."""


def check_aggregation(mode: str) -> str:
    if mode not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {mode!r}")
    return mode


@dataclass
class VideoScores:
    """Per-video result of aggregation, sorted by video index.

    ``scores [M, K]`` are mean logits (``mean_logits``) or mean probabilities (``mean_probs``);
    ``labels [M]`` are ``-1`` where no label was given; ``views [M]`` is how many views were
    averaged; ``incomplete`` lists the video indices that had fewer than ``expected_views`` views
    (kept when ``missing="average"``, dropped when ``missing="drop"``).
    """

    videos: torch.Tensor  # int64 [M]
    scores: torch.Tensor  # float32 [M, K]
    labels: torch.Tensor  # int64 [M]
    views: torch.Tensor  # int64 [M]
    aggregation: str
    incomplete: list[int]

    @property
    def probs(self) -> torch.Tensor:
        """Per-video class probabilities: softmax of the mean logits, or the mean probabilities."""
        if self.aggregation == "mean_probs":
            return self.scores
        return torch.softmax(self.scores.double(), dim=-1).float()

    def __len__(self) -> int:
        return int(self.videos.numel())


class ViewAccumulator:
    """Streaming per-video aggregation of per-view outputs (bounded memory: O(videos x classes)).

    >>> acc = ViewAccumulator(num_classes=3, aggregation="mean_logits", expected_views=2)
    >>> acc.add([0, 0], [0, 1], torch.tensor([[1., 0, 0], [3., 0, 0]]), labels=[0, 0])
    >>> acc.result().scores
    tensor([[2., 0., 0.]])
    """

    def __init__(
        self,
        num_classes: int,
        aggregation: str = "mean_logits",
        *,
        expected_views: int | None = None,
        missing: str = "average",
    ):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if missing not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
        if expected_views is not None and expected_views < 1:
            raise ValueError(f"expected_views must be >= 1, got {expected_views}")
        self.num_classes = int(num_classes)
        self.aggregation = check_aggregation(aggregation)
        self.expected_views = expected_views
        self.missing = missing
        self._sum: dict[int, torch.Tensor] = {}
        self._seen: dict[int, set[int]] = {}
        self._label: dict[int, int] = {}

    # ------------------------------------------------------------------ adding
    def add(self, videos, views, outputs: torch.Tensor, labels=None) -> None:
        """Add one chunk of views: ``videos [N]``, ``views [N]`` (ints), ``outputs [N, K]`` logits,
        optional ``labels [N]`` (per view; -1 for none)."""
        videos = _as_long(videos)
        views = _as_long(views)
        outputs = torch.as_tensor(outputs)
        if outputs.dim() != 2 or outputs.shape[1] != self.num_classes:
            raise ValueError(f"outputs must be [N, {self.num_classes}], got {tuple(outputs.shape)}")
        n = outputs.shape[0]
        if videos.numel() != n or views.numel() != n:
            raise ValueError(f"videos ({videos.numel()}), views ({views.numel()}) and outputs ({n}) differ in length")
        if labels is not None:
            labels = _as_long(labels)
            if labels.numel() != n:
                raise ValueError(f"labels ({labels.numel()}) and outputs ({n}) differ in length")
        if n == 0:
            return
        if (views < 0).any() or (videos < 0).any():
            raise ValueError("video and view indices must be non-negative")
        if self.expected_views is not None and int(views.max()) >= self.expected_views:
            raise ValueError(f"view index {int(views.max())} out of range for {self.expected_views} views per video")
        # Within-chunk duplicates, checked before anything is added so a failed call changes nothing.
        pairs = list(zip(videos.tolist(), views.tolist()))
        if len(set(pairs)) != n:
            dup = next(p for i, p in enumerate(pairs) if p in pairs[:i])
            raise DuplicateViewError(f"(video, view) pair {dup} given twice")
        for v, w in pairs:
            if w in self._seen.get(v, ()):
                raise DuplicateViewError(f"(video, view) pair {(v, w)} given twice")
        if labels is not None:
            chunk_labels: dict[int, int] = {}
            for (v, _), y in zip(pairs, labels.tolist()):
                old = chunk_labels.get(v, self._label.get(v, -1))
                if y >= 0 and old >= 0 and old != y:
                    raise ValueError(f"video {v} has views with different labels ({old} and {y})")
                if y >= 0:
                    chunk_labels[v] = y

        x = outputs.detach().to("cpu", torch.float64)
        if self.aggregation == "mean_probs":
            x = torch.softmax(x, dim=-1)
        # Sum the chunk per video first (one index_add), then fold into the running sums.
        uniq, inverse = torch.unique(videos, return_inverse=True)
        chunk = torch.zeros(uniq.numel(), self.num_classes, dtype=torch.float64).index_add_(0, inverse, x)
        for row, v in enumerate(uniq.tolist()):
            if v in self._sum:
                self._sum[v] += chunk[row]
            else:
                self._sum[v] = chunk[row].clone()
                self._seen[v] = set()
        for (v, w) in pairs:
            self._seen[v].add(w)
        if labels is not None:
            for (v, _), y in zip(pairs, labels.tolist()):
                if y >= 0:
                    self._label[v] = y

    # ------------------------------------------------------------------ state / merge
    @property
    def videos(self) -> list[int]:
        return sorted(self._sum)

    def state(self) -> dict:
        """Tensors only (for ``all_gather_object`` or saving): video ids, sums, view counts, view
        masks as sorted view lists, labels."""
        vids = self.videos
        return {
            "videos": torch.tensor(vids, dtype=torch.long),
            "sums": torch.stack([self._sum[v] for v in vids]) if vids else torch.zeros(0, self.num_classes, dtype=torch.float64),
            "seen": [sorted(self._seen[v]) for v in vids],
            "labels": torch.tensor([self._label.get(v, -1) for v in vids], dtype=torch.long),
        }

    def merge(self, state: dict, *, dedupe: bool = False) -> None:
        """Fold another accumulator's :meth:`state` in.

        ``dedupe=False``: views of the same video from both sides are combined; a view present
        on both sides is a :class:`DuplicateViewError`. ``dedupe=True`` (distributed evaluation,
        where a sampler pads the last shard by repeating samples): a video already present here
        is skipped entirely, so a repeated sample counts once.
        """
        for i, v in enumerate(state["videos"].tolist()):
            seen = set(state["seen"][i])
            y = int(state["labels"][i])
            if v in self._sum:
                if dedupe:
                    continue
                both = self._seen[v] & seen
                if both:
                    raise DuplicateViewError(f"(video, view) pair {(v, min(both))} given twice")
                old = self._label.get(v, -1)
                if y >= 0 and old >= 0 and y != old:
                    raise ValueError(f"video {v} has views with different labels ({old} and {y})")
                self._sum[v] = self._sum[v] + state["sums"][i].double()
                self._seen[v] |= seen
            else:
                self._sum[v] = state["sums"][i].double().clone()
                self._seen[v] = seen
            if y >= 0:
                self._label[v] = y

    # ------------------------------------------------------------------ result
    def result(self) -> VideoScores:
        vids, keep, incomplete = self.videos, [], []
        for v in vids:
            n = len(self._seen[v])
            if self.expected_views is not None and n < self.expected_views:
                incomplete.append(v)
                if self.missing == "error":
                    raise MissingViewsError(
                        f"video {v} has {n} of {self.expected_views} views (views {sorted(self._seen[v])}); "
                        "use missing='average' to average the views it has, or 'drop' to leave it out"
                    )
                if self.missing == "drop":
                    continue
            keep.append(v)
        if keep:
            counts = torch.tensor([len(self._seen[v]) for v in keep], dtype=torch.long)
            scores = torch.stack([self._sum[v] for v in keep]) / counts.unsqueeze(1).double()
        else:
            counts = torch.zeros(0, dtype=torch.long)
            scores = torch.zeros(0, self.num_classes, dtype=torch.float64)
        return VideoScores(
            videos=torch.tensor(keep, dtype=torch.long),
            scores=scores.float(),
            labels=torch.tensor([self._label.get(v, -1) for v in keep], dtype=torch.long),
            views=counts,
            aggregation=self.aggregation,
            incomplete=incomplete,
        )


def aggregate_views(
    videos,
    views,
    outputs: torch.Tensor,
    *,
    labels=None,
    aggregation: str = "mean_logits",
    expected_views: int | None = None,
    missing: str = "average",
    chunk_size: int = 4096,
) -> VideoScores:
    """One-call form of :class:`ViewAccumulator`: all views at once, added in chunks of
    ``chunk_size`` rows."""
    outputs = torch.as_tensor(outputs)
    if outputs.dim() != 2:
        raise ValueError(f"outputs must be [N, classes], got {tuple(outputs.shape)}")
    acc = ViewAccumulator(outputs.shape[1], aggregation, expected_views=expected_views, missing=missing)
    videos, views = _as_long(videos), _as_long(views)
    labels = None if labels is None else _as_long(labels)
    for s in range(0, max(outputs.shape[0], 1), chunk_size):
        e = s + chunk_size
        acc.add(videos[s:e], views[s:e], outputs[s:e], None if labels is None else labels[s:e])
    return acc.result()


def _as_long(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.is_floating_point():
            raise TypeError("video/view indices and labels must be integers")
        return x.detach().to("cpu", torch.long).reshape(-1)
    if isinstance(x, Iterable):
        x = list(x)
    t = torch.as_tensor(x)
    if t.is_floating_point():
        raise TypeError("video/view indices and labels must be integers")
    return t.to(torch.long).reshape(-1)
