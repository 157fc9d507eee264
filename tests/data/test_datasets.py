import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lit_effnet.data.datasets import DATASETS, check_classes, load_splits, num_classes_of
from lit_effnet.data.decode import EncodedImage, image_shape, load_rgb
from lit_effnet.errors import ConfigError, CorruptImageError, DataError, DatasetNotFoundError
from tests.data.fixtures import (
    AIRCRAFT_VARIANTS,
    FOOD_CLASSES,
    PET_BREEDS,
    write_birdsnap,
    write_cifar10,
    write_cifar100,
    write_fgvc_aircraft,
    write_flowers102,
    write_food101,
    write_imagefolder,
    write_oxford_pets,
    write_shard_set,
    write_stanford_cars,
)


def test_digits_is_embedded_with_a_fixed_stratified_split():
    splits = load_splits("digits", "nowhere")  # no files needed
    assert (len(splits.train), len(splits.val), len(splits.classes)) == (1437, 360, 10)
    image, label = splits.train[0]
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8 and 0 <= label < 10
    assert image.max() > 200  # 16 grey levels stretched to 0..255
    counts = np.bincount([splits.val[i][1] for i in range(len(splits.val))], minlength=10)
    assert counts.min() >= 35  # stratified: every digit held out
    again = load_splits("digits", "nowhere")
    assert np.array_equal(again.val[7][0], splits.val[7][0])


def test_cifar10_reads_torchvisions_pickles(tmp_path):
    write_cifar10(tmp_path)
    splits = load_splits("cifar10", tmp_path)
    assert (len(splits.train), len(splits.test), splits.classes[0]) == (30, 5, "airplane")
    image, label = splits.train[3]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and 0 <= label < 10
    assert splits.val is splits.test


def test_cifar100_uses_the_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    splits = load_splits("cifar100", tmp_path)
    assert (len(splits.train), len(splits.test), len(splits.classes)) == (12, 7, 100)
    assert max(splits.train[i][1] for i in range(12)) < 100


def test_flowers102_trains_on_train_plus_val_and_evaluates_on_test(tmp_path):
    ids = write_flowers102(tmp_path)
    splits = load_splits("flowers102", tmp_path)
    assert len(splits.train) == len(ids["trnid"]) + len(ids["valid"]) and len(splits.test) == len(ids["tstid"])
    # labels are 0-based: image id k has .mat label k % 102 + 1
    assert [splits.train[i][1] for i in range(5)] == [1, 2, 3, 4, 5]
    assert [splits.test[i][1] for i in range(5)] == [6, 7, 8, 9, 10]
    assert len(splits.classes) == 102 and splits.test[0][0].shape == (30, 40, 3)
    assert isinstance(splits.train[0][0], EncodedImage) and image_shape(splits.train[0][0]) == (30, 40)


def test_stanford_cars_reads_the_devkit(tmp_path):
    train_classes, test_classes = write_stanford_cars(tmp_path)
    splits = load_splits("stanford_cars", tmp_path)
    assert [splits.train[i][1] for i in range(4)] == [c - 1 for c in train_classes]
    assert [splits.test[i][1] for i in range(3)] == [c - 1 for c in test_classes]
    assert len(splits.classes) == 196 and splits.classes[0] == "Car Model 1"


def test_imagefolder_reads_class_folders_and_counts_classes_cheaply(tmp_path):
    write_imagefolder(tmp_path)
    splits = load_splits("imagefolder", tmp_path)
    assert splits.classes == ["cat", "dog", "eel"] and (len(splits.train), len(splits.val)) == (12, 6)
    assert num_classes_of("imagefolder", tmp_path) == 3


