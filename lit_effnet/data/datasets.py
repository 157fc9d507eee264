"""The datasets, read from torchvision's on-disk layouts under `data.root`; nothing is downloaded.

Every split yields `(image, class index)`. The image is a uint8 RGB array HxWx3 (the in-memory datasets,
and the evaluation splits of files, decoded by `load_rgb`) or, in the train splits of files, the file's
bytes (`EncodedImage`): the train transform decodes only what its random crop needs, at reduced scale
(lit_effnet/data/decode.py). `DATASETS` is the registry: adding a dataset is one entry (its loader, class
count and where its files go).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from torchvision.datasets import (
    CIFAR10,
    CIFAR100,
    FGVCAircraft,
    Flowers102,
    Food101,
    ImageFolder,
    OxfordIIITPet,
    StanfordCars,
)

from lit_effnet.data.decode import load_rgb, read_encoded
from lit_effnet.errors import ConfigError, DataError, DatasetNotFoundError


class ArrayDataset(Dataset):
    """Images already in memory as a uint8 array (N, H, W, 3)."""

    def __init__(self, images: np.ndarray, labels: Sequence[int]) -> None:
        assert images.ndim == 4 and images.shape[-1] == 3 and images.dtype == np.uint8
        self.images, self.labels = images, list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], self.labels[index]


@dataclass(frozen=True)
class Splits:
    """`train` is trained on; `val` is evaluated every epoch; `test` by `train.py test`."""

    train: Dataset
    val: Dataset
    test: Dataset
    classes: list[str]


# ------------------------------------------------------------------ digits (embedded)


def load_digits_splits(val_fraction: float = 0.2, seed: int = 0) -> Splits:
    """scikit-learn's handwritten digits (1,797 real 8x8 scans shipped inside the package): no download.

    A fixed stratified split; `test` is the same held-out part as `val` (there is nothing else).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    gray = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 16 grey levels -> 0..255
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    train_idx, val_idx = train_test_split(
        np.arange(len(rgb)), test_size=val_fraction, random_state=seed, stratify=digits.target
    )
    train = ArrayDataset(rgb[train_idx], digits.target[train_idx].tolist())
    val = ArrayDataset(rgb[val_idx], digits.target[val_idx].tolist())
    return Splits(train=train, val=val, test=val, classes=[str(d) for d in range(10)])


def load_digits_rotation_splits(seed: int = 0) -> Splits:
    """A second embedded task on the same scans: how is the digit turned (0, 90, 180 or 270 degrees)?

    Each image gets one fixed rotation, so the splits keep digits' sizes (1,437 / 360); the classes
    are unrelated to the digit's identity, which makes it a transfer target for a digits model.
    """
    digits = load_digits_splits()
    rng = np.random.default_rng(seed)

    def rotated(split: ArrayDataset) -> ArrayDataset:
        turns = rng.integers(0, 4, len(split))
        images = np.stack([np.rot90(image, k) for image, k in zip(split.images, turns)])
        return ArrayDataset(np.ascontiguousarray(images), turns.tolist())

    val = rotated(digits.val)
    return Splits(train=rotated(digits.train), val=val, test=val, classes=["0", "90", "180", "270"])


@cache  # generated in seconds, but a study trains many models on it in one process
def load_proxy_splits() -> Splits:
    """Cluttered digits (lit_effnet/data/proxy.py): a digit small on a cluttered canvas, where resolution matters."""
    from lit_effnet.data.proxy import cluttered_digits

    train_images, train_labels, val_images, val_labels = cluttered_digits()
    train, val = ArrayDataset(train_images, train_labels), ArrayDataset(val_images, val_labels)
    return Splits(train=train, val=val, test=val, classes=[str(d) for d in range(10)])


# ------------------------------------------------------------------ files on disk


def _require(paths: Sequence[Path], dataset: str, how_to_get: str) -> None:
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise DatasetNotFoundError(f"{dataset}: missing {missing[0]} (dataset missing or incomplete). {how_to_get}")


