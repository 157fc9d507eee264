"""The papers' train augmentation and the eval crop, on uint8 images, ending in uint8 CHW tensors.

`train_transform` draws its random-resized crop from the image's header before decoding, then decodes
only what the crop needs (JPEG DCT scaling, lit_effnet/data/decode.py) and runs albumentations steps
(flip, RandAugment, cutout) on the crop; `eval_transform` is an albumentations pipeline on the decoded
image. `Normalize` turns a batch into float on the device it trains on (a quarter of the host-to-device
bytes of float32, and no per-pixel float work in the loader workers).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.core.transforms_interface import ImageOnlyTransform
from albumentations.pytorch import ToTensorV2

from lit_effnet.data.decode import (
    CropBox,
    EncodedImage,
    Source,
    decode_crop,
    image_shape,
    read_encoded,
    sample_crop_box,
)
from lit_effnet.data.randaugment import RandAugment
from lit_effnet.errors import ConfigError

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
TrainCrop = Literal["random_resized", "whole"]
EvalCrop = Literal["center", "official"]
CutoutFill = Literal["grey", "noise"]


def _interpolation(name: str) -> int:
    try:
        return INTERPOLATIONS[name]
    except KeyError:
        raise ConfigError(f"unknown interpolation {name!r}; choose from {list(INTERPOLATIONS)}") from None


class Cutout(ImageOnlyTransform):
    """One square of side `fraction` x the image, centred anywhere and clipped at the borders (TF's cutout).

    fill "grey": 128, TF's replace value; "noise": per-pixel uniform noise in [128, 255], what the official
    fine-tuning ('ft') gets from replacing a [-1, 1]-normalised image with uniform [0, 1) values.
    """

    def __init__(self, fraction: float, fill: CutoutFill = "grey", p: float = 1.0) -> None:
        super().__init__(p=p)
        self.fraction, self.fill = fraction, fill

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        return {"center": (self.py_random.randrange(h), self.py_random.randrange(w)), "seed": self.py_random.random()}

    def apply(self, img: np.ndarray, center: tuple[int, int] = (0, 0), seed: float = 0.0, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        half = max(1, round(self.fraction * min(h, w))) // 2
        top, left = max(center[0] - half, 0), max(center[1] - half, 0)
        bottom, right = min(center[0] + half, h), min(center[1] + half, w)
        out = img.copy()
        if self.fill == "grey":
            out[top:bottom, left:right] = 128
        else:
            noise = np.random.default_rng(int(seed * 2**32))
            out[top:bottom, left:right] = noise.integers(128, 256, (bottom - top, right - left, img.shape[2]))
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fraction", "fill")


class DecodeCrop:
    """The train crop of an image source, to size x size uint8 RGB: a random-resized crop (area fraction in
    `scale`, aspect ratio in `ratio`) or, with `whole`, the whole image.

    The box is drawn from the image's header before any pixel is decoded, by `sample_crop_box`:
    albumentations' RandomResizedCrop draw for draw, given a generator in the same state. Only then is a
    JPEG decoded, at the coarsest DCT scale that keeps the box at least `size` pixels on both sides; an
    array in memory or another format is cropped at full resolution, as RandomResizedCrop would.
    """

    def __init__(
        self,
        size: int,
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolation: int = cv2.INTER_LINEAR,
        whole: bool = False,
    ) -> None:
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)
        self.interpolation, self.whole = interpolation, whole

    def box(self, source: Source, rng: random.Random) -> CropBox:
        height, width = image_shape(source)
        if self.whole:
            return CropBox(0, 0, width, height)
        return sample_crop_box(rng, height, width, self.scale, self.ratio)

    def __call__(self, source: Source, rng: random.Random) -> np.ndarray:
        if not isinstance(source, (np.ndarray, EncodedImage, bytes)):
            source = read_encoded(source)  # read the file once, for its header and its pixels
        return decode_crop(source, self.box(source, rng), self.size, self.interpolation)


class TrainTransform:
    """An image source (file, `EncodedImage`, bytes or uint8 RGB array) -> the crop -> `steps` -> uint8 CHW tensor.

    Every random draw of a sample, the crop's box first, then the steps' in order, comes from one
    generator pair seeded with `seed` (`seed` None: fresh entropy). One pair per sample, shared by the
    steps, instead of albumentations' `Compose.set_random_seed`, which seeds a generator pair per step
    with the same seed: that costs ~4x the time (the seeding column of `python -m lit_effnet.bench pipeline`)
    and correlates the steps, since each step's first draw is then the same number (a crop of more than 60%
    of the image was never flipped).
    """

    def __init__(self, crop: DecodeCrop, steps: A.Compose) -> None:
        self.crop, self.steps = crop, steps

    def seeded(self, seed: int | None) -> random.Random:
        """Seed the sample's generator pair (handed to every step) and return its `random.Random`."""
        rng, generator = random.Random(seed), np.random.default_rng(seed)
        # The steps share the pair; the Compose keeps its own, drawn only against its p = 1.
        for step in self.steps.transforms:
            step.set_random_state(generator, rng)
        return rng

    def __call__(self, source: Source, seed: int | None = None) -> torch.Tensor:
        rng = self.seeded(seed)
        return self.steps(image=self.crop(source, rng))["image"]