@pytest.mark.parametrize(
    "name", ["flowers102", "stanford_cars", "imagefolder", "oxford_pets", "fgvc_aircraft", "food101", "birdsnap"]
)
def test_train_splits_of_files_hand_over_the_encoded_file_and_eval_splits_the_decoded_image(tmp_path, name):
    """The train transform decodes only what its crop needs; evaluation decodes the whole image (load_rgb)."""
    FIXTURES[name](tmp_path)
    splits = load_splits(name, tmp_path)
    encoded, label = splits.train[0]
    assert isinstance(encoded, EncodedImage) and Path(encoded.path).is_file()
    assert encoded.data == Path(encoded.path).read_bytes() and isinstance(label, int)
    decoded = splits.test[0][0]
    assert isinstance(decoded, np.ndarray) and decoded.dtype == np.uint8 and decoded.shape[2] == 3
    np.testing.assert_array_equal(load_rgb(encoded), load_rgb(encoded.path))


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("flowers102", "flowers-102"),
        ("stanford_cars", "stanford_cars"),
        ("imagefolder", "train"),
        ("oxford_pets", "oxford-iiit-pet"),
        ("fgvc_aircraft", "fgvc-aircraft-2013b"),
        ("food101", "food-101"),
        ("birdsnap", "birdsnap"),
    ],
)
def test_a_missing_dataset_names_the_path_and_how_to_get_it(tmp_path, name, missing):
    with pytest.raises(DatasetNotFoundError) as err:
        load_splits(name, tmp_path)
    message = str(err.value)
    assert str(tmp_path / missing) in message and "\n" not in message
    assert any(word in message for word in ("http", "Download", "Lay the data out", "get the images", "lay what you"))


