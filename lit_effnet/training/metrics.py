"""Accuracy as the papers count it: plain top-1 / top-5 over all images of a split.

torchmetrics' `MulticlassAccuracy` defaults to average="macro", the mean of per-class accuracies; the
official code, timm's and torchvision's references count correct predictions over all images ("micro").
The two agree only on balanced splits, so the per-class mean is kept under its own name.
"""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy


def accuracy_metrics(num_classes: int) -> MetricCollection:
    """acc1 and acc5 (plain, over all images) and acc1_per_class (mean of per-class accuracies).

    Updates read nothing back from the device: the labels come from the datasets, so torchmetrics' argument
    checks (unique values, ranges) are off, and so is its merging of metrics with equal states (it compares
    them on the host at the first updates).
    """
    kwargs = {"validate_args": False}
    return MetricCollection(
        {
            "acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro", **kwargs),
            "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro", **kwargs),
            "acc1_per_class": MulticlassAccuracy(num_classes, top_k=1, average="macro", **kwargs),
        },
        compute_groups=False,
    )