def train_transform(
    size: int,
    *,
    randaug_magnitude: float = 0.0,
    randaug_ops: int = 2,
    crop: TrainCrop = "random_resized",
    crop_scale: tuple[float, float] = (0.05, 1.0),
    hflip: bool = True,
    cutout: float = 0.0,
    cutout_fill: CutoutFill = "grey",
    interpolation: str = "bilinear",
) -> TrainTransform:
    """Random-resized crop to `size` (or the whole image resized: the official fine-tuning), flip,
    RandAugment at the stage's magnitude, [cutout], to a uint8 CHW tensor: `transform(source, seed)`.

    The crop is `DecodeCrop`, not albumentations' RandomResizedCrop (or Resize): the same boxes from the
    same draws, but drawn before decoding, so that a JPEG is decoded at reduced scale. `cutout` is the side
    of one square as a fraction of the image (the transfer recipe, facts 5).
    """
    method = _interpolation(interpolation)
    if crop not in ("random_resized", "whole"):
        raise ConfigError(f"data.train_crop must be 'random_resized' or 'whole', got {crop!r}")
    steps = [A.HorizontalFlip(p=0.5)] if hflip else []
    if randaug_magnitude > 0:
        steps.append(RandAugment(num_ops=randaug_ops, magnitude=randaug_magnitude))
    if cutout > 0:
        steps.append(Cutout(cutout, cutout_fill))
    decode = DecodeCrop(size, scale=tuple(crop_scale), interpolation=method, whole=crop == "whole")
    return TrainTransform(decode, A.Compose([*steps, ToTensorV2()]))


def eval_transform(
    size: int, *, crop_pct: float = 1.0, crop: EvalCrop = "center", interpolation: str = "bicubic"
) -> A.Compose:
    """`center` (timm): resize the short side to size / crop_pct, centre-crop `size`.

    `official` (the V2 code's preprocess_for_eval): below 320 px centre-crop size / (size + 32) of the short
    side, then resize to size x size; from 320 px the whole image resized to a square, without a crop.
    """
    method = _interpolation(interpolation)
    if crop not in ("center", "official"):
        raise ConfigError(f"data.eval_crop must be 'center' or 'official', got {crop!r}")
    if crop == "center":
        steps = [A.SmallestMaxSize(max_size=max(size, round(size / crop_pct)), interpolation=method)]
        steps.append(A.CenterCrop(height=size, width=size))
    elif size < 320:
        steps = [CentralFraction(size / (size + 32)), A.Resize(size, size, interpolation=method)]
    else:
        steps = [A.Resize(size, size, interpolation=method)]
    return A.Compose([*steps, ToTensorV2()])


class CentralFraction(ImageOnlyTransform):
    """The central square of side `fraction` x the short side (TF's crop_to_bounding_box at eval)."""

    def __init__(self, fraction: float, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.fraction = fraction

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        side = int(self.fraction * min(h, w))
        top, left = (h - side) // 2, (w - side) // 2
        return img[top : top + side, left : left + side]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fraction",)


class Normalize:
    """uint8 NCHW -> float32 (x / 255 - mean) / std on the images' device (statistics cached per device)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.device not in self._on:
            stats = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (self.mean, self.std))
            self._on[images.device] = tuple(t.to(images.device) for t in stats)
        mean, std = self._on[images.device]
        return (images.float() / 255.0 - mean) / std
