"""The train and eval pipelines: crops, sizes, cutout and the on-device normalisation, pinned by hand."""

import random
import re

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2

from lit_effnet.data.decode import CropBox
from lit_effnet.data.randaugment import RandAugment
from lit_effnet.data.transforms import (
    Cutout,
    DecodeCrop,
    Normalize,
    TrainTransform,
    eval_transform,
    train_transform,
)
from lit_effnet.errors import ConfigError

RNG = np.random.default_rng(0)


def coordinates_image(h: int, w: int) -> np.ndarray:
    """Pixel (y, x) holds (y, x, 0): a crop shows exactly which rows and columns it kept."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([y, x, np.zeros_like(y)], -1).astype(np.uint8)


def test_train_and_eval_transforms_give_uint8_tensors_at_their_sizes():
    image = RNG.integers(0, 256, (24, 30, 3), dtype=np.uint8)
    out = train_transform(16, randaug_magnitude=9)(image, seed=0)
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    assert eval_transform(20, crop_pct=0.875)(image=image)["image"].shape == (3, 20, 20)


def test_center_eval_resizes_the_short_side_to_size_over_crop_pct_then_crops_the_centre():
    # 100 x 200 image, size 40, crop_pct 0.8: short side -> 50 (x0.5), long side -> 100; crop rows 5..44 and
    # columns 30..69 of the resized image, i.e. rows 10..88 and columns 60..138 of the original.
    image = coordinates_image(100, 200)
    out = eval_transform(40, crop_pct=0.8, interpolation="nearest")(image=image)["image"]
    rows, cols = out[0, :, 0].int(), out[1, 0, :].int()
    assert (int(rows[0]), int(rows[-1])) == (10, 88)
    assert (int(cols[0]), int(cols[-1])) == (60, 138)


def test_official_eval_crops_size_over_size_plus_32_below_320_and_resizes_the_whole_image_from_320():
    image = coordinates_image(100, 200)
    small = eval_transform(64, crop="official", interpolation="nearest")(image=image)["image"]
    side = int(64 / 96 * 100)  # the central 66 x 66 of the short side, resized to 64
    assert int(small[0, 0, 0]) == (100 - side) // 2 and int(small[1, 0, 0]) == (200 - side) // 2
    large = eval_transform(320, crop="official", interpolation="nearest")(image=image)["image"]
    assert large.shape == (3, 320, 320) and int(large[0, -1, 0]) == 99 and int(large[1, 0, -1]) == 199  # no crop


def test_whole_image_train_crop_keeps_the_whole_image():
    image = coordinates_image(60, 90)
    out = train_transform(30, crop="whole", hflip=False, interpolation="nearest")(image, seed=0)
    assert int(out[0, 0, 0]) == 0 and int(out[0, -1, 0]) == 58 and int(out[1, 0, -1]) == 87
    expected = A.Compose([A.Resize(30, 30, interpolation=cv2.INTER_NEAREST), ToTensorV2()])(image=image)["image"]
    assert torch.equal(out, expected)


def albumentations_reference(size, scale, steps, seed):
    """The full-resolution pipeline from albumentations' own transforms: RandomResizedCrop, then `steps`, every
    step drawing from one generator pair seeded with `seed`, in order (what TrainTransform promises)."""
    crop = A.RandomResizedCrop(size=(size, size), scale=scale, interpolation=cv2.INTER_LINEAR)
    compose = A.Compose([crop, *steps, ToTensorV2()])
    rng, generator = random.Random(seed), np.random.default_rng(seed)
    for step in compose.transforms:
        step.set_random_state(generator, rng)
    return compose


def test_train_transform_draws_what_albumentations_random_resized_crop_and_steps_draw():
    """On an array (no decode to reduce) the output equals albumentations' RandomResizedCrop -> flip -> RandAugment
    -> cutout, bit for bit, with one generator pair per sample shared by the steps."""
    image = RNG.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    transform = train_transform(48, randaug_magnitude=9, crop_scale=(0.08, 1.0), cutout=0.3)
    for seed in range(40):
        steps = [A.HorizontalFlip(p=0.5), RandAugment(num_ops=2, magnitude=9), Cutout(0.3)]
        expected = albumentations_reference(48, (0.08, 1.0), steps, seed)(image=image)["image"]
        assert torch.equal(transform(image, seed), expected)
        assert torch.equal(transform(image, seed), expected)  # a function of the seed alone


def _flipped_and_area(out: torch.Tensor, height: int, width: int) -> tuple[bool, float]:
    """From a nearest-neighbour crop of `coordinates_image`: was it flipped, and which fraction of the image is it."""
    rows, cols = out[0, :, 0].int(), out[1, 0, :].int()
    flipped = bool(cols[0] > cols[-1])
    return flipped, ((rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)).item() / (height * width)


def test_the_steps_draw_independently_of_the_crop():
    """albumentations' Compose.set_random_seed gives every step its own generator seeded alike, so the flip's draw
    was the crop's first draw: no crop of more than 60% of the image was ever flipped. One shared pair fixes it."""
    height, width = 200, 240
    image = coordinates_image(height, width)
    ours = train_transform(32, crop_scale=(0.08, 1.0), interpolation="nearest")
    old = A.Compose([A.RandomResizedCrop(size=(32, 32), interpolation=cv2.INTER_NEAREST), A.HorizontalFlip(p=0.5)])
    large, old_large = [], []
    for seed in range(1500):
        flipped, area = _flipped_and_area(ours(image, seed), height, width)
        if area > 0.6:
            large.append(flipped)
        old.set_random_seed(seed)
        old_flipped, old_area = _flipped_and_area(ToTensorV2()(image=old(image=image)["image"])["image"], height, width)
        if old_area > 0.6:
            old_large.append(old_flipped)
    assert len(large) > 250 and len(old_large) > 250
    assert abs(np.mean(large) - 0.5) < 0.1  # standard error ~0.03
    assert np.mean(old_large) == 0.0  # the correlation this replaces


