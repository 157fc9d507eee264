import numpy as np
import pytest

from lit_effnet.data.randaugment import OPS, RandAugment, cutout

# A narrow 40..200 range, so AutoContrast and Equalize have something to stretch.
IMAGE = np.random.default_rng(0).integers(40, 200, (32, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", [n for n in OPS if n != "Cutout"])
def test_every_op_keeps_shape_and_dtype_and_changes_the_image_at_full_strength(name):
    fn, level_to_arg, _ = OPS[name]
    out = fn(IMAGE, level_to_arg(10.0))
    assert out.shape == IMAGE.shape and out.dtype == np.uint8
    assert not np.array_equal(out, IMAGE)


def test_enhance_ops_follow_tf_levels():
    _, level_to_arg, _ = OPS["Brightness"]
    assert level_to_arg(5.0) == pytest.approx(1.0)  # TF maps level 5 to the identity factor
    assert level_to_arg(10.0) == pytest.approx(1.9) and level_to_arg(20.0) == pytest.approx(3.7)


def test_posterize_and_solarize_grow_stronger_with_magnitude():
    posterize, to_shift, _ = OPS["Posterize"]
    solarize, to_threshold, _ = OPS["Solarize"]
    weak, strong = (np.abs(posterize(IMAGE, to_shift(m)).astype(int) - IMAGE).mean() for m in (2, 10))
    assert strong > weak
    weak, strong = (np.abs(solarize(IMAGE, to_threshold(m)).astype(int) - IMAGE).mean() for m in (2, 10))
    assert strong > weak


def test_cutout_paints_a_grey_square_relative_to_the_image():
    out = cutout(IMAGE, 0.25, (0.5, 0.5))
    assert (out[16, 20] == 128).all() and np.array_equal(out[0, 0], IMAGE[0, 0])
    assert (out == 128).all(axis=-1).sum() >= 16 * 16


def test_magnitude_zero_is_the_identity_and_layers_are_reproducible_by_seed():
    off = RandAugment(magnitude=0)
    off.set_random_seed(0)
    assert np.array_equal(off(image=IMAGE)["image"], IMAGE)
    on = RandAugment(num_ops=2, magnitude=9)
    outs = []
    for _ in range(2):
        on.set_random_seed(123)
        outs.append(on(image=IMAGE)["image"])
    assert np.array_equal(*outs)


def test_ops_are_drawn_uniformly_and_applied_with_tf_probability():
    augment = RandAugment(num_ops=2, magnitude=9)
    augment.set_random_seed(0)
    applied = [len(augment.get_params()["layers"]) for _ in range(4000)]
    names = [layer[0] for _ in range(2000) for layer in augment.get_params()["layers"]]
    assert np.mean(applied) == pytest.approx(2 * 0.5, abs=0.05)  # each layer kept with p ~ U(0.2, 0.8): 0.5
    counts = np.array([names.count(n) for n in OPS])
    assert counts.min() > 0.6 * counts.mean()  # all 16 ops drawn, none starved
