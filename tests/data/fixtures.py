"""Small datasets written in the exact on-disk formats torchvision reads (no download)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

RNG = np.random.default_rng(0)


def _jpg(path: Path, label: int, size: tuple[int, int] = (40, 30)) -> None:
    """A JPEG whose mean colour encodes the label (so a test can tell images apart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0], 3), (label * 37) % 256, np.uint8)
    Image.fromarray(array).save(path, quality=95)


def write_cifar10(root: Path, per_batch: int = 6, test: int = 5) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        labels = [int(x) for x in RNG.integers(0, 10, n)]
        data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump(
                {"batch_label": name, "labels": labels, "data": data, "filenames": [f"{i}.png" for i in range(n)]}, f
            )
    with open(folder / "batches.meta", "wb") as f:
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)


def write_cifar100(root: Path, train: int = 12, test: int = 7) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", train), ("test", test)):
        data = {
            "data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": [int(x) for x in RNG.integers(0, 100, n)],
            "coarse_labels": [int(x) for x in RNG.integers(0, 20, n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(data, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump(
            {"fine_label_names": [f"class{i}" for i in range(100)], "coarse_label_names": list("abcdefghijklmnopqrst")},
            f,
        )


def write_flowers102(root: Path) -> dict[str, list[int]]:
    """10 images: ids 1-3 train, 4-5 val, 6-10 test; labels (1-based in the .mat) = id % 102 + 1."""
    folder = root / "flowers-102"
    ids = {"trnid": [1, 2, 3], "valid": [4, 5], "tstid": [6, 7, 8, 9, 10]}
    labels = np.array([[i % 102 + 1 for i in range(1, 11)]], dtype=np.uint8)
    for image_id in range(1, 11):
        _jpg(folder / "jpg" / f"image_{image_id:05d}.jpg", image_id)
    savemat(folder / "imagelabels.mat", {"labels": labels})
    savemat(folder / "setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in ids.items()})
    return ids


def _car_annotations(fnames: list[str], classes: list[int]) -> np.ndarray:
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annotations = np.zeros((1, len(fnames)), dtype=[(f, "O") for f in fields])
    for i, (fname, cls) in enumerate(zip(fnames, classes)):
        annotations[0, i] = (
            np.array([[1]]),
            np.array([[1]]),
            np.array([[20]]),
            np.array([[20]]),
            np.array([[cls]]),
            np.array([fname]),
        )
    return annotations


def write_stanford_cars(root: Path) -> tuple[list[int], list[int]]:
    """4 train and 3 test images; classes are 1-based in the devkit, as in the original."""
    folder = root / "stanford_cars"
    train_classes, test_classes = [1, 5, 196, 5], [2, 196, 1]
    train_names = [f"{i:05d}.jpg" for i in range(1, 5)]
    test_names = [f"{i:05d}.jpg" for i in range(1, 4)]
    for name, cls in zip(train_names, train_classes):
        _jpg(folder / "cars_train" / name, cls)
    for name, cls in zip(test_names, test_classes):
        _jpg(folder / "cars_test" / name, cls)
    (folder / "devkit").mkdir(parents=True, exist_ok=True)
    class_names = np.empty((1, 196), dtype=object)
    class_names[0, :] = [f"Car Model {i}" for i in range(1, 197)]
    savemat(folder / "devkit" / "cars_meta.mat", {"class_names": class_names})
    savemat(folder / "devkit" / "cars_train_annos.mat", {"annotations": _car_annotations(train_names, train_classes)})
    savemat(folder / "cars_test_annos_withlabels.mat", {"annotations": _car_annotations(test_names, test_classes)})
    return train_classes, test_classes


def write_imagefolder(root: Path, classes=("cat", "dog", "eel"), per_class: int = 4) -> None:
    for split, n in (("train", per_class), ("val", 2)):
        for label, name in enumerate(classes):
            for i in range(n):
                _jpg(root / split / name / f"{i}.jpg", label, size=(48, 36))


def write_shard_set(root: Path) -> None:
    """`write_imagefolder`'s data as a shard set at `root` (its source beside it), as `train.py shard` writes it."""
    from lit_effnet.data.shards import write_shards

    source = root.parent / f"{root.name}-source"
    write_imagefolder(source)
    write_shards("imagefolder", str(source), str(root), log=lambda line: None)


# The 37 breeds of Oxford-IIIT Pets in their class-id order (1-based in the lists); cats are capitalised.
PET_BREEDS = [
    "Abyssinian",
    "american_bulldog",
    "american_pit_bull_terrier",
    "basset_hound",
    "beagle",
    "Bengal",
    "Birman",
    "Bombay",
    "boxer",
    "British_Shorthair",
    "chihuahua",
    "Egyptian_Mau",
    "english_cocker_spaniel",
    "english_setter",
    "german_shorthaired",
    "great_pyrenees",
    "havanese",
    "japanese_chin",
    "keeshond",
    "leonberger",
    "Maine_Coon",
    "miniature_pinscher",
    "newfoundland",
    "Persian",
    "pomeranian",
    "pug",
    "Ragdoll",
    "Russian_Blue",
    "saint_bernard",
    "samoyed",
    "scottish_terrier",
    "shiba_inu",
    "Siamese",
    "Sphynx",
    "staffordshire_bull_terrier",
    "wheaten_terrier",
    "yorkshire_terrier",
]


def write_oxford_pets(root: Path) -> dict[str, list[str]]:
    """One trainval image per breed and 3 test images, listed as annotations/{trainval,test}.txt list them:
    `<image id> <class id> <species: 1 cat, 2 dog> <breed id>`."""
    folder = root / "oxford-iiit-pet"
    ids = {"trainval": [f"{breed}_1" for breed in PET_BREEDS], "test": ["pug_7", "Abyssinian_9", "Sphynx_2"]}
    (folder / "annotations" / "trimaps").mkdir(parents=True)
    for split, image_ids in ids.items():
        lines = []
        for image_id in image_ids:
            breed = image_id.rsplit("_", 1)[0]
            class_id = PET_BREEDS.index(breed) + 1
            species = 1 if breed[0].isupper() else 2
            same_species = [b for b in PET_BREEDS if b[0].isupper() == (species == 1)]
            lines.append(f"{image_id} {class_id} {species} {same_species.index(breed) + 1}")
            _jpg(folder / "images" / f"{image_id}.jpg", class_id)
        (folder / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return ids


# FGVC Aircraft's variant names hold spaces and slashes ("Boeing 717", "F-16A/B"); the lists split at the first space.
AIRCRAFT_VARIANTS = ["707-320", "Boeing 717", "F-16A/B", *(f"Variant {i:02d}" for i in range(97))]


def write_fgvc_aircraft(root: Path) -> dict[str, list[tuple[str, str]]]:
    """fgvc-aircraft-2013b/data: variants.txt (100 lines) and images_variant_{trainval,test}.txt of 7-digit ids."""
    folder = root / "fgvc-aircraft-2013b" / "data"
    folder.mkdir(parents=True)
    (folder / "variants.txt").write_text("\n".join(AIRCRAFT_VARIANTS) + "\n")
    splits = {
        "trainval": [
            ("1025794", "707-320"),
            ("0034309", "F-16A/B"),
            ("2234567", "Variant 96"),
            ("0056978", "Boeing 717"),
        ],
        "test": [("1514522", "Boeing 717"), ("0062765", "707-320"), ("1919191", "F-16A/B")],
    }
    for split, rows in splits.items():
        for image_id, variant in rows:
            _jpg(folder / "images" / f"{image_id}.jpg", AIRCRAFT_VARIANTS.index(variant), size=(50, 30))
        (folder / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v in rows))
    return splits


FOOD_CLASSES = ["apple_pie", "baby_back_ribs", "baklava", *(f"dish_{i:03d}" for i in range(98))]


def write_food101(root: Path) -> dict[str, dict[str, list[str]]]:
    """food-101/meta/{train,test}.json ({class: ["class/id", ...]}, all 101 classes) and images/<class>/<id>.jpg."""
    folder = root / "food-101"
    meta = {
        "train": {name: [] for name in FOOD_CLASSES}
        | {"baklava": ["baklava/1034361", "baklava/1218"], "apple_pie": ["apple_pie/1005649"]},
        "test": {name: [] for name in FOOD_CLASSES} | {"baby_back_ribs": ["baby_back_ribs/1001"]},
    }
    (folder / "meta").mkdir(parents=True)
    for split, lists in meta.items():
        (folder / "meta" / f"{split}.json").write_text(json.dumps(lists))
        for name, rel_paths in lists.items():
            for rel in rel_paths:
                _jpg(folder / "images" / f"{rel}.jpg", FOOD_CLASSES.index(name))
    return meta


def write_birdsnap(root: Path, species=("Acadian_Flycatcher", "Black_Tern", "Zone-tailed_Hawk")) -> None:
    """birdsnap/{train,test}/<species>/<image>.jpg: the class-folder layout data/README.md describes."""
    for split, n in (("train", 2), ("test", 1)):
        for label, name in enumerate(species):
            for i in range(n):
                _jpg(root / "birdsnap" / split / name / f"{i}.jpg", label)