def test_cutout_is_a_square_of_the_given_side_centred_anywhere_clipped_and_filled():
    image = np.zeros((40, 40, 3), np.uint8)
    grey, noise = Cutout(0.5, "grey"), Cutout(0.5, "noise")
    sides = []
    for seed in range(30):
        grey.set_random_seed(seed)
        mask = (grey(image=image)["image"] == 128).all(-1)
        sides.append((mask.any(1).sum(), mask.any(0).sum()))
        assert mask.sum() == sides[-1][0] * sides[-1][1]  # one rectangle
    assert max(max(s) for s in sides) == 20 and min(min(s) for s in sides) < 20  # side 20, clipped at borders
    noise.set_random_seed(0)
    filled = noise(image=image)["image"]
    values = filled[filled.any(-1)]
    assert values.min() >= 128 and len(np.unique(values)) > 50  # uniform noise in [128, 255]


def test_normalize_is_x_over_255_minus_mean_over_std_per_channel():
    images = torch.tensor([[[[0]], [[255]], [[51]]]], dtype=torch.uint8)  # one 1x1 image, three channels
    out = Normalize((0.5, 0.5, 0.2), (0.5, 0.25, 0.1))(images)
    assert out.dtype == torch.float32
    assert out.flatten().tolist() == pytest.approx([-1.0, 2.0, 0.0])


def test_train_transform_without_flip_never_flips_and_draws_crop_areas_from_crop_scale():
    height, width = 200, 200
    image = coordinates_image(height, width)
    transform = train_transform(16, hflip=False, crop_scale=(0.3, 0.5), interpolation="nearest")
    areas = []
    for seed in range(40):
        flipped, _ = _flipped_and_area(transform(image, seed), height, width)
        assert not flipped
        box = transform.crop.box(image, random.Random(seed))
        areas.append(box.width * box.height / (height * width))
    assert min(areas) >= 0.29 and max(areas) <= 0.51  # whole-pixel boxes round the drawn area by under 1%


def test_train_transform_settings_reach_their_steps():
    transform = train_transform(16, randaug_magnitude=0.5, randaug_ops=1, cutout=0.25, cutout_fill="noise")
    flip, randaugment, cutout, to_tensor = transform.steps.transforms
    assert isinstance(flip, A.HorizontalFlip) and isinstance(to_tensor, ToTensorV2)
    assert isinstance(randaugment, RandAugment) and (randaugment.num_ops, randaugment.magnitude) == (1, 0.5)
    assert isinstance(cutout, Cutout) and (cutout.fraction, cutout.fill) == (0.25, "noise")
    plain = train_transform(16, randaug_magnitude=0, cutout=0)  # magnitude 0 and cutout 0 turn the steps off
    assert [type(step) for step in plain.steps.transforms] == [A.HorizontalFlip, ToTensorV2]


def test_decode_crop_draws_random_resized_boxes_by_default_at_the_given_aspect_ratios():
    image = np.zeros((200, 300, 3), np.uint8)
    boxes = {DecodeCrop(32).box(image, random.Random(seed)) for seed in range(20)}
    assert len(boxes) > 10 and CropBox(0, 0, 300, 200) not in boxes  # not the whole image unless asked
    for seed in range(20):
        box = DecodeCrop(32, ratio=(2.0, 2.0)).box(image, random.Random(seed))
        assert box.width / box.height == pytest.approx(2.0, rel=0.05)


def test_every_step_of_a_train_transform_draws_from_the_samples_seed_numpy_ones_too():
    # GaussNoise draws from the numpy generator of the pair (the shipped steps draw only from `random`).
    transform = TrainTransform(DecodeCrop(16), A.Compose([A.GaussNoise(p=1.0), ToTensorV2()]))
    image = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert torch.equal(transform(image, seed=3), transform(image, seed=3))
    assert not torch.equal(transform(image, seed=3), transform(image, seed=4))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: train_transform(16, interpolation="lanczos"),
            "unknown interpolation 'lanczos'; choose from ['nearest', 'bilinear', 'bicubic']",
        ),
        (lambda: eval_transform(16, interpolation="area"), "unknown interpolation 'area'; choose from ['nearest'"),
        (
            lambda: train_transform(16, crop="centre"),
            "data.train_crop must be 'random_resized' or 'whole', got 'centre'",
        ),
        (lambda: eval_transform(16, crop="centre"), "data.eval_crop must be 'center' or 'official', got 'centre'"),
    ],
)
def test_bad_transform_settings_name_the_setting_and_the_choices(build, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build()