class _CIFAR10Files(CIFAR10):
    # torchvision checks md5 sums of the official pickles, which rejects trimmed copies and test fixtures;
    # load_cifar_splits checks their presence first (_require), and a damaged pickle still fails loudly when read.
    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:  # torchvision's checks the md5 sum too; the classes are all we keep
        with open(Path(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]


class _CIFAR100Files(_CIFAR10Files):
    base_folder, train_list, test_list, meta = (
        CIFAR100.base_folder,
        CIFAR100.train_list,
        CIFAR100.test_list,
        CIFAR100.meta,
    )


class _Flowers102Files(Flowers102):
    def _check_integrity(self) -> bool:  # presence instead of md5, checked first by load_flowers102_splits
        return True


CIFAR_HOW_TO = (
    'Download {url} and extract it into {root} (or run once: python -c "import torchvision; '
    "torchvision.datasets.{cls}('{root}', download=True)\")."
)


def load_cifar_splits(root: Path, num_classes: int) -> Splits:
    """CIFAR-10/100 from torchvision's pickles: {root}/cifar-10-batches-py or {root}/cifar-100-python.

    No validation split in the papers: `val` and `test` are the 10,000 test images.
    """
    cls = _CIFAR10Files if num_classes == 10 else _CIFAR100Files
    reference = CIFAR10 if num_classes == 10 else CIFAR100
    folder = root / cls.base_folder
    files = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    how = CIFAR_HOW_TO.format(url=reference.url, root=root, cls=reference.__name__)
    _require([folder, *(folder / f for f in files)], f"cifar{num_classes}", how)
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train)  # download: False
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
            raise DatasetNotFoundError(f"cifar{num_classes}: {folder} holds a damaged pickle ({err})") from None
        splits.append((ds.data, ds.targets, ds.classes))
    (train_x, train_y, classes), (test_x, test_y, _) = splits
    test = ArrayDataset(test_x, test_y)
    return Splits(train=ArrayDataset(train_x, train_y), val=test, test=test, classes=list(classes))


def load_flowers102_splits(root: Path) -> Splits:
    """Oxford Flowers102: train + val (2,040 images) for training, test (6,149) for evaluation (facts 5)."""
    folder = root / "flowers-102"
    how = (
        "Get 102flowers.tgz, imagelabels.mat and setid.mat from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ "
        f"and put them as {folder}/jpg/*.jpg, {folder}/imagelabels.mat, {folder}/setid.mat "
        f"(or torchvision.datasets.Flowers102('{root}', download=True))."
    )
    _require([folder / "jpg", folder / "imagelabels.mat", folder / "setid.mat"], "flowers102", how)
    train, val = (_Flowers102Files(str(root), split=s, loader=read_encoded) for s in ("train", "val"))
    test = _Flowers102Files(str(root), split="test", loader=load_rgb)
    from torch.utils.data import ConcatDataset

    classes = [str(i) for i in range(102)]  # the .mat files carry indices only
    return Splits(train=ConcatDataset([train, val]), val=test, test=test, classes=classes)


def load_stanford_cars_splits(root: Path) -> Splits:
    """Stanford Cars (196 classes): 8,144 train / 8,041 test images in torchvision's layout."""
    folder = root / "stanford_cars"
    how = (
        "torchvision can no longer download it; get the images and devkit (e.g. the Kaggle mirror "
        "'jessicali9530/stanford-cars-dataset' plus cars_test_annos_withlabels.mat) and lay them out as "
        f"{folder}/cars_train/, {folder}/cars_test/, {folder}/devkit/cars_meta.mat, "
        f"{folder}/devkit/cars_train_annos.mat, {folder}/cars_test_annos_withlabels.mat."
    )
    required = [
        folder / "devkit" / "cars_meta.mat",
        folder / "devkit" / "cars_train_annos.mat",
        folder / "cars_train",
        folder / "cars_test",
        folder / "cars_test_annos_withlabels.mat",
    ]
    _require(required, "stanford_cars", how)
    train = StanfordCars(str(root), split="train", loader=read_encoded)
    test = StanfordCars(str(root), split="test", loader=load_rgb)
    return Splits(train=train, val=test, test=test, classes=list(train.classes))


class FileListDataset(Dataset):
    """Image files and their labels, each read by `loader` (torchvision parsed the lists; we decode)."""

    def __init__(self, files: Sequence[str | os.PathLike], labels: Sequence[int], loader: Callable[[str], object]):
        self.files, self.labels, self.loader = [str(f) for f in files], list(labels), loader

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[object, int]:
        return self.loader(self.files[index]), self.labels[index]


def load_oxford_pets_splits(root: Path) -> Splits:
    """Oxford-IIIT Pets (37 breeds): annotations/trainval.txt for training, annotations/test.txt for evaluation,
    in torchvision's layout; class k is the lists' class id k + 1, named as torchvision names it."""
    folder = root / "oxford-iiit-pet"
    how = (
        "Get images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ and extract "
        f"both into {folder} (or torchvision.datasets.OxfordIIITPet('{root}', download=True))."
    )
    _require([folder / "images", folder / "annotations" / "trainval.txt", folder / "annotations" / "test.txt"],
             "oxford_pets", how)  # fmt: skip
    # torchvision's class opens PIL images itself; its parsed lists are read here with our loaders.
    train, test = (OxfordIIITPet(str(root), split=s) for s in ("trainval", "test"))
    check_classes(train.classes, 37, f"{folder}/annotations/trainval.txt", "oxford_pets (37 breeds)")
    return Splits(
        train=FileListDataset(train._images, train._labels, read_encoded),
        val=(evaluated := FileListDataset(test._images, test._labels, load_rgb)),
        test=evaluated,
        classes=list(train.classes),
    )


