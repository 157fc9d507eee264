"""The transforms' exact boxes and fills, pinned by hand where tests/data/test_transforms.py checks sizes."""

import albumentations as A
import cv2
import numpy as np
import pytest

from lit_effnet.data.transforms import CentralFraction, Cutout, eval_transform


def coordinates_image(h: int, w: int) -> np.ndarray:
    """Pixel (y, x) holds (y, x, 0)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([y, x, np.zeros_like(y)], -1).astype(np.uint8)


def painted(out: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero((out == 128).all(-1))
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


@pytest.mark.parametrize(
    ("center", "box"),
    [
        ((20, 15), (10, 30, 5, 25)),  # side 0.5 x 40 = 20: rows and columns centre -+ 10
        ((2, 3), (0, 12, 0, 13)),  # clipped at the top and left borders, from row and column 0
        ((39, 38), (29, 40, 28, 40)),  # clipped at the bottom and right borders
    ],
)
def test_cutout_paints_rows_and_columns_centre_minus_half_to_centre_plus_half_clipped_to_the_image(center, box):
    image = np.zeros((40, 40, 3), np.uint8)
    assert painted(Cutout(0.5, "grey").apply(image, center=center)) == box


def test_noise_cutout_fills_uniformly_from_128_to_255_reproducibly_from_the_samples_seed():
    image = np.zeros((16, 16, 3), np.uint8)
    cutout = Cutout(2.0, "noise")  # a square of twice the side: the whole image, wherever its centre falls
    fills = []
    for seed in (1, 1, 2):
        cutout.set_random_seed(seed)
        fills.append(cutout(image=image)["image"])
    assert fills[0].min() == 128 and fills[0].max() == 255  # 16 x 16 x 3 draws cover both ends
    np.testing.assert_array_equal(fills[0], fills[1])  # the same sample seed: the same noise
    assert (fills[0] != fills[2]).mean() > 0.9  # another sample: other noise
    patterns = set()
    for seed in range(80):
        cutout.set_random_seed(seed)
        patterns.add(cutout(image=image)["image"].tobytes())
    assert len(patterns) == 80  # a noise of its own for every sample, not one of a few


def test_central_fraction_keeps_the_central_square_of_that_fraction_of_the_short_side():
    out = CentralFraction(0.6).apply(coordinates_image(100, 200))
    assert out.shape == (60, 60, 3)
    assert (int(out[0, 0, 0]), int(out[-1, 0, 0])) == (20, 79)  # rows 20..79 of 100
    assert (int(out[0, 0, 1]), int(out[0, -1, 1])) == (70, 129)  # columns 70..129 of 200


@pytest.mark.parametrize(
    ("transform", "settings"),
    [
        (Cutout(0.3, "noise", p=0.6), {"fraction": 0.3, "fill": "noise", "p": 0.6}),
        (CentralFraction(0.7), {"fraction": 0.7}),
    ],
)
def test_the_eval_and_cutout_transforms_round_trip_through_albumentations_serialisation(transform, settings):
    again = A.from_dict(A.to_dict(transform))
    assert type(again) is type(transform)
    assert {key: getattr(again, key) for key in settings} == settings


def test_a_cutout_whose_side_rounds_to_one_pixel_paints_nothing_by_the_half_side_rule():
    image = np.zeros((40, 40, 3), np.uint8)
    assert not Cutout(0.02, "grey").apply(image, center=(20, 20)).any()  # side round(0.8) = 1, half side 0
    assert painted(Cutout(0.05, "grey").apply(image, center=(20, 20))) == (19, 21, 19, 21)  # side 2: 2 x 2


def central_square(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def test_official_eval_is_the_central_size_over_size_plus_32_resized_bicubic_pixel_for_pixel():
    # 200 x 300: the central int(64 / 96 * 200) = 133 px square (size + 33 would give 131), bicubic to 64 x 64
    image = np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    out = eval_transform(64, crop="official")(image=image)["image"].permute(1, 2, 0).numpy()
    expected = cv2.resize(central_square(image, 133), (64, 64), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out, expected)
    out = eval_transform(320, crop="official")(image=image)["image"].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, cv2.resize(image, (320, 320), interpolation=cv2.INTER_CUBIC))  # no crop


def test_center_eval_defaults_to_crop_pct_1_and_bicubic():
    image = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = eval_transform(32)(image=image)["image"].permute(1, 2, 0).numpy()
    resized = cv2.resize(image, (43, 32), interpolation=cv2.INTER_CUBIC)  # short side 48 -> 32, 64 -> 43
    np.testing.assert_array_equal(out, resized[:, 5:37])  # the central 32 columns
