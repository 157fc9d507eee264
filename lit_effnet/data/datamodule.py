"""A LightningDataModule that builds its train loader for the current progressive-learning stage.

Lightning 2.6 calls `train_dataloader()` (through `setup_data`) BEFORE `on_train_epoch_start`, and its
reload bookkeeping is not checkpointed, so a stage switched from a callback hook would land one
epoch late and be lost on resume. Here the stage is derived from `trainer.current_epoch` at the
moment the loader is requested; Lightning re-requests it every epoch (the ProgressiveLearning
callback sets `reload_dataloaders_every_n_epochs=1`), and the loader is rebuilt only when the
stage's image size or RandAugment magnitude differs from the cached one.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from lit_effnet.data.datasets import (
    CorruptImageError,
    DatasetNotFoundError,
    Splits,
    check_name,
    load_rgb,
    load_splits,
    num_classes_of,
)
from lit_effnet.data.transforms import eval_transform, train_transform


class EpochDistributedSampler(DistributedSampler):
    """DistributedSampler whose indices carry their epoch: `(epoch, index)`.

    The order depends only on (seed, epoch), as with DistributedSampler; tagging each index with the
    epoch lets the dataset seed its augmentation per sample, independent of workers and resume.
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, indices = self.epoch, super().__iter__()
        return ((epoch, index) for index in indices)


class AugmentedDataset(Dataset):
    """Applies an albumentations pipeline; with `(epoch, index)` keys, seeded per sample.

    With `skip_corrupt`, an undecodable image is replaced by the next readable one and counted in a
    warning naming the file (per loader process); otherwise its CorruptImageError stops the run.
    """

    def __init__(self, base: Dataset, transform: A.Compose, seed: int = 0, skip_corrupt: bool = False) -> None:
        self.base, self.transform, self.seed, self.skip_corrupt = base, transform, seed, skip_corrupt
        self.skipped = 0

    def _load(self, index: int) -> tuple[Any, int]:
        for offset in range(len(self.base)):
            try:
                return self.base[(index + offset) % len(self.base)]
            except CorruptImageError as err:
                if not self.skip_corrupt:
                    raise
                self.skipped += 1
                warnings.warn(f"skipped corrupt image ({self.skipped} in this process): {err}", stacklevel=2)
        raise CorruptImageError(f"no readable image among the {len(self.base)} of this split")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            epoch, index = key
            sample_seed = np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]
            self.transform.set_random_seed(int(sample_seed))
        else:
            index = key
        image, label = self._load(index)
        return self.transform(image=np.asarray(image))["image"], int(label)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def expand_image_paths(entries: Sequence[str]) -> list[Path]:
    """Files as given; folders as their image files (recursively, sorted)."""
    paths: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"data.predict_files: no such file or folder {path}")
    if not paths:
        raise FileNotFoundError(f"data.predict_files: no images in {list(entries)}")
    return paths


