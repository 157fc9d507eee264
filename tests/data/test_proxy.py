import numpy as np
import pytest

from lit_effnet.data.proxy import (
    DIGIT_SIZE,
    cluttered_digits,
    cluttered_digits_with_scans,
    digit_scans,
    scan_split,
)

SMALL = dict(num_train=300, num_val=100, canvas=64)


@pytest.fixture(scope="module")
def proxy():
    return cluttered_digits_with_scans(**SMALL, seed=0)


def test_shapes_dtypes_and_labels(proxy):
    train_images, train_labels, val_images, val_labels, train_scans, val_scans = proxy
    assert train_images.shape == (300, 64, 64, 3) and val_images.shape == (100, 64, 64, 3)
    assert train_images.dtype == val_images.dtype == np.uint8
    assert len(train_labels) == 300 and len(val_labels) == 100
    assert set(train_labels) == set(val_labels) == set(range(10))
    _, labels = digit_scans()
    assert train_labels == labels[train_scans].tolist() and val_labels == labels[val_scans].tolist()


def test_deterministic_for_a_seed_and_different_across_seeds(proxy):
    again = cluttered_digits(**SMALL, seed=0)
    for a, b in zip(proxy[:4], again):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    other = cluttered_digits(**SMALL, seed=1)
    assert not np.array_equal(proxy[0], other[0]) and not np.array_equal(proxy[2], other[2])


def test_classes_roughly_balanced(proxy):
    counts = np.bincount(proxy[1], minlength=10)
    assert counts.min() >= 20 and counts.max() <= 40  # 30 expected each


def test_train_and_val_use_disjoint_scans(proxy):
    train_scans, val_scans = proxy[4], proxy[5]
    assert not set(train_scans.tolist()) & set(val_scans.tolist())
    _, labels = digit_scans()
    train_pool, val_pool = scan_split(labels)
    assert not set(train_pool.tolist()) & set(val_pool.tolist())
    assert (len(train_pool), len(val_pool)) == (1437, 360)  # the split of `load_digits_splits`
    assert set(train_scans.tolist()) <= set(train_pool.tolist()) and set(val_scans.tolist()) <= set(val_pool.tolist())


def test_the_digit_is_small_on_a_cluttered_canvas(proxy):
    assert DIGIT_SIZE[1] ** 2 / 48**2 < 0.12  # the largest digit covers under 12% of the default canvas
    images = proxy[0].astype(np.float32)
    assert images.std(axis=(1, 2, 3)).min() > 5  # a textured photo background, not a flat canvas
    assert (images.max(axis=(1, 2, 3)) >= 150).all()  # every canvas has strokes in bright ink


def test_rejects_a_canvas_too_small_for_the_digit():
    with pytest.raises(ValueError, match="too small"):
        cluttered_digits(num_train=1, num_val=1, canvas=16)