def load_fgvc_aircraft_splits(root: Path) -> Splits:
    """FGVC Aircraft at its variant level (100 classes, as the V1 paper): trainval for training, test for
    evaluation, in torchvision's layout fgvc-aircraft-2013b/data/."""
    folder = root / "fgvc-aircraft-2013b" / "data"
    how = (
        "Get fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ and extract it "
        f"into {root} (or torchvision.datasets.FGVCAircraft('{root}', download=True))."
    )
    lists = ("variants.txt", "images_variant_trainval.txt", "images_variant_test.txt")
    _require([folder / "images", *(folder / name for name in lists)], "fgvc_aircraft", how)
    kwargs = {"annotation_level": "variant"}
    train = FGVCAircraft(str(root), split="trainval", loader=read_encoded, **kwargs)
    test = FGVCAircraft(str(root), split="test", loader=load_rgb, **kwargs)
    check_classes(train.classes, 100, f"{folder}/variants.txt", "fgvc_aircraft (100 variants)")
    return Splits(train=train, val=test, test=test, classes=list(train.classes))


def load_food101_splits(root: Path) -> Splits:
    """Food-101 (101 dishes, 750 train / 250 test images each): meta/train.json and meta/test.json in
    torchvision's layout; classes in sorted order, as torchvision orders them."""
    folder = root / "food-101"
    how = (
        "Get food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ and extract it into "
        f"{root} (or torchvision.datasets.Food101('{root}', download=True))."
    )
    _require([folder / "images", folder / "meta" / "train.json", folder / "meta" / "test.json"], "food101", how)
    train = Food101(str(root), split="train", loader=read_encoded)
    test = Food101(str(root), split="test", loader=load_rgb)
    check_classes(train.classes, 101, f"{folder}/meta/train.json", "food101 (101 dishes)")
    return Splits(train=train, val=test, test=test, classes=list(train.classes))


BIRDSNAP_HOW_TO = (
    "Birdsnap has no torchvision loader and most of its image URLs are gone: lay what you have out as "
    "{folder}/train/<species>/<image> and {folder}/test/<species>/<image>, the test images being those of the "
    "dataset's test_images.txt (data/README.md)."
)


def load_birdsnap_splits(root: Path) -> Splits:
    """Birdsnap (500 species when complete) from class folders: birdsnap/train/<species>/ and birdsnap/test/."""
    folder = root / "birdsnap"
    how = BIRDSNAP_HOW_TO.format(folder=folder)
    train, test = _class_folders("birdsnap", folder / "train", folder / "test", how, "species")
    return Splits(train=train, val=test, test=test, classes=list(train.classes))


def birdsnap_classes(root: Path) -> list[str]:
    return _folder_classes(root / "birdsnap" / "train", "birdsnap", BIRDSNAP_HOW_TO.format(folder=root / "birdsnap"))


def load_imagefolder_splits(root: Path) -> Splits:
    """ImageNet-style class folders: {root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg."""
    how = (
        f"Lay the data out as {root}/train/<class>/<image> and {root}/val/<class>/<image> with the same class "
        "folders in both (for ImageNet, torchvision.datasets.ImageNet's layout or the usual valprep.sh)."
    )
    train, val = _class_folders("imagefolder", root / "train", root / "val", how, "class")
    return Splits(train=train, val=val, test=val, classes=list(train.classes))


def _class_folders(name: str, train_dir: Path, eval_dir: Path, how: str, kind: str) -> tuple[ImageFolder, ImageFolder]:
    """A train and an eval ImageFolder that must hold the same class folders (`kind` names them in the message)."""
    _require([train_dir, eval_dir], name, how)
    train, evaluate = _image_folder(train_dir, read_encoded, how), _image_folder(eval_dir, load_rgb, how)
    if evaluate.classes != train.classes:
        extra = sorted(set(evaluate.classes) ^ set(train.classes))
        raise DatasetNotFoundError(
            f"{name}: {eval_dir} and {train_dir} have different {kind} folders (first difference {extra[0]!r})"
        )
    return train, evaluate


