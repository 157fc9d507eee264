"""RandAugment against the official code (automl efficientnetv2/autoaugment.py; docs/facts.md section 4)
and timm's ops. The per-op table is docs/randaugment.md."""

import hashlib
import inspect
from collections import Counter

import albumentations as A
import numpy as np
import pytest
from PIL import Image, ImageOps
from timm.data import auto_augment as timm_aa

from lit_effnet.data.randaugment import OPS, AugmentParams, RandAugment, contrast, cutout

TF = AugmentParams()  # translate_const 100, cutout_const 40
GREY = 128  # the official fill of geometric ops and cutout
SIGNED = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
# A narrow 40..200 range, so AutoContrast and Equalize have something to stretch.
IMAGE = np.random.default_rng(0).integers(40, 200, (48, 64, 3), dtype=np.uint8)


def arg(name: str, level: float, params: AugmentParams = TF) -> float:
    return OPS[name].level_to_arg(level, params)


def layers(augment: RandAugment, image: np.ndarray = IMAGE) -> list:
    return augment.get_params_dependent_on_data({"shape": image.shape}, {"image": image})["layers"]


def test_the_op_set_is_the_official_sixteen_with_the_official_signed_ones():
    assert list(OPS) == [
        "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
        "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd",
    ]  # fmt: skip
    assert [name for name, op in OPS.items() if op.signed] == list(SIGNED)


def test_every_image_gets_exactly_num_ops_ops_each_always_applied():
    augment = RandAugment(num_ops=2, magnitude=9)
    for seed in range(300):
        augment.set_random_seed(seed)
        drawn = layers(augment)
        assert len(drawn) == 2  # the official per-op probability is drawn and never used
        augment.set_random_seed(seed)
        expected = IMAGE
        for name, value, kwargs in drawn:
            expected = OPS[name].fn(expected, value, **kwargs)
        np.testing.assert_array_equal(augment(image=IMAGE)["image"], expected)
    augment = RandAugment(num_ops=3, magnitude=9)
    augment.set_random_seed(0)
    assert {len(layers(augment)) for _ in range(100)} == {3}


def test_ops_are_drawn_uniformly_with_replacement():
    augment = RandAugment(num_ops=2, magnitude=9)
    augment.set_random_seed(0)
    draws = [[name for name, _, _ in layers(augment)] for _ in range(2400)]
    counts = Counter(name for pair in draws for name in pair)
    assert set(counts) == set(OPS)  # all 16 appear
    assert min(counts.values()) > 0.8 * 300 and max(counts.values()) < 1.2 * 300  # 4800 draws / 16, none starved
    same = np.mean([a == b for a, b in draws])
    assert same == pytest.approx(1 / 16, abs=0.02)  # with replacement: both layers pick the same op 1/16 of the time


def test_signed_ops_flip_their_sign_half_the_time():
    augment = RandAugment(num_ops=2, magnitude=7)
    augment.set_random_seed(0)
    signs = {name: [] for name in SIGNED}
    for _ in range(3000):
        for name, value, _ in layers(augment):
            if name in signs:
                assert abs(value) == pytest.approx(arg(name, 7))
                signs[name].append(value > 0)
    for name, positive in signs.items():
        assert len(positive) > 200 and np.mean(positive) == pytest.approx(0.5, abs=0.1), name


def test_geometric_levels_follow_the_official_mapping_in_absolute_pixels():
    for level in (1, 5, 10, 25):
        assert arg("Rotate", level) == pytest.approx(30 * level / 10)  # degrees
        assert arg("ShearX", level) == arg("ShearY", level) == pytest.approx(0.3 * level / 10)
        assert arg("TranslateX", level) == arg("TranslateY", level) == pytest.approx(100 * level / 10)  # px
        assert arg("Cutout", level) == int(40 * level / 10)  # half-side in px
    small = AugmentParams(translate_const=30, cutout_const=12)
    assert arg("TranslateX", 5, small) == pytest.approx(15) and arg("Cutout", 5, small) == 6
    augment = RandAugment(magnitude=5, translate_const=30)
    augment.set_random_seed(0)
    moves = {abs(value) for _ in range(300) for name, value, _ in layers(augment) if name == "TranslateY"}
    assert moves == {15}  # the constructor's constant reaches the drawn layers, whatever the image size


def test_rotate_turns_counterclockwise_about_the_centre_with_grey_fill():
    square = IMAGE[:48, :48]
    np.testing.assert_array_equal(OPS["Rotate"].fn(square, 90.0), np.rot90(square, k=1))
    np.testing.assert_array_equal(OPS["Rotate"].fn(square, -90.0), np.rot90(square, k=-1))
    odd = IMAGE[:47, :47]  # the centre (23, 23) is a pixel, and stays put
    turned = OPS["Rotate"].fn(odd, 45.0)
    np.testing.assert_array_equal(turned[23, 23], odd[23, 23])
    assert (turned[0, 0] == GREY).all() and (turned[-1, -1] == GREY).all()  # the corners come from outside


