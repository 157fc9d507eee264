import numpy as np
import pytest
import torch

from lit_effnet.data import ImageDataModule
from lit_effnet.data.datamodule import AugmentedDataset, EpochDistributedSampler, SampleKey
from lit_effnet.data.datasets import ArrayDataset
from lit_effnet.data.transforms import train_transform
from lit_effnet.errors import ConfigError
from tests.conftest import tiny_datamodule
from tests.data.fixtures import write_imagefolder

IMAGES = np.random.default_rng(0).integers(0, 256, (20, 24, 24, 3), dtype=np.uint8)


def test_augmentation_is_a_function_of_seed_epoch_and_index():
    dataset = AugmentedDataset(ArrayDataset(IMAGES, range(20)), [train_transform(16, randaug_magnitude=9)], seed=1)
    first = dataset[SampleKey(0, 3)][0]
    assert torch.equal(first, dataset[SampleKey(0, 3)][0])  # any worker, any time, after any resume
    assert not torch.equal(first, dataset[SampleKey(1, 3)][0])  # next epoch: new augmentation
    assert not torch.equal(first, AugmentedDataset(dataset.base, dataset.transforms, seed=2)[SampleKey(0, 3)][0])


def test_each_sample_uses_the_transform_of_its_stage():
    transforms = [train_transform(size) for size in (8, 16)]
    dataset = AugmentedDataset(ArrayDataset(IMAGES, range(20)), transforms)
    assert dataset[SampleKey(0, 1, 0)][0].shape == (3, 8, 8) and dataset[SampleKey(0, 1, 1)][0].shape == (3, 16, 16)


def test_sampler_order_depends_only_on_epoch_and_splits_ranks_disjointly():
    dataset = ArrayDataset(IMAGES, range(20))
    ranks = [EpochDistributedSampler(dataset, num_replicas=2, rank=r, seed=0, drop_last=True) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(3)
    keys = [list(sampler) for sampler in ranks]
    assert all(key.epoch == 3 and key.stage == 0 for part in keys for key in part)
    indices = [key.index for part in keys for key in part]
    assert sorted(indices) == list(range(20))
    again = EpochDistributedSampler(dataset, num_replicas=2, rank=0, seed=0, drop_last=True)
    again.set_epoch(3)
    assert list(again) == keys[0]
    again.set_epoch(4)
    assert list(again) != keys[0]


def test_sampler_gives_every_key_of_a_batch_the_stage_of_that_batch():
    dataset = ArrayDataset(IMAGES, range(20))
    sampler = EpochDistributedSampler(
        dataset, batch_size=4, stage_of_batch=lambda epoch, batch, batches: (batch + epoch) % 3,
        num_replicas=1, rank=0, seed=0,
    )  # fmt: skip
    sampler.set_epoch(2)
    stages = [key.stage for key in sampler]
    assert stages == [(b + 2) % 3 for b in range(5) for _ in range(4)]


def test_datamodule_knows_its_class_count_before_reading_images():
    assert tiny_datamodule().num_classes == 10


def test_train_loader_is_cached_until_its_stage_changes_and_yields_uint8_normalised_on_transfer():
    datamodule = tiny_datamodule(image_size=24, randaug_magnitude=2.0, mean=(0.5,) * 3, std=(0.25,) * 3)
    datamodule.setup("fit")
    first = datamodule.train_dataloader()
    assert datamodule.train_dataloader() is first and datamodule.train_loader_builds == 1
    images, labels = next(iter(first))
    assert images.shape == (32, 3, 24, 24) and images.dtype == torch.uint8 and labels.shape == (32,)
    normalised, _ = datamodule.on_after_batch_transfer((images, labels), 0)
    assert torch.allclose(normalised, (images.float() / 255 - 0.5) / 0.25)
    datamodule.hparams.image_size = 32
    assert datamodule.train_dataloader() is not first and datamodule.train_loader_builds == 2


def test_an_imagefolder_datamodule_works_without_a_trainer(tmp_path):
    write_imagefolder(tmp_path, per_class=6)
    datamodule = ImageDataModule("imagefolder", root=str(tmp_path), batch_size=4, image_size=40, num_workers=0)
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (4, 3, 40, 40) and set(labels.tolist()) <= {0, 1, 2}
    with pytest.raises(ConfigError, match=r"data\.eval_size is not set and the network does not say"):
        datamodule.val_dataloader()


def test_train_subset_is_a_fixed_random_subset():
    chosen = list(tiny_datamodule(train_subset=100, seed=3)._splits().train.indices)
    assert len(chosen) == len(set(chosen)) == 100
    assert list(tiny_datamodule(train_subset=100, seed=3)._splits().train.indices) == chosen  # fixed by the seed
    assert list(tiny_datamodule(train_subset=100, seed=4)._splits().train.indices) != chosen
    assert len(tiny_datamodule(train_subset=100, seed=3)._splits().val) == 360  # evaluation untouched


def test_unknown_dataset_and_bad_batch_size_name_their_keys():
    with pytest.raises(ConfigError, match=r"data\.name"):
        ImageDataModule("mnist")
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        ImageDataModule("digits", batch_size=0)
