"""albumentations pipelines on uint8 arrays: the papers' train augmentation and the TF-style eval crop."""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from lit_effnet.data.randaugment import RandAugment

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def _interpolation(name: str) -> int:
    try:
        return INTERPOLATIONS[name]
    except KeyError:
        raise ValueError(f"unknown interpolation {name!r}; choose from {list(INTERPOLATIONS)}") from None


def _normalise(mean: Sequence[float], std: Sequence[float]) -> list:
    return [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]


def train_transform(
    size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    randaug_magnitude: float = 0.0,
    randaug_ops: int = 2,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    hflip: bool = True,
    cutout: float = 0.0,
    interpolation: str = "bilinear",
) -> A.Compose:
    """Random-resized crop to `size`, flip, RandAugment at the stage's magnitude, [cutout], normalise.

    `cutout` is the side of one grey square as a fraction of the image (the transfer recipe, facts 5).
    """
    steps = [
        A.RandomResizedCrop(size=(size, size), scale=tuple(crop_scale), interpolation=_interpolation(interpolation))
    ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if randaug_magnitude > 0:
        steps.append(RandAugment(num_ops=randaug_ops, magnitude=randaug_magnitude))
    if cutout > 0:
        side = max(1, round(cutout * size))
        steps.append(
            A.CoarseDropout(
                num_holes_range=(1, 1), hole_height_range=(side, side), hole_width_range=(side, side), fill=128, p=1.0
            )
        )
    return A.Compose([*steps, *_normalise(mean, std)])


def eval_transform(
    size: int, *, mean: Sequence[float], std: Sequence[float], crop_pct: float = 1.0, interpolation: str = "bicubic"
) -> A.Compose:
    """Resize the short side to size / crop_pct, centre-crop `size` (TF eval: crop_pct = size / (size + 32))."""
    resize = max(size, round(size / crop_pct))
    return A.Compose(
        [
            A.SmallestMaxSize(max_size=resize, interpolation=_interpolation(interpolation)),
            A.CenterCrop(height=size, width=size),
            *_normalise(mean, std),
        ]
    )