def test_shear_and_translate_move_pixels_as_the_official_matrices_with_grey_fill():
    shear = 0.25
    sheared = OPS["ShearX"].fn(IMAGE, shear)  # output (x, y) takes input (x + shear * y, y)
    for y in (0, 4, 20, 47):
        offset = int(np.floor(shear * y + 0.5))
        np.testing.assert_array_equal(sheared[y, : 64 - offset], IMAGE[y, offset:])
        assert (sheared[y, 64 - offset :] == GREY).all()
    sheared = OPS["ShearY"].fn(IMAGE, -shear)  # output (x, y) takes input (x, y - shear * x)
    np.testing.assert_array_equal(sheared[8:, 32], IMAGE[:-8, 32])
    assert (sheared[:8, 32] == GREY).all()
    moved = OPS["TranslateX"].fn(IMAGE, 10.0)  # positive: the content moves left
    np.testing.assert_array_equal(moved[:, :54], IMAGE[:, 10:])
    assert (moved[:, 54:] == GREY).all()
    moved = OPS["TranslateY"].fn(IMAGE, -7.0)  # negative: the content moves down
    np.testing.assert_array_equal(moved[7:], IMAGE[:-7])
    assert (moved[:7] == GREY).all()


def test_posterize_weakens_above_level_10_as_the_official_mapping():
    assert [arg("Posterize", level) for level in (2, 5, 10, 15, 20, 25)] == [0, 2, 4, 6, 8, 10]  # bits kept
    posterize = OPS["Posterize"].fn
    for level, shift in ((1, 7), (5, 6), (10, 4), (15, 2)):  # 0 bits keeps 1: TF clamps the shift to 7
        np.testing.assert_array_equal(posterize(IMAGE, arg("Posterize", level)), (IMAGE >> shift) << shift)
    for level in (20, 22.5, 25):  # 8 bits kept; more would be a negative shift: the identity
        np.testing.assert_array_equal(posterize(IMAGE, arg("Posterize", level)), IMAGE)


def test_solarize_weakens_above_level_10_as_the_official_mapping():
    assert [arg("Solarize", level) for level in (2, 5, 10, 15, 25)] == [51, 128, 256, 384, 640]  # thresholds
    full = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=-1)
    solarized = OPS["Solarize"].fn(full, arg("Solarize", 5))
    np.testing.assert_array_equal(solarized, np.where(full < 128, full, 255 - full))
    inverted = [int((OPS["Solarize"].fn(full, arg("Solarize", level)) != full).any(-1).sum()) for level in (2, 5, 9)]
    assert inverted == [256 - 51, 128, 256 - 230]
    for level in (10, 15, 25):  # a threshold of 256 or more keeps every pixel
        np.testing.assert_array_equal(OPS["Solarize"].fn(full, arg("Solarize", level)), full)


def test_enhance_and_solarize_add_levels_follow_the_official_mapping_above_10_too():
    for name in ("Color", "Contrast", "Brightness", "Sharpness"):
        assert [arg(name, level) for level in (0, 5, 10, 25)] == pytest.approx([0.1, 1.0, 1.9, 4.6])
    assert [arg("SolarizeAdd", level) for level in (5, 10, 25)] == [55, 110, 275]
    np.testing.assert_array_equal(OPS["Brightness"].fn(IMAGE, arg("Brightness", 5)), IMAGE)  # 1.0: the identity
    added = OPS["SolarizeAdd"].fn(IMAGE, arg("SolarizeAdd", 25))
    np.testing.assert_array_equal(added, np.where(IMAGE < 128, 255, IMAGE))


def test_contrast_blends_with_the_official_grey_of_pixel_count_over_256():
    # the official code's "mean" is the histogram's count sum / 256, not the mean grey level
    for size, grey in ((128, 64), (224, 196), (300, 255)):
        image = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
        assert (contrast(image, 0.0) == grey).all()


