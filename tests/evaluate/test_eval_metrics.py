"""Closed-form tests of tubevit.evaluate.metrics."""

import math

import numpy as np
import pytest
import torch

from tubevit.evaluate.metrics import (
    average_precision,
    confusion_matrix,
    mean_average_precision,
    mean_class_accuracy,
    per_class_accuracy,
    topk_accuracy,
)


def test_topk_accuracy_closed_form():
    scores = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1], [0.5, 0.3, 0.2]])
    labels = torch.tensor([0, 1, 1, 2])
    acc = topk_accuracy(scores, labels, ks=(1, 2, 5))
    assert acc[1] == pytest.approx(2 / 4)  # rows 0 and 2
    assert acc[2] == pytest.approx(3 / 4)  # + row 1 (0.2 second); row 3 label ranks third
    assert acc[5] == 1.0  # k capped at the class count
    # numpy in, same result
    assert topk_accuracy(scores.numpy(), labels.numpy(), ks=(1,))[1] == pytest.approx(0.5)


def test_confusion_and_per_class():
    preds = [0, 0, 1, 2, 2, 2]
    labels = [0, 1, 1, 2, 2, 0]
    m = confusion_matrix(preds, labels, 4)
    expected = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]])
    assert torch.equal(m, expected)
    pc = per_class_accuracy(m)
    assert pc[:3].tolist() == [0.5, 0.5, 1.0] and math.isnan(pc[3].item())
    assert mean_class_accuracy(m) == pytest.approx(2 / 3)
    # scores in -> argmax
    s = torch.nn.functional.one_hot(torch.tensor(preds), 4).float()
    assert torch.equal(confusion_matrix(s, labels, 4), expected)
    with pytest.raises(ValueError):
        confusion_matrix([4], [0], 4)


def test_average_precision_closed_form():
    # ranks: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): AP = (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))
    scores = np.array([[0.9, 0.1], [0.8, 0.9], [0.7, 0.2], [0.1, 0.3]])
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    # class 0: (1 + 2/3)/2 ; class 1: one positive ranked first -> 1
    assert mean_average_precision(scores, targets) == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
