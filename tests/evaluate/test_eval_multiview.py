"""Closed-form tests of multi-view aggregation (tubevit.evaluate.multiview)."""

import math

import pytest
import torch

from tubevit.evaluate.multiview import (
    DuplicateViewError,
    MissingViewsError,
    ViewAccumulator,
    aggregate_views,
)


def test_mean_logits_closed_form():
    out = torch.tensor([[1.0, 0.0, 0.0], [3.0, 2.0, 0.0], [0.0, 0.0, 4.0]])
    r = aggregate_views([0, 0, 1], [0, 1, 0], out, labels=[0, 0, 2])
    assert r.videos.tolist() == [0, 1]
    assert torch.allclose(r.scores, torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 4.0]]))
    assert r.views.tolist() == [2, 1]
    assert r.labels.tolist() == [0, 2]
    assert r.aggregation == "mean_logits"
    # probs of mean_logits is the softmax of the mean logits
    assert torch.allclose(r.probs[0], torch.softmax(torch.tensor([2.0, 1.0, 0.0]), 0))


def test_mean_probs_closed_form():
    out = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # probs (1/2, 1/2) and (3/4, 1/4)
    r = aggregate_views([5, 5], [0, 1], out, aggregation="mean_probs")
    assert torch.allclose(r.scores, torch.tensor([[5 / 8, 3 / 8]]))
    assert torch.allclose(r.probs, r.scores)


def test_logits_and_probs_disagree_on_crafted_example():
    # One very confident view for class 0; two moderately confident views for class 1.
    # mean logits: class 0 = (10 + 0 + 0)/3 = 3.33 > class 1 = (0 + 2 + 2)/3 = 1.33 -> class 0
    # mean probs:  p0 ~ (1 + 0.12 + 0.12)/3 = 0.41 < p1 ~ 0.59 -> class 1
    out = torch.tensor([[10.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    a = aggregate_views([0, 0, 0], [0, 1, 2], out, aggregation="mean_logits")
    b = aggregate_views([0, 0, 0], [0, 1, 2], out, aggregation="mean_probs")
    assert a.scores.argmax(1).item() == 0
    assert b.scores.argmax(1).item() == 1
    s = torch.sigmoid(torch.tensor(-2.0)).item()  # softmax([0, 2])[0]
    p0 = (torch.sigmoid(torch.tensor(10.0)).item() + 2 * s) / 3
    assert b.scores[0, 0].item() == pytest.approx(p0, rel=1e-6)


def test_order_and_chunking_do_not_matter():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(24, 7, generator=g)
    vids = torch.arange(24) // 6
    views = torch.arange(24) % 6
    perm = torch.randperm(24, generator=g)
    a = aggregate_views(vids, views, out, expected_views=6)
    b = aggregate_views(vids[perm], views[perm], out[perm], expected_views=6, chunk_size=5)
    assert torch.allclose(a.scores, b.scores, atol=1e-6)
    assert torch.allclose(a.scores, out.reshape(4, 6, 7).mean(1), atol=1e-6)


def test_duplicate_pair_is_an_error_within_and_across_chunks():
    out = torch.zeros(2, 3)
    with pytest.raises(DuplicateViewError):
        aggregate_views([0, 0], [1, 1], out)
    acc = ViewAccumulator(3)
    acc.add([0], [1], out[:1])
    with pytest.raises(DuplicateViewError):
        acc.add([0], [1], out[:1])
    # the failed call changed nothing
    assert acc.result().views.tolist() == [1]


def test_missing_views_policies():
    out = torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 6.0]])
    vids, views = [0, 0, 1], [0, 1, 0]
    r = aggregate_views(vids, views, out, expected_views=2, missing="average")
    assert r.videos.tolist() == [0, 1] and r.incomplete == [1]
    assert torch.allclose(r.scores[1], torch.tensor([0.0, 6.0]))  # mean of the one view it has
    r = aggregate_views(vids, views, out, expected_views=2, missing="drop")
    assert r.videos.tolist() == [0] and r.incomplete == [1]
    with pytest.raises(MissingViewsError):
        aggregate_views(vids, views, out, expected_views=2, missing="error")
    with pytest.raises(ValueError):
        aggregate_views([0], [2], out[:1], expected_views=2)  # view index out of range


def test_bad_inputs():
    with pytest.raises(ValueError):
        aggregate_views([0], [0], torch.zeros(1, 3), aggregation="median")
    with pytest.raises(TypeError):
        aggregate_views(torch.tensor([0.0]), [0], torch.zeros(1, 3))
    with pytest.raises(ValueError):
        aggregate_views([0, 0], [0, 1], torch.zeros(2, 3), labels=[1, 2])  # conflicting labels


def test_merge_combines_and_dedupes():
    a, b = ViewAccumulator(2), ViewAccumulator(2)
    a.add([0], [0], torch.tensor([[2.0, 0.0]]), [1])
    b.add([0, 1], [1, 0], torch.tensor([[4.0, 0.0], [0.0, 1.0]]), [1, 0])
    a.merge(b.state())
    r = a.result()
    assert r.videos.tolist() == [0, 1]
    assert torch.allclose(r.scores, torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(DuplicateViewError):
        a.merge(b.state())
    # dedupe (distributed padding): a video already present is kept as is
    c = ViewAccumulator(2)
    c.add([1], [0], torch.tensor([[0.0, 1.0]]), [0])
    a.merge(c.state(), dedupe=True)
    assert torch.allclose(a.result().scores, r.scores)