def test_autocontrast_and_equalize_work_per_channel_and_leave_a_flat_channel():
    image = np.stack([IMAGE[..., 0] // 4 + 40, IMAGE[..., 1] // 2 + 100, np.full((48, 64), 77, np.uint8)], -1)
    stretched = OPS["AutoContrast"].fn(image, 0.0)
    for c in range(2):  # each channel's own [min, max] to [0, 255], truncated as TF (the top may land on 254)
        channel = image[..., c].astype(float)
        ideal = (channel - channel.min()) * 255 / (channel.max() - channel.min())
        assert np.all(np.abs(ideal - stretched[..., c] - 0.5) <= 0.5 + 1e-3)
    equalized = OPS["Equalize"].fn(image, 0.0)
    assert all(equalized[..., c].max() > 240 for c in range(2))
    assert (stretched[..., 2] == 77).all() and (equalized[..., 2] == 77).all()


def test_cutout_paints_a_grey_square_of_side_twice_the_level_half_side_clipped_at_the_borders():
    half = arg("Cutout", 5)  # 20 px at level 5
    image = np.random.default_rng(1).integers(0, 128, (100, 120, 3), dtype=np.uint8)  # never 128 by itself
    grey = (cutout(image, half, (50, 60)) == GREY).all(axis=-1)
    rows, cols = np.nonzero(grey)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (30, 70, 40, 80) and grey.sum() == 40 * 40
    grey = (cutout(image, half, (5, 110)) == GREY).all(axis=-1)
    rows, cols = np.nonzero(grey)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (0, 25, 90, 120)
    np.testing.assert_array_equal(cutout(image, half, (5, 110))[~grey], image[~grey])


def test_cutout_centres_are_uniform_over_the_pixels():
    augment = RandAugment(num_ops=2, magnitude=5)
    augment.set_random_seed(0)
    image = np.zeros((30, 50, 3), np.uint8)
    centres = np.array([k["center"] for _ in range(4000) for name, _, k in layers(augment, image) if name == "Cutout"])
    assert len(centres) > 300
    assert centres[:, 0].min() == 0 and centres[:, 0].max() == 29 and centres[:, 1].max() == 49
    assert centres.mean(axis=0) == pytest.approx([14.5, 24.5], rel=0.1)


# Digests of the official code's outputs (tensorflow 2.15.1, tensorflow_addons 0.23, graph mode), run once on
# GOLDEN_IMAGE at levels 3 and 15 with translate_const 10 and the negative sign. Left out: Solarize at 15,
# where ours keeps the image and TF wraps the threshold 384 to 128 (docs/randaugment.md).
GOLDEN_IMAGE = np.random.default_rng(7).integers(20, 230, (24, 32, 3), dtype=np.uint8)
TF_DIGESTS = {
    "AutoContrast": ("d54f088251b6", "d54f088251b6"),
    "Equalize": ("9820b104a9f1", "9820b104a9f1"),
    "Invert": ("50c8e0909887", "50c8e0909887"),
    "Rotate": ("56681f5c771c", "2fa1da6342b9"),
    "Posterize": ("fd833310d9c3", "c3eea20e2868"),
    "Solarize": ("f2d82a318dfa",),
    "SolarizeAdd": ("5a0834ca0379", "4a1351b9d683"),
    "Color": ("4ead931a04db", "b1fe85c5966f"),
    "Contrast": ("fb13862a58fc", "da5fd97686af"),
    "Brightness": ("f6cc416dc4c5", "b5448cb1e1c2"),
    "Sharpness": ("811377d4d701", "e13063688cd8"),
    "ShearX": ("5fbfae40953e", "8f625e60516f"),
    "ShearY": ("57df9b62179e", "58ad5bd1884e"),
    "TranslateX": ("691909eaa4f5", "85d5e480c6f8"),
    "TranslateY": ("04b89d225967", "add7e9dddf4a"),
}


@pytest.mark.parametrize("name", list(TF_DIGESTS))
def test_each_op_matches_the_official_tf_output_bit_for_bit(name):
    op = OPS[name]
    for level, digest in zip((3, 15), TF_DIGESTS[name]):
        value = op.level_to_arg(level, AugmentParams(translate_const=10))
        out = op.fn(GOLDEN_IMAGE, -value if op.signed else value)
        assert hashlib.sha256(out.tobytes()).hexdigest()[:12] == digest, level


def timm_op(name: str, image: np.ndarray, level: float) -> np.ndarray:
    """timm's PIL op at `level`, the sign fixed positive, nearest resampling and a 128 fill (as TF)."""
    level_to_arg = timm_aa.LEVEL_TO_ARG[name]
    args = [abs(a) for a in level_to_arg(level, {"translate_const": 10})] if level_to_arg else []
    out = timm_aa.NAME_TO_OP[name](Image.fromarray(image), *args, fillcolor=(GREY,) * 3, resample=Image.NEAREST)
    return np.asarray(out)


# Contrast: TF's grey is (pixel count) / 256, timm's the mean grey. Cutout: timm's RandAugment has none.
# Levels from 3 up: below 2.5, Posterize keeps 0 bits, which the installed Pillow refuses (TF keeps 1 bit).
SAME_AS_TIMM = [name for name in OPS if name not in ("Contrast", "Cutout")]


@pytest.mark.parametrize("name", SAME_AS_TIMM)
@pytest.mark.parametrize("level", [3, 7, 10])
def test_ops_agree_with_timms_at_the_same_level(name, level):
    ours = OPS[name].fn(IMAGE, abs(arg(name, level, AugmentParams(translate_const=10)))).astype(int)
    theirs = timm_op(name, IMAGE, level).astype(int)
    if name in ("ShearX", "ShearY"):
        # PIL samples at pixel centres (x + 0.5, y + 0.5), TF at (x, y): where the two round apart, ours is
        # timm's pixel one step along the shear axis. Checked away from the edges that lack that neighbour.
        axis = 1 if name == "ShearX" else 0
        inner = (slice(1, -1), slice(None)) if axis == 0 else (slice(None), slice(1, -1))
        near = [(np.roll(theirs, shift, axis) == ours)[inner].all(-1) for shift in (0, 1, -1)]
        assert np.logical_or.reduce(near).all()
        assert near[0].mean() > 0.8
    elif name in ("Rotate", "TranslateX", "TranslateY"):
        # the same sampling; nearest-pixel ties at x.5 may round apart on a few pixels
        assert (ours != theirs).any(-1).mean() < 0.01
    elif name in ("AutoContrast", "Color", "Sharpness"):
        # PIL rounds where TF truncates (its stretch, grey and smoothing): at most one grey level apart
        assert np.abs(ours - theirs).max() <= 1
    else:
        np.testing.assert_array_equal(ours, theirs)


def test_magnitude_zero_is_the_identity():
    augment = RandAugment(num_ops=2, magnitude=0)
    for seed in range(20):
        augment.set_random_seed(seed)
        assert layers(augment) == []
        np.testing.assert_array_equal(augment(image=IMAGE)["image"], IMAGE)


def test_the_same_seed_gives_the_same_output_and_another_seed_another():
    augment = A.Compose([RandAugment(num_ops=2, magnitude=9)])
    outs = []
    for seed in (123, 123, 124):
        augment.set_random_seed(seed)
        outs.append(augment(image=IMAGE)["image"])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_init_args_names_match_the_constructor_and_round_trip():
    augment = RandAugment(num_ops=3, magnitude=12.5, p=0.7, translate_const=50, cutout_const=20)
    names = [n for n in inspect.signature(RandAugment.__init__).parameters if n not in ("self", "p")]
    assert list(augment.get_transform_init_args_names()) == names
    again = A.from_dict(A.to_dict(augment))
    assert isinstance(again, RandAugment) and again.get_transform_init_args() == augment.get_transform_init_args()
    assert again.p == 0.7


def test_the_defaults_are_the_official_two_ops_at_magnitude_10_with_the_official_constants():
    augment = RandAugment()
    assert (augment.num_ops, augment.magnitude, augment.translate_const, augment.cutout_const) == (2, 10, 100, 40)


def test_cutout_const_and_a_magnitude_below_1_reach_the_drawn_ops():
    augment = RandAugment(num_ops=2, magnitude=5, cutout_const=10)
    augment.set_random_seed(0)
    drawn = [layer for _ in range(400) for layer in layers(augment)]
    assert {value for name, value, _ in drawn if name == "Cutout"} == {arg("Cutout", 5, AugmentParams(100, 10))}
    weak = RandAugment(num_ops=2, magnitude=0.5)
    weak.set_random_seed(0)
    assert {len(layers(weak)) for _ in range(20)} == {2}  # any magnitude above 0 applies the ops


def test_equalize_is_pils_image_ops_equalize_exactly_on_a_full_range_image():
    rng = np.random.default_rng(11)
    image = np.clip(rng.normal(90, 60, (40, 50, 3)), 0, 255).astype(np.uint8)  # skewed, 0 and 255 present
    theirs = np.asarray(ImageOps.equalize(Image.fromarray(image)))
    np.testing.assert_array_equal(OPS["Equalize"].fn(image, 0.0), theirs)


def test_the_pixel_ops_keep_black_black_and_posterize_7_bits_drops_only_the_lowest_bit():
    black = np.zeros((8, 8, 3), np.uint8)
    assert not OPS["Sharpness"].fn(black, 0.0).any()  # factor 0: the smoothed image itself
    assert not OPS["SolarizeAdd"].fn(black, 0.0).any()
    white = np.full((8, 8, 3), 255, np.uint8)
    assert (OPS["Posterize"].fn(white, 7) == 254).all()


def test_cutout_is_clipped_at_the_left_and_bottom_borders_too():
    image = np.zeros((100, 120, 3), np.uint8)
    grey = (cutout(image, 20, (95, 3)) == GREY).all(axis=-1)
    rows, cols = np.nonzero(grey)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (75, 100, 0, 23)
