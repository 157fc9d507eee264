"""What each split of every registered dataset holds: which images, with which labels, in which class order.

The on-disk datasets are tiny copies in their real formats (tests/data/fixtures.py); each split is checked against
the files it must come from. The shard set's splits are pinned against its source in tests/data/test_shards.py,
the generated proxy's in tests/data/test_proxy.py.
"""

import pickle

import numpy as np
import sklearn.datasets
from scipy.io import loadmat

from lit_effnet.data.datasets import DATASETS, load_splits
from lit_effnet.data.decode import load_rgb
from tests.data.fixtures import write_cifar10, write_cifar100, write_flowers102, write_imagefolder, write_stanford_cars


def items(split):
    return [split[i] for i in range(len(split))]


def pixels(image) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else load_rgb(image)


def test_every_registered_dataset_is_pinned_here_or_in_test_shards_or_test_datasets():
    # V1's other transfer sets (Pets, Aircraft, Food-101, Birdsnap) have their splits pinned in test_datasets.py.
    assert set(DATASETS) == {
        "digits", "digits_rotation", "proxy", "cifar10", "cifar100", "flowers102", "stanford_cars", "imagefolder",
        "shards", "oxford_pets", "fgvc_aircraft", "food101", "birdsnap",
    }  # fmt: skip


def test_digits_splits_every_scan_once_between_train_and_val_stratified_with_test_the_same_as_val():
    digits = sklearn.datasets.load_digits()
    scans = [np.round(image * 255 / 16).astype(np.uint8).tobytes() for image in digits.images]  # 16 levels -> 0..255
    digit_of = dict(zip(scans, digits.target.tolist()))
    splits = load_splits("digits", ".")
    assert splits.test is splits.val and splits.classes == [str(d) for d in range(10)]
    held = [(image[..., 0].tobytes(), label) for split in (splits.train, splits.val) for image, label in items(split)]
    assert sorted(image for image, _ in held) == sorted(scans)  # every scan once, in one split or the other
    assert all(digit_of[image] == label for image, label in held)  # with its digit
    assert all(np.array_equal(image[..., 0], image[..., 2]) for image, _ in items(splits.val))  # grey as RGB
    val_counts = np.bincount([label for _, label in items(splits.val)], minlength=10)
    expected = np.bincount(digits.target, minlength=10) * 0.2
    assert np.all(np.abs(val_counts - expected) <= 1) and val_counts.sum() == 360  # a fifth of every digit


def test_digits_rotation_turns_each_scan_of_the_same_split_and_labels_the_quarter_turns():
    digits, rotation = load_splits("digits", "."), load_splits("digits_rotation", ".")
    assert rotation.test is rotation.val and rotation.classes == ["0", "90", "180", "270"]
    for mine, theirs in ((rotation.train, digits.train), (rotation.val, digits.val)):
        turned = [(image, turns) for image, turns in items(mine)]
        assert all(np.array_equal(image, np.rot90(theirs[i][0], turns)) for i, (image, turns) in enumerate(turned))
    labels = [turns for _, turns in items(rotation.val)]
    assert set(labels) == {0, 1, 2, 3} and min(np.bincount(labels)) > 60  # each turn, drawn uniformly


def _pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def test_cifar10_trains_on_the_five_data_batches_in_order_and_evaluates_on_the_test_batch(tmp_path):
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    batches = [_pickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = _pickle(folder / "test_batch")
    splits = load_splits("cifar10", tmp_path)
    assert splits.val is splits.test and splits.classes == _pickle(folder / "batches.meta")["label_names"]

    def as_hwc(rows):
        return np.asarray(rows).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

    train_images = np.concatenate([as_hwc(b["data"]) for b in batches])
    assert [label for _, label in items(splits.train)] == [label for b in batches for label in b["labels"]]
    assert all(np.array_equal(image, train_images[i]) for i, (image, _) in enumerate(items(splits.train)))
    assert [label for _, label in items(splits.test)] == test["labels"]
    assert all(np.array_equal(image, as_hwc(test["data"])[i]) for i, (image, _) in enumerate(items(splits.test)))


def test_cifar100_labels_are_the_fine_ones_and_its_classes_the_fine_names(tmp_path):
    write_cifar100(tmp_path)
    folder = tmp_path / "cifar-100-python"
    splits = load_splits("cifar100", tmp_path)
    assert [label for _, label in items(splits.train)] == _pickle(folder / "train")["fine_labels"]
    assert [label for _, label in items(splits.test)] == _pickle(folder / "test")["fine_labels"]
    assert splits.classes == _pickle(folder / "meta")["fine_label_names"] and splits.val is splits.test


def test_flowers102_trains_on_its_train_then_val_ids_and_evaluates_on_its_test_ids(tmp_path):
    ids = write_flowers102(tmp_path)
    labels = loadmat(tmp_path / "flowers-102" / "imagelabels.mat")["labels"][0]
    splits = load_splits("flowers102", tmp_path)
    assert splits.val is splits.test and splits.classes == [str(i) for i in range(102)]
    for split, image_ids in ((splits.train, ids["trnid"] + ids["valid"]), (splits.test, ids["tstid"])):
        held = items(split)
        assert [label for _, label in held] == [int(labels[i - 1]) - 1 for i in image_ids]  # 0-based
        # The fixture paints image k in grey level 37 k: each split holds its own files, in the ids' order.
        assert [round(float(pixels(image).mean())) for image, _ in held] == [(37 * i) % 256 for i in image_ids]


def test_stanford_cars_splits_are_the_devkits_train_and_test_annotations(tmp_path):
    train_classes, test_classes = write_stanford_cars(tmp_path)
    splits = load_splits("stanford_cars", tmp_path)
    assert splits.val is splits.test and splits.classes == [f"Car Model {i}" for i in range(1, 197)]
    for split, classes in ((splits.train, train_classes), (splits.test, test_classes)):
        held = items(split)
        assert [label for _, label in held] == [c - 1 for c in classes]
        assert [round(float(pixels(image).mean())) for image, _ in held] == [(37 * c) % 256 for c in classes]


def test_imagefolder_train_and_val_hold_their_own_folders_with_classes_in_sorted_order(tmp_path):
    write_imagefolder(tmp_path, classes=("eel", "cat", "dog"), per_class=3)  # written out of order
    splits = load_splits("imagefolder", tmp_path)
    assert splits.classes == ["cat", "dog", "eel"] and splits.test is splits.val
    # The fixture paints a class's images in grey level 37 x (its place in the order written): eel 0, cat 37, dog 74.
    grey = {"eel": 0, "cat": 37, "dog": 74}
    for split, per_class in ((splits.train, 3), (splits.val, 2)):
        held = items(split)
        assert [label for _, label in held] == [c for c in range(3) for _ in range(per_class)]
        assert [round(float(pixels(image).mean())) for image, _ in held] == [
            grey[name] for name in splits.classes for _ in range(per_class)
        ]
