"""Mixup and CutMix as the official EfficientNetV2 code mixes a batch (automl efficientnetv2/datasets.py).

Written here because no library does it this way: timm's `Mixup` picks mixup or CutMix per batch (or per
image); the official code, with both on, mixes the first half of every batch with mixup and the second half
with CutMix, each image with its mirror in the same half (image[::-1]):
- mixup: lambda ~ Beta(a, a) per image, taken as max(lambda, 1 - lambda), so the image keeps the larger part;
- CutMix: a box per image centred uniformly, its side sqrt(1 - area) of the image with area ~ Beta(a, a),
  clipped at the borders, filled from the mirror image; the labels mix by the box's actual area.
One difference: the official code weights the CutMix labels by the mean box area of the half-batch; here
each image's own box area is used (the CutMix paper's definition).

The random draws are made on the host from numpy's global generator (seeded before every batch by BatchSeeding), so a
batch on an accelerator is mixed without reading anything back from it.
"""

from __future__ import annotations

import numpy as np
import torch


def _beta(alpha: float, n: int) -> torch.Tensor:
    return torch.from_numpy(np.random.beta(alpha, alpha, n)).float()


def _mix_labels(targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """weight * own label + (1 - weight) * the mirror image's, per image."""
    weight = weight.to(targets.device, targets.dtype)[:, None]
    return weight * targets + (1.0 - weight) * targets.flip(0)


def mixup(images: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image blended with its mirror in the batch, keeping the larger share (max(l, 1 - l))."""
    lam = _beta(alpha, images.shape[0])
    lam = torch.maximum(lam, 1.0 - lam)
    weight = lam.to(images.device, images.dtype).view(-1, 1, 1, 1)
    return weight * images + (1.0 - weight) * images.flip(0), _mix_labels(targets, lam)


def cutmix(images: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A box of each image replaced by the same box of its mirror; labels mixed by the kept area."""
    n, _, h, w = images.shape
    side = (1.0 - _beta(alpha, n)).sqrt()
    cy, cx = torch.from_numpy(np.random.randint(0, h, n)), torch.from_numpy(np.random.randint(0, w, n))
    half_h, half_w = (side * h).long() // 2, (side * w).long() // 2
    top, bottom = (cy - half_h).clamp(0, h), (cy + half_h).clamp(0, h)
    left, right = (cx - half_w).clamp(0, w), (cx + half_w).clamp(0, w)
    kept = 1.0 - (bottom - top) * (right - left) / (h * w)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    box = (rows >= top[:, None, None]) & (rows < bottom[:, None, None])
    box = box & (cols >= left[:, None, None]) & (cols < right[:, None, None])
    box = box.to(images.device, non_blocking=True)[:, None]
    return torch.where(box, images.flip(0), images), _mix_labels(targets, kept.float())


class Mixing:
    """Mixup and/or CutMix with the official code's batch split; alphas change between batches (per stage)."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> None:
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed images and soft targets (label smoothing stays in the loss, applied once)."""
        # scatter, not F.one_hot: one_hot checks the labels' range, a device-to-host read on an accelerator
        targets = torch.zeros(labels.shape[0], self.num_classes, device=labels.device, dtype=images.dtype)
        targets.scatter_(1, labels[:, None], 1.0)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            half = images.shape[0] // 2
            first = mixup(images[:half], targets[:half], self.mixup_alpha)
            second = cutmix(images[half:], targets[half:], self.cutmix_alpha)
            return torch.cat([first[0], second[0]]), torch.cat([first[1], second[1]])
        if self.mixup_alpha > 0:
            return mixup(images, targets, self.mixup_alpha)
        return cutmix(images, targets, self.cutmix_alpha)