def test_an_incomplete_dataset_names_the_first_missing_file(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        load_splits("cifar10", tmp_path)


def test_mismatching_imagefolder_classes_are_reported(tmp_path):
    write_imagefolder(tmp_path)
    (tmp_path / "val" / "eel").rename(tmp_path / "val" / "emu")
    with pytest.raises(DatasetNotFoundError, match="different class folders"):
        load_splits("imagefolder", tmp_path)


def test_a_corrupt_image_names_its_file(tmp_path):
    write_imagefolder(tmp_path)
    bad = tmp_path / "val" / "dog" / "1.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    splits = load_splits("imagefolder", tmp_path)
    index = next(i for i, (path, _) in enumerate(splits.val.samples) if path == str(bad))
    with pytest.raises(CorruptImageError, match=re.escape(str(bad))):
        splits.val[index]
    assert Image.open(tmp_path / "val" / "dog" / "0.jpg")  # neighbours still load
    # a train image is read, not decoded, by the split: its header and pixels are read by the train transform
    (tmp_path / "train" / "dog" / "1.jpg").write_bytes(b"\xff\xd8 truncated")
    encoded = next(image for image, _ in splits.train if image.path == str(tmp_path / "train" / "dog" / "1.jpg"))
    for read in (image_shape, load_rgb):
        with pytest.raises(CorruptImageError, match=re.escape(encoded.path)):
            read(encoded)


def test_unknown_dataset_names_the_key_and_the_registered_choices():
    with pytest.raises(ConfigError, match=r"'mnist' \(data.name\); choose from \['digits'"):
        load_splits("mnist", ".")


FIXTURES = {
    "cifar10": write_cifar10, "cifar100": write_cifar100, "flowers102": write_flowers102,
    "stanford_cars": write_stanford_cars, "imagefolder": write_imagefolder, "shards": write_shard_set,
    "oxford_pets": write_oxford_pets, "fgvc_aircraft": write_fgvc_aircraft, "food101": write_food101,
    "birdsnap": write_birdsnap,
}  # fmt: skip


@pytest.mark.parametrize("name", list(DATASETS))
def test_each_registered_datasets_class_count_before_reading_images_is_its_loaders(tmp_path, name):
    if name in FIXTURES:
        FIXTURES[name](tmp_path)
    assert num_classes_of(name, tmp_path) == len(load_splits(name, tmp_path).classes)


def test_digits_rotation_labels_how_each_scan_is_turned():
    digits, rotation = load_splits("digits", "."), load_splits("digits_rotation", ".")
    assert (len(rotation.train), len(rotation.val), len(rotation.classes)) == (1437, 360, 4)
    for i in range(20):
        image, turns = rotation.train[i]
        assert np.array_equal(np.rot90(digits.train[i][0], turns), image)
    labels = [rotation.train[i][1] for i in range(len(rotation.train))]
    assert min(np.bincount(labels)) > 300  # all four rotations, roughly balanced


def test_oxford_pets_trains_on_trainval_and_evaluates_on_test_with_the_lists_class_ids(tmp_path):
    ids = write_oxford_pets(tmp_path)
    splits = load_splits("oxford_pets", tmp_path)
    assert (len(splits.train), len(splits.test), len(splits.classes)) == (37, 3, 37)
    # class k is the lists' 1-based class id k + 1, named as torchvision names it (title-cased breed)
    assert (
        splits.classes[0] == "Abyssinian" and splits.classes[25] == "Pug" and splits.classes[36] == "Yorkshire Terrier"
    )
    assert [splits.test[i][1] for i in range(3)] == [PET_BREEDS.index(i.rsplit("_", 1)[0]) for i in ids["test"]]
    assert splits.train[1][1] == 1 and isinstance(splits.train[1][0], EncodedImage)
    assert splits.test[0][0].shape == (30, 40, 3) and splits.val is splits.test


def test_fgvc_aircraft_reads_the_variant_level_trainval_and_test_lists(tmp_path):
    lists = write_fgvc_aircraft(tmp_path)
    splits = load_splits("fgvc_aircraft", tmp_path)
    assert splits.classes == AIRCRAFT_VARIANTS and len(splits.classes) == 100  # variants.txt's order
    assert [splits.train[i][1] for i in range(4)] == [AIRCRAFT_VARIANTS.index(v) for _, v in lists["trainval"]]
    assert [splits.test[i][1] for i in range(3)] == [AIRCRAFT_VARIANTS.index(v) for _, v in lists["test"]]
    assert Path(splits.train[1][0].path).name == "0034309.jpg" and splits.test[0][0].shape == (30, 50, 3)


def test_food101_reads_the_meta_lists_with_classes_in_sorted_order(tmp_path):
    meta = write_food101(tmp_path)
    splits = load_splits("food101", tmp_path)
    assert splits.classes == sorted(FOOD_CLASSES) and len(splits.classes) == 101
    assert (len(splits.train), len(splits.test)) == (3, 1)
    train = {Path(splits.train[i][0].path).stem: splits.train[i][1] for i in range(3)}
    assert train == {"1005649": splits.classes.index("apple_pie"), "1034361": 2, "1218": 2}
    assert splits.test[0][1] == splits.classes.index("baby_back_ribs") == 1
    assert meta["test"]["baby_back_ribs"] == ["baby_back_ribs/1001"]


def test_birdsnap_reads_species_folders_and_counts_them_before_reading_images(tmp_path):
    write_birdsnap(tmp_path)
    splits = load_splits("birdsnap", tmp_path)
    assert splits.classes == ["Acadian_Flycatcher", "Black_Tern", "Zone-tailed_Hawk"]
    assert (len(splits.train), len(splits.test)) == (6, 3) and num_classes_of("birdsnap", tmp_path) == 3
    assert [splits.test[i][1] for i in range(3)] == [0, 1, 2]


def test_birdsnap_with_other_species_in_test_than_in_train_is_refused(tmp_path):
    write_birdsnap(tmp_path)
    (tmp_path / "birdsnap" / "test" / "Black_Tern").rename(tmp_path / "birdsnap" / "test" / "Black_Rail")
    with pytest.raises(DatasetNotFoundError, match="different species folders"):
        load_splits("birdsnap", tmp_path)


def test_a_pets_list_that_names_fewer_than_37_breeds_is_refused(tmp_path):
    write_oxford_pets(tmp_path)
    listing = tmp_path / "oxford-iiit-pet" / "annotations" / "trainval.txt"
    listing.write_text("".join(line + "\n" for line in listing.read_text().splitlines() if not line.startswith("pug")))
    with pytest.raises(DataError) as err:
        load_splits("oxford_pets", tmp_path)
    assert str(err.value) == f"{listing} holds 36 classes, oxford_pets (37 breeds) expects 37"


HOW_TO_GET = {  # what a user reads when a dataset is not under data.root ({root}: that folder)
    "cifar10": "cifar10: missing {root}/cifar-10-batches-py (dataset missing or incomplete). Download "
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it into {root} (or run once: python -c "
    "\"import torchvision; torchvision.datasets.CIFAR10('{root}', download=True)\").",
    "cifar100": "cifar100: missing {root}/cifar-100-python (dataset missing or incomplete). Download "
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and extract it into {root} (or run once: python -c "
    "\"import torchvision; torchvision.datasets.CIFAR100('{root}', download=True)\").",
    "flowers102": "flowers102: missing {root}/flowers-102/jpg (dataset missing or incomplete). Get 102flowers.tgz, "
    "imagelabels.mat and setid.mat from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ and put them as "
    "{root}/flowers-102/jpg/*.jpg, {root}/flowers-102/imagelabels.mat, {root}/flowers-102/setid.mat (or "
    "torchvision.datasets.Flowers102('{root}', download=True)).",
    "stanford_cars": "stanford_cars: missing {root}/stanford_cars/devkit/cars_meta.mat (dataset missing or "
    "incomplete). torchvision can no longer download it; get the images and devkit (e.g. the Kaggle mirror "
    "'jessicali9530/stanford-cars-dataset' plus cars_test_annos_withlabels.mat) and lay them out as "
    "{root}/stanford_cars/cars_train/, {root}/stanford_cars/cars_test/, {root}/stanford_cars/devkit/cars_meta.mat, "
    "{root}/stanford_cars/devkit/cars_train_annos.mat, {root}/stanford_cars/cars_test_annos_withlabels.mat.",
    "imagefolder": "imagefolder: missing {root}/train (dataset missing or incomplete). Lay the data out as "
    "{root}/train/<class>/<image> and {root}/val/<class>/<image> with the same class folders in both (for "
    "ImageNet, torchvision.datasets.ImageNet's layout or the usual valprep.sh).",
    "oxford_pets": "oxford_pets: missing {root}/oxford-iiit-pet/images (dataset missing or incomplete). Get "
    "images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ and extract both into "
    "{root}/oxford-iiit-pet (or torchvision.datasets.OxfordIIITPet('{root}', download=True)).",
    "fgvc_aircraft": "fgvc_aircraft: missing {root}/fgvc-aircraft-2013b/data/images (dataset missing or "
    "incomplete). Get fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ and "
    "extract it into {root} (or torchvision.datasets.FGVCAircraft('{root}', download=True)).",
    "food101": "food101: missing {root}/food-101/images (dataset missing or incomplete). Get food-101.tar.gz from "
    "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ and extract it into {root} (or "
    "torchvision.datasets.Food101('{root}', download=True)).",
    "birdsnap": "birdsnap: missing {root}/birdsnap/train (dataset missing or incomplete). Birdsnap has no "
    "torchvision loader and most of its image URLs are gone: lay what you have out as "
    "{root}/birdsnap/train/<species>/<image> and {root}/birdsnap/test/<species>/<image>, the test images being "
    "those of the dataset's test_images.txt (data/README.md).",
}


@pytest.mark.parametrize("name", sorted(HOW_TO_GET))
def test_a_missing_dataset_says_which_file_is_missing_and_how_to_get_the_data_in_one_line(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as err:
        load_splits(name, tmp_path)
    assert str(err.value) == HOW_TO_GET[name].format(root=tmp_path)


def test_counting_the_classes_of_missing_class_folders_names_the_train_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        num_classes_of("imagefolder", tmp_path)
    assert str(err.value) == (
        f"imagefolder: missing {tmp_path}/train (dataset missing or incomplete). Expected class folders under "
        f"{tmp_path}/train/<class>/."
    )
    with pytest.raises(DatasetNotFoundError) as err:
        num_classes_of("birdsnap", tmp_path)
    assert str(err.value) == HOW_TO_GET["birdsnap"].format(root=tmp_path)


def test_a_damaged_cifar_pickle_is_one_line_naming_the_folder(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04 not a pickle")
    with pytest.raises(DatasetNotFoundError) as err:
        load_splits("cifar10", tmp_path)
    assert str(err.value).startswith(f"cifar10: {tmp_path}/cifar-10-batches-py holds a damaged pickle (")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fgvc_aircraft", "{root}/fgvc-aircraft-2013b/data/variants.txt holds 99 classes, "
         "fgvc_aircraft (100 variants) expects 100"),
        ("food101", "{root}/food-101/meta/train.json holds 100 classes, food101 (101 dishes) expects 101"),
    ],
)  # fmt: skip
def test_a_transfer_set_with_a_class_missing_from_its_list_is_refused_naming_the_list(tmp_path, name, message):
    FIXTURES[name](tmp_path)
    if name == "fgvc_aircraft":
        listing = tmp_path / "fgvc-aircraft-2013b" / "data" / "variants.txt"
        listing.write_text("".join(line + "\n" for line in listing.read_text().splitlines() if line != "Variant 00"))
    else:
        listing = tmp_path / "food-101" / "meta" / "train.json"
        listing.write_text(json.dumps({k: v for k, v in json.loads(listing.read_text()).items() if k != "dish_097"}))
    with pytest.raises(DataError) as err:
        load_splits(name, tmp_path)
    assert str(err.value) == message.format(root=tmp_path)


@pytest.mark.parametrize("name", ["fgvc_aircraft", "food101", "birdsnap", "imagefolder", "cifar10", "flowers102"])
def test_the_transfer_sets_evaluate_on_their_test_split_during_training_too(tmp_path, name):
    FIXTURES[name](tmp_path)
    splits = load_splits(name, tmp_path)
    assert splits.val is splits.test and len(splits.test) > 0


def test_the_class_count_comes_from_the_train_folders_of_the_root_given(tmp_path):
    write_imagefolder(tmp_path / "a", classes=("ant", "bee", "cow", "dog", "elk"), per_class=1)
    write_birdsnap(tmp_path / "b", species=("Black_Tern", "Zone-tailed_Hawk"))
    assert num_classes_of("imagefolder", tmp_path / "a") == 5 and num_classes_of("birdsnap", tmp_path / "b") == 2


@pytest.mark.parametrize(
    ("held", "expected", "message"),
    [
        (["ant", "bee", "cow"], ["ant", "bat", "cow"], "class 1 is 'bee', checkpoint has 'bat' (3 classes against 3)"),
        (["ant", "bee"], ["ant", "bee", "cow"], "class 2 is nothing, checkpoint has 'cow' (2 classes against 3)"),
        (["ant", "bee", "cow"], ["ant", "bee"], "class 2 is 'cow', checkpoint has nothing (3 classes against 2)"),
    ],
)
def test_classes_in_another_order_or_number_are_refused_naming_the_first_difference(held, expected, message):
    check_classes(["ant", "bee"], ["ant", "bee"], "data/x/train", "checkpoint")  # the same names: accepted
    check_classes(["ant", "bee"], 2, "data/x/train", "checkpoint")
    with pytest.raises(DataError) as err:
        check_classes(held, expected, "data/x/train", "checkpoint")
    assert str(err.value) == f"data/x/train holds other classes than checkpoint expects: {message}"


def test_class_folders_without_images_name_the_folder_and_how_to_lay_them_out(tmp_path):
    write_imagefolder(tmp_path)
    for image in (tmp_path / "train" / "dog").iterdir():
        image.unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_splits("imagefolder", tmp_path)
    assert str(err.value).startswith(f"imagefolder: {tmp_path}/train: Found no valid file for the classes dog.")
    assert str(err.value).endswith(f". Lay the data out as {tmp_path}/train/<class>/<image> and {tmp_path}/val/"
                                   "<class>/<image> with the same class folders in both (for ImageNet, "
                                   "torchvision.datasets.ImageNet's layout or the usual valprep.sh).")  # fmt: skip
    cat = next((tmp_path / "train" / "cat").iterdir())
    (tmp_path / "train" / "dog" / cat.name).write_bytes(cat.read_bytes())  # the train folder whole again ...
    for image in (tmp_path / "val" / "eel").iterdir():
        image.unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_splits("imagefolder", tmp_path)  # ... and the eval one not
    assert str(err.value).startswith(f"imagefolder: {tmp_path}/val: Found no valid file for the classes eel.")
    assert str(err.value).endswith("or the usual valprep.sh).")
    (tmp_path / "val").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetNotFoundError) as err:
        load_splits("imagefolder", tmp_path)
    assert str(err.value).startswith(f"imagefolder: missing {tmp_path}/val (dataset missing or incomplete).")


def test_other_class_folders_in_val_than_in_train_name_the_first_difference(tmp_path):
    write_imagefolder(tmp_path)
    (tmp_path / "val" / "eel").rename(tmp_path / "val" / "emu")
    with pytest.raises(DatasetNotFoundError) as err:
        load_splits("imagefolder", tmp_path)
    assert str(err.value) == (
        f"imagefolder: {tmp_path}/val and {tmp_path}/train have different class folders (first difference 'eel')"
    )


def test_digits_rotation_turns_the_same_scans_the_same_way_at_every_load():
    first, again = load_splits("digits_rotation", "."), load_splits("digits_rotation", ".")
    assert [first.train[i][1] for i in range(50)] == [again.train[i][1] for i in range(50)]