class ImageFiles(Dataset):
    """Image files to classify; the label slot carries the file's index."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return load_rgb(self.paths[index]), index


class ImageDataModule(LightningDataModule):
    """Train/val/test loaders for `name` under `root`, at the model's (or the stage's) image sizes.

    Args:
        name: digits (embedded, no download), cifar10, cifar100, flowers102, stanford_cars, imagefolder.
        root: folder holding the dataset in torchvision's layout (imagefolder: the folder with train/, val/).
        batch_size: images per device and step (global batch = devices x batch_size x accumulation).
        eval_batch_size: per device for val/test/predict; defaults to batch_size.
        num_workers: loader processes per device; None chooses min(8, CPUs per device).
        image_size: train size when no ProgressiveLearning callback drives it; None: the model's train size.
        eval_size, crop_pct, mean, std: evaluation crop and normalisation; None: the model's.
        randaug_magnitude: RandAugment level (TF 0-10 scale) when no ProgressiveLearning callback drives it.
        randaug_ops: RandAugment layers (2 in the papers).
        crop_scale: area range of the random-resized crop.
        hflip: random horizontal flips (off for digits, where a flip changes the class).
        cutout: side of one cutout square as a fraction of the image (0: off).
        seed: augmentation and shuffling seed; None: the `seed_everything` seed (or 0).
        predict_files: image files or folders for `train.py predict` (top-5 labels are printed).
        skip_corrupt_images: replace an undecodable training/eval image by the next one and warn (with a
            count) instead of stopping with its path.
        train_subset: train on a fixed random subset of this many images (data-efficiency experiments).
    """

    def __init__(
        self,
        name: str = "digits",
        root: str = "data",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        image_size: int | None = None,
        eval_size: int | None = None,
        crop_pct: float | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        randaug_magnitude: float = 0.0,
        randaug_ops: int = 2,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        hflip: bool = True,
        cutout: float = 0.0,
        train_interpolation: str = "bilinear",
        eval_interpolation: str = "bicubic",
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        seed: int | None = None,
        predict_files: list[str] | None = None,
        skip_corrupt_images: bool = False,
        train_subset: int | None = None,
    ) -> None:
        super().__init__()
        check_name(name)
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        # Not sent to the logger: `name` would clash with the model's (the CLI saves the whole config anyway).
        self.save_hyperparameters(logger=False)
        self.name, self.root = name, Path(root)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.splits: Splits | None = None
        self.train_loader_builds = 0  # how often a train DataLoader was constructed (once per stage)
        self._train_loader: DataLoader | None = None
        self._train_loader_key: tuple | None = None
        self._eval_loaders: dict[str, DataLoader] = {}

    # ----------------------------------------------------------- facts known before reading images

    @property
    def num_classes(self) -> int:
        return num_classes_of(self.name, self.root)

    @property
    def classes(self) -> list[str]:
        return self._splits().classes

    def class_names(self) -> list[str] | None:
        """Class names when the dataset is at hand (prediction may run where it is not)."""
        try:
            return self.classes
        except DatasetNotFoundError:
            return None

    def predict_paths(self) -> list[Path]:
        return expand_image_paths(self.hparams.predict_files or [])

    # ----------------------------------------------------------- settings

    def _model_spec(self) -> Any:
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        return getattr(getattr(module, "net", None), "spec", None)

    def _setting(self, key: str) -> Any:
        """An explicit data setting, else the model's (its spec field of the same name)."""
        value = self.hparams[key]
        if value is None:
            spec = self._model_spec()
            field = "train_size" if key == "image_size" else key
            if spec is None:
                raise ValueError(f"data.{key} is not set and there is no model spec to take it from")
            value = getattr(spec, field)
        return value

    def train_stage(self) -> tuple[int, float]:
        """(image size, RandAugment magnitude) for the epoch the trainer is at."""
        from lit_effnet.callbacks.progressive import ProgressiveLearning

        progressive = next(
            (c for c in getattr(self.trainer, "callbacks", []) if isinstance(c, ProgressiveLearning)), None
        )
        stage = progressive.stage_settings(self.trainer) if progressive is not None else None
        size = stage.image_size if stage is not None and stage.image_size is not None else self._setting("image_size")
        magnitude = self.hparams.randaug_magnitude
        if stage is not None and stage.randaug_magnitude is not None:
            magnitude = stage.randaug_magnitude
        return int(size), float(magnitude)

    def _seed(self) -> int:
        if self.hparams.seed is not None:
            return int(self.hparams.seed)
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def _num_workers(self) -> int:
        if self.hparams.num_workers is not None:
            return self.hparams.num_workers
        per_node = max(1, getattr(self.trainer, "num_devices", 1)) if self.trainer is not None else 1
        return min(8, max(1, (os.cpu_count() or 1) // per_node))

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self._num_workers()
        pin = self.hparams.pin_memory
        if pin is None:
            pin = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return {
            "num_workers": workers,
            "pin_memory": pin,
            "persistent_workers": self.hparams.persistent_workers and workers > 0,
        }

    # ----------------------------------------------------------- Lightning hooks

    def _splits(self) -> Splits:
        if self.splits is None:
            splits = load_splits(self.name, self.root)
            subset = self.hparams.train_subset
            if subset is not None:
                if not 0 < subset <= len(splits.train):
                    raise ValueError(f"data.train_subset must be in 1..{len(splits.train)}, got {subset}")
                chosen = np.random.default_rng(self._seed()).permutation(len(splits.train))[:subset]
                splits = dataclasses.replace(splits, train=Subset(splits.train, sorted(chosen.tolist())))
            self.splits = splits
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self.predict_paths()  # fail fast on a missing file
        else:
            self._splits()

    def train_dataloader(self) -> DataLoader:
        size, magnitude = self.train_stage()
        key = (size, magnitude)
        if self._train_loader is None or self._train_loader_key != key:
            self._train_loader = self._build_train_loader(size, magnitude)
            self._train_loader_key = key
            self.train_loader_builds += 1
        sampler = self._train_loader.sampler
        if self.trainer is not None:  # Lightning sets the epoch only after it has built the epoch's iterator
            sampler.set_epoch(self.trainer.current_epoch)
        return self._train_loader

    def _build_train_loader(self, size: int, magnitude: float) -> DataLoader:
        h = self.hparams
        transform = train_transform(
            size,
            mean=self._setting("mean"),
            std=self._setting("std"),
            randaug_magnitude=magnitude,
            randaug_ops=h.randaug_ops,
            crop_scale=tuple(h.crop_scale),
            hflip=h.hflip,
            cutout=h.cutout,
            interpolation=h.train_interpolation,
        )
        dataset = AugmentedDataset(
            self._splits().train, transform, seed=self._seed(), skip_corrupt=self.hparams.skip_corrupt_images
        )
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        sampler = EpochDistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=self._seed(), drop_last=True
        )
        if len(sampler) < self.batch_size:
            raise ValueError(
                f"data.batch_size {self.batch_size} is larger than the {len(sampler)} training images per device"
            )
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True, **self._loader_kwargs())

    def _eval_loader(self, split: str) -> DataLoader:
        if split not in self._eval_loaders:
            base = ImageFiles(self.predict_paths()) if split == "predict" else getattr(self._splits(), split)
            transform = eval_transform(
                int(self._setting("eval_size")),
                mean=self._setting("mean"),
                std=self._setting("std"),
                crop_pct=float(self._setting("crop_pct")),
                interpolation=self.hparams.eval_interpolation,
            )
            dataset = AugmentedDataset(base, transform, skip_corrupt=self.hparams.skip_corrupt_images)
            self._eval_loaders[split] = DataLoader(
                dataset, batch_size=self.eval_batch_size, shuffle=False, **self._loader_kwargs()
            )
        return self._eval_loaders[split]

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")