def _image_folder(folder: Path, loader: Callable[[str], object], how: str) -> ImageFolder:
    try:
        return ImageFolder(str(folder), loader=loader)
    except FileNotFoundError as err:  # no class folders, or class folders without images
        raise DatasetNotFoundError(f"imagefolder: {folder}: {err}. {how}") from None


def imagefolder_classes(root: Path) -> list[str]:
    train = root / "train"
    return _folder_classes(train, "imagefolder", f"Expected class folders under {train}/<class>/.")


def _folder_classes(train: Path, name: str, how: str) -> list[str]:
    """Class names of a class-folder tree without listing its images (cheap, for the class count)."""
    _require([train], name, how)
    return sorted(entry.name for entry in os.scandir(train) if entry.is_dir())


def _shards():  # imported when used: litdata is only needed for shard sets
    from lit_effnet.data import shards

    return shards


@dataclass(frozen=True, kw_only=True)
class DatasetEntry:
    """How to read one dataset: its splits, its class count (known before any image is read), where it lives."""

    load: Callable[[Path], Splits]
    num_classes: int | Callable[[Path], int]
    where: str  # under data.root, for messages and data/README.md


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(load=lambda root: load_digits_splits(), num_classes=10, where="embedded (scikit-learn)"),
    "digits_rotation": DatasetEntry(
        load=lambda root: load_digits_rotation_splits(), num_classes=4, where="embedded (scikit-learn)"
    ),
    "proxy": DatasetEntry(load=lambda root: load_proxy_splits(), num_classes=10, where="embedded (generated)"),
    "cifar10": DatasetEntry(
        load=partial(load_cifar_splits, num_classes=10), num_classes=10, where="cifar-10-batches-py/"
    ),
    "cifar100": DatasetEntry(
        load=partial(load_cifar_splits, num_classes=100), num_classes=100, where="cifar-100-python/"
    ),
    "flowers102": DatasetEntry(load=load_flowers102_splits, num_classes=102, where="flowers-102/"),
    "stanford_cars": DatasetEntry(load=load_stanford_cars_splits, num_classes=196, where="stanford_cars/"),
    "oxford_pets": DatasetEntry(load=load_oxford_pets_splits, num_classes=37, where="oxford-iiit-pet/"),
    "fgvc_aircraft": DatasetEntry(
        load=load_fgvc_aircraft_splits, num_classes=100, where="fgvc-aircraft-2013b/ (variant level)"
    ),
    "food101": DatasetEntry(load=load_food101_splits, num_classes=101, where="food-101/"),
    "birdsnap": DatasetEntry(
        load=load_birdsnap_splits,
        num_classes=lambda root: len(birdsnap_classes(root)),
        where="birdsnap/train/<species>/, birdsnap/test/<species>/",
    ),
    "imagefolder": DatasetEntry(
        load=load_imagefolder_splits, num_classes=lambda root: len(imagefolder_classes(root)), where="train/, val/"
    ),
    "shards": DatasetEntry(
        load=lambda root: _shards().load_shard_splits(root),
        num_classes=lambda root: _shards().shard_classes(root),
        where="data.root itself: a shard set written by `train.py shard`, a folder or s3://bucket/prefix",
    ),
}


def dataset_entry(name: str) -> DatasetEntry:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r} (data.name); choose from {list(DATASETS)}") from None


def _root(root: str | os.PathLike) -> Path | str:
    """A folder as a Path; a URL (s3://bucket/prefix, for shard sets) as it is, which Path would mangle."""
    return str(root) if "://" in str(root) else Path(root)


def num_classes_of(name: str, root: str | os.PathLike) -> int:
    """The class count, known before any image is read (ImageFolder: its train class folders)."""
    count = dataset_entry(name).num_classes
    return count if isinstance(count, int) else count(_root(root))


def load_splits(name: str, root: str | os.PathLike) -> Splits:
    """The train/val/test splits of dataset `name` under `root`."""
    return dataset_entry(name).load(_root(root))


def check_classes(held: Sequence[str], expected: int | Sequence[str], where: str, by: str) -> None:
    """Refuse data whose classes (a count, or the names in order) are not what `by` expects, naming `where`."""
    if isinstance(expected, int):
        if expected != len(held):
            raise DataError(f"{where} holds {len(held)} classes, {by} expects {expected}")
        return
    if list(expected) != list(held):
        pairs = zip(held, expected)
        first = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(held), len(expected)))
        found = repr(held[first]) if first < len(held) else "nothing"
        wanted = repr(expected[first]) if first < len(expected) else "nothing"
        raise DataError(
            f"{where} holds other classes than {by} expects: class {first} is {found}, {by} has {wanted} "
            f"({len(held)} classes against {len(expected)})"
        )
