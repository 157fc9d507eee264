"""A LightningDataModule whose train loader follows the progressive-learning stage it is handed.

Settings left unset (None) come from the network (its `data_config()`: sizes, crop, interpolation,
normalisation), read once at setup. A driver such as `ProgressiveLearning` hands the DataModule a plan
(`follow`): which image size and RandAugment magnitude each epoch, and each batch under random resize,
trains at. Lightning 2.6 requests the train loader (`setup_data`) BEFORE `on_train_epoch_start` and does
not checkpoint its reload bookkeeping, so the plan is evaluated at `trainer.current_epoch` when the loader
is requested; the loader is rebuilt only when the stage's sizes or magnitudes change.

Training images are decoded only as far as their random crop needs (`train_transform`: the box is drawn from
the header, a JPEG decoded at reduced scale); each sample's draws are a function of (seed, epoch, index).
Batches leave the loader as uint8 and are normalised on the device they train on (`on_after_batch_transfer`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import albumentations as A
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from lit_effnet.callbacks import xla
from lit_effnet.data.datasets import Splits, check_classes, dataset_entry, load_rgb, load_splits, num_classes_of
from lit_effnet.data.transforms import (
    CutoutFill,
    EvalCrop,
    Normalize,
    TrainCrop,
    TrainTransform,
    eval_transform,
    train_transform,
)
from lit_effnet.errors import ConfigError, CorruptImageError, DataError, DatasetNotFoundError, refuse_pinned
from lit_effnet.models.data_config import DataConfig, ProvidesDataConfig
from lit_effnet.models.specs import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from lit_effnet.callbacks.progressive import TrainStagePlan


class SampleKey(NamedTuple):
    """What a training sample is: its epoch (for its augmentation seed), its index, and the stage it is built for."""

    epoch: int
    index: int
    stage: int = 0


class EpochDistributedSampler(DistributedSampler):
    """DistributedSampler whose indices carry their epoch and stage: `SampleKey(epoch, index, stage)`.

    The order depends only on (seed, epoch), as with DistributedSampler; the epoch lets the dataset seed
    each sample's augmentation independently of workers and resume. `stage_of_batch(epoch, batch,
    batches)` picks the stage of each batch of `batch_size` consecutive keys (random resize); by default 0.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int = 1,
        stage_of_batch: Callable[[int, int, int], int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        self.batch_size, self.stage_of_batch = batch_size, stage_of_batch
        self.start = 0  # keys to leave out at the start of the next pass (a resume in the middle of an epoch)

    def __iter__(self) -> Iterator[SampleKey]:
        epoch, indices = self.epoch, list(super().__iter__())
        start, self.start = self.start, 0
        batches = len(indices) // self.batch_size
        for position, index in enumerate(indices[start:], start):
            batch = position // self.batch_size
            stage = self.stage_of_batch(epoch, batch, batches) if self.stage_of_batch is not None else 0
            yield SampleKey(epoch, index, stage)


class ResumableLoader(DataLoader):
    """A DataLoader whose place in the epoch goes into the checkpoint: (epoch, batches handed out).

    Lightning saves a loader's `state_dict()` with the checkpoint and hands it back to `load_state_dict()` before
    the resumed run's first batch; the sampler's order is a function of (seed, epoch), so skipping the batches
    already trained resumes the same stream. Written here because the state is two integers: torchdata's
    StatefulDataLoader would snapshot sampler, worker and RNG states that this order does not need.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._served = 0  # batches handed out by the current pass
        self._resume: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state)

    def __iter__(self) -> Iterator[Any]:
        # Lightning sets the sampler's epoch after asking for the iterator and before the first batch: a
        # generator reads it then. A state saved at the end of an epoch does not apply to the next one.
        resume, self._resume = self._resume, None
        self._served = resume["batches"] if resume is not None and resume["epoch"] == self.sampler.epoch else 0
        self.sampler.start = self._served * self.batch_size
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def shutdown_workers(self) -> None:
        """End the persistent worker processes now (a new stage's loader replaces this one)."""
        workers = getattr(self, "_iterator", None)  # torch keeps persistent workers' iterator there
        if workers is not None and hasattr(workers, "_shutdown_workers"):
            workers._shutdown_workers()
        self._iterator = None


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one training sample's augmentation: a function of (seed, epoch, index) only."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class AugmentedDataset(Dataset):
    """A split's (image, label) as (uint8 CHW tensor, label), through one transform per stage.

    A `TrainTransform` takes the image as the split holds it (a file's bytes or an array) and, with
    `SampleKey`s, the sample's seed (`sample_seed`); an albumentations pipeline (eval) takes the decoded
    array. With `skip_corrupt`, an image that cannot be read or decoded is replaced by the next readable
    one and counted in a warning naming the file (per loader process); otherwise its CorruptImageError
    stops the run.
    """

    def __init__(
        self,
        base: Dataset,
        transforms: Sequence[TrainTransform | A.Compose],
        seed: int = 0,
        skip_corrupt: bool = False,
    ) -> None:
        self.base, self.transforms, self.seed, self.skip_corrupt = base, list(transforms), seed, skip_corrupt
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, ...]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            epoch, index, stage = SampleKey(*key)
            transform, seed = self.transforms[stage], sample_seed(self.seed, epoch, index)
        else:
            index, transform, seed = key, self.transforms[0], None
        for offset in range(len(self.base)):
            try:
                image, label = self.base[(index + offset) % len(self.base)]
                if isinstance(transform, TrainTransform):
                    return transform(image, seed), int(label)
                return transform(image=np.asarray(image))["image"], int(label)
            except CorruptImageError as err:
                if not self.skip_corrupt:
                    raise
                self.skipped += 1
                warnings.warn(f"skipped corrupt image ({self.skipped} in this process): {err}", stacklevel=2)
        raise CorruptImageError(f"no readable image among the {len(self.base)} of this split")


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
            raise DataError(f"data.predict_files: no such file or folder {path}")
    if not paths:
        raise DataError(f"data.predict_files: no images in {list(entries)}")
    return paths


class ImageFiles(Dataset):
    """Image files to classify; the label slot carries the file's index."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return load_rgb(self.paths[index]), index


# Where a network says nothing (torchvision's, or no Trainer yet), these defaults apply: timm's crop and
# interpolation defaults and the ImageNet statistics every torchvision classifier was trained with.
GENERIC_DEFAULTS = {
    "crop_pct": 0.875,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "train_interpolation": "bilinear",
    "eval_interpolation": "bicubic",
    "crop_scale": (0.08, 1.0),
}


class ImageDataModule(LightningDataModule):
    """Train/val/test loaders for `name` under `root`, at the model's (or the stage's) image sizes.

    Args:
        name: a registered dataset (`lit_effnet.data.datasets.DATASETS`): digits (embedded, no download),
            digits_rotation, cifar10, cifar100, flowers102, stanford_cars, imagefolder.
        root: folder holding the dataset in torchvision's layout (imagefolder: the folder with train/, val/).
        batch_size: images per device and step (global batch = devices x batch_size x accumulation).
        eval_batch_size: per device for val/test/predict; defaults to batch_size.
        num_workers: loader processes per device; None chooses min(8, CPUs per device).
        image_size: train size; None: the network's train size; "eval": its eval size (the official
            fine-tuning). Must stay unset when progressive learning schedules it.
        eval_size, crop_pct, mean, std, train_interpolation, eval_interpolation, crop_scale: None: the network's.
        eval_crop: "center" (timm: resize to eval_size / crop_pct, centre-crop) or "official" (the V2 code:
            the whole image resized to a square from 320 px, a size/(size+32) centre crop below).
        train_crop: "random_resized" (area range `crop_scale`) or "whole" (the image resized, no crop:
            the official fine-tuning's 'ft' augmentation).
        randaug_magnitude: RandAugment level (TF 0-10 scale; None or 0: off); must stay unset when
            progressive learning schedules it.
        randaug_ops: RandAugment layers (2 in the papers).
        hflip: random horizontal flips (off for digits, where a flip changes the class).
        cutout: side of one cutout square as a fraction of the image (0: off); `cutout_fill` grey or noise.
        seed: augmentation and shuffling seed; None: the `seed_everything` seed (or 0).
        predict_files: image files or folders for `train.py predict` (top-5 labels are printed).
        skip_corrupt_images: replace an undecodable training/eval image by the next one and warn (with a
            count) instead of stopping with its path.
        train_subset: train on a fixed random subset of this many images (data-efficiency experiments).
        classes: the classes the run expects, a count or the names in order (None: whatever the data holds);
            data that holds others stops the run naming data.root.
        cache_dir: where a shard set streamed from object storage keeps its chunks (`shards` only; None:
            litdata's default, $LITDATA_CACHE_DIR or ~/.lightning/chunks).
    """

    def __init__(
        self,
        name: str = "digits",
        root: str = "data",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        image_size: int | Literal["eval"] | None = None,
        eval_size: int | None = None,
        crop_pct: float | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        randaug_magnitude: float | None = None,
        randaug_ops: int = 2,
        crop_scale: tuple[float, float] | None = None,
        train_crop: TrainCrop = "random_resized",
        eval_crop: EvalCrop = "center",
        hflip: bool = True,
        cutout: float = 0.0,
        cutout_fill: CutoutFill = "grey",
        train_interpolation: str | None = None,
        eval_interpolation: str | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        seed: int | None = None,
        predict_files: list[str] | None = None,
        skip_corrupt_images: bool = False,
        train_subset: int | None = None,
        classes: int | list[str] | None = None,
        cache_dir: str | None = None,
    ) -> None:  # pragma: no mutate block (mutmut renames it; save_hyperparameters needs a frame named __init__)
        super().__init__()
        dataset_entry(name)  # an unknown name stops here, naming data.name
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        # Not sent to the logger: `name` would clash with the model's (the CLI saves the whole config anyway).
        self.save_hyperparameters(logger=False)
        self.name, self.root = name, Path(root) if "://" not in str(root) else str(root)  # a URL: a shard set
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.splits: Splits | None = None
        self.train_loader_builds = 0  # how often a train DataLoader was constructed (once per stage)
        self._model: DataConfig | None = None
        self._plan: TrainStagePlan | None = None
        self._normalize: Normalize | None = None
        self._train_loader: DataLoader | None = None
        self._train_loader_key: tuple | None = None
        self._eval_loaders: dict[str, DataLoader] = {}
        self._resume_position: dict[str, Any] | None = None  # the checkpoint's train loader state (load_state_dict)

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

    def _setting(self, key: str) -> Any:
        """An explicit data setting, else the network's, else a generic default (none for eval_size)."""
        value = self.hparams[key]
        if value is not None:
            return value
        if self._model is not None:
            return getattr(self._model, "train_crop_scale" if key == "crop_scale" else key)
        if key not in GENERIC_DEFAULTS:
            raise ConfigError(f"data.{key} is not set and the network does not say what it expects: set data.{key}")
        return GENERIC_DEFAULTS[key]

    def _train_size(self) -> int:
        size = self.hparams.image_size
        if size == "eval":
            return int(self._setting("eval_size"))
        if size is None:
            if self._model is None:
                raise ConfigError("data.image_size is not set and the network does not say its train size")
            return self._model.train_size
        return int(size)

    def follow(self, plan: TrainStagePlan, knobs: Sequence[str]) -> None:
        """Build train loaders from `plan` (a progressive-learning driver) for the knobs it schedules."""
        for knob in knobs:
            refuse_pinned(knob, f"data.{knob}", self.hparams[knob])
        self._plan = plan

    def train_stages(self, epoch: int) -> tuple[tuple[int, float], ...]:
        """(image size, RandAugment magnitude) of each stage the train loader serves at `epoch`."""
        magnitude = float(self.hparams.randaug_magnitude or 0.0)
        if self._plan is None:
            return ((self._train_size(), magnitude),)
        return tuple(
            (size if size is not None else self._train_size(), m if m is not None else magnitude)
            for size, m in self._plan.stages_at(epoch)
        )

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
            if self.hparams.classes is not None:
                check_classes(splits.classes, self.hparams.classes, f"data.root {self.root}", "data.classes")
            subset = self.hparams.train_subset
            if subset is not None and self.name == "shards":
                raise ConfigError("data.train_subset: not with data.name shards (a stream has no random access)")
            if subset is not None:
                if not 0 < subset <= len(splits.train):
                    raise ConfigError(f"data.train_subset must be in 1..{len(splits.train)}, got {subset}")
                chosen = np.random.default_rng(self._seed()).permutation(len(splits.train))[:subset]
                splits = dataclasses.replace(splits, train=Subset(splits.train, sorted(chosen.tolist())))
            self.splits = splits
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        module = self.trainer.lightning_module if self.trainer is not None else None
        self._model = module.data_config() if isinstance(module, ProvidesDataConfig) else None
        if stage == "fit":
            self._plan = None  # a driver hands its plan after this (callbacks' setup runs after the data's)
        if stage == "predict":
            self.predict_paths()  # fail fast on a missing file
        else:
            self._splits()

    def state_dict(self) -> dict[str, Any]:
        """The class names trained on (a resume on data with other classes stops) and the train loader's place in
        its epoch. Lightning keeps a stateful loader's state too, but hands it back only when it rebuilds the loader
        in the resumed run, which a run without stages never does (configure_optimizers builds it before the loops
        are restored); this state is restored before that first build."""
        state: dict[str, Any] = {"classes": self.splits.classes} if self.splits is not None else {}
        if self._train_loader is not None:
            state["train_loader"] = self._train_loader.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        expected = state_dict.get("classes")
        held = self.class_names() if expected else None
        if held is not None:
            check_classes(held, expected, f"data.root {self.root}", "the checkpoint")
        self._resume_position = state_dict.get("train_loader")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None:  # on XLA, what is pending runs before this batch's graph (callbacks/xla.py)
            xla.end_graph(self.trainer.strategy.root_device)
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if images.dtype == torch.uint8:
            if self._normalize is None:
                self._normalize = Normalize(self._setting("mean"), self._setting("std"))
            images = self._normalize(images)
        return images, labels

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        key = self.train_stages(epoch)
        if self._train_loader is None or self._train_loader_key != key:
            if isinstance(self._train_loader, ResumableLoader):
                self._train_loader.shutdown_workers()  # the previous stage's, not left to the garbage collector
            self._train_loader = self._build_train_loader(key)
            self._train_loader_key = key
            self.train_loader_builds += 1
            if self._resume_position is not None:  # a resume: the first train loader continues the checkpoint's
                self._train_loader.load_state_dict(self._resume_position)
                self._resume_position = None
        # Lightning sets the sampler's epoch only after it has built the epoch's iterator.
        epoch_of = getattr(self._train_loader, "set_epoch", None) or self._train_loader.sampler.set_epoch
        epoch_of(epoch)
        return self._train_loader

    def _build_train_loader(self, stages: Sequence[tuple[int, float]]) -> ResumableLoader:
        h = self.hparams
        transforms = [
            train_transform(
                size,
                randaug_magnitude=magnitude,
                randaug_ops=h.randaug_ops,
                crop=h.train_crop,
                crop_scale=tuple(self._setting("crop_scale")),
                hflip=h.hflip,
                cutout=h.cutout,
                cutout_fill=h.cutout_fill,
                interpolation=self._setting("train_interpolation"),
            )
            for size, magnitude in stages
        ]
        if self.name == "shards":
            return self._shard_loader("train", transforms)
        dataset = AugmentedDataset(
            self._splits().train, transforms, seed=self._seed(), skip_corrupt=h.skip_corrupt_images
        )
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        sampler = EpochDistributedSampler(
            dataset,
            batch_size=self.batch_size,
            stage_of_batch=self._plan.stage_of_batch if self._plan is not None and len(stages) > 1 else None,
            num_replicas=world,
            rank=rank,
            shuffle=True,
            seed=self._seed(),
            drop_last=True,
        )
        if len(sampler) < self.batch_size:
            raise ConfigError(
                f"data.batch_size {self.batch_size} is larger than the {len(sampler)} training images per device"
            )
        return ResumableLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True, **self._loader_kwargs()
        )

    def _shard_loader(self, split: str, transforms: Sequence[Any]) -> DataLoader:
        """A split of a shard set, streamed (lit_effnet/data/shards.py); the folder path's transforms."""
        from lit_effnet.data import shards

        h, train = self.hparams, split == "train"
        if len(transforms) > 1:
            raise ConfigError("progressive.mode random_resize: not with data.name shards (one stage per loader)")
        build = shards.train_loader if train else shards.eval_loader
        extra = {"seed": self._seed(), "batch_size": self.batch_size} if train else {"batch_size": self.eval_batch_size}
        loader = build(
            getattr(self._splits(), split), transforms[0], cache_dir=h.cache_dir, skip_corrupt=h.skip_corrupt_images,
            **extra, **self._loader_kwargs(),
        )  # fmt: skip
        return loader

    def _eval_loader(self, split: str) -> DataLoader:
        if split not in self._eval_loaders:
            transform = eval_transform(
                int(self._setting("eval_size")),
                crop_pct=float(self._setting("crop_pct")),
                crop=self.hparams.eval_crop,
                interpolation=self._setting("eval_interpolation"),
            )
            if self.name == "shards" and split != "predict":
                self._eval_loaders[split] = self._shard_loader(split, [transform])
                return self._eval_loaders[split]
            base = ImageFiles(self.predict_paths()) if split == "predict" else getattr(self._splits(), split)
            dataset = AugmentedDataset(base, [transform], skip_corrupt=self.hparams.skip_corrupt_images)
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
