"""Accuracy as the papers count it: plain top-1 / top-5 over all images of a split.

torchmetrics' `MulticlassAccuracy` defaults to average="macro", the mean of per-class accuracies; the
official code, timm's and torchvision's references count correct predictions over all images ("micro").
The two agree only on balanced splits, so the per-class mean is kept under its own name.
"""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy


def accuracy_metrics(num_classes: int) -> MetricCollection:
    """acc1 and acc5 (plain, over all images) and acc1_per_class (mean of per-class accuracies)."""
    return MetricCollection(
        {
            "acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            "acc1_per_class": MulticlassAccuracy(num_classes, top_k=1, average="macro"),
        }
    )
