"""Evaluation: multi-view aggregation, metrics, the evaluator loop, confusion-matrix plots."""

from tubevit.evaluate.metrics import (
    confusion_matrix,
    mean_average_precision,
    mean_class_accuracy,
    per_class_accuracy,
    topk_accuracy,
)
from tubevit.evaluate.multiview import AGGREGATIONS, VideoScores, ViewAccumulator, aggregate_views

__all__ = [
    "AGGREGATIONS", "VideoScores", "ViewAccumulator", "aggregate_views", "confusion_matrix",
    "mean_average_precision", "mean_class_accuracy", "per_class_accuracy", "topk_accuracy",
]
