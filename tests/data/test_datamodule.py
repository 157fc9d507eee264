import numpy as np
import torch

from lit_effnet.data.datamodule import AugmentedDataset, EpochDistributedSampler
from lit_effnet.data.datasets import ArrayDataset
from lit_effnet.data.transforms import eval_transform, train_transform
from tests.conftest import tiny_datamodule

IMAGES = np.random.default_rng(0).integers(0, 256, (20, 24, 24, 3), dtype=np.uint8)
STATS = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def test_train_and_eval_transforms_give_normalised_tensors_at_their_sizes():
    train = train_transform(16, randaug_magnitude=9, **STATS)
    out = train(image=IMAGES[0])["image"]
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32 and out.min() >= -1.0 and out.max() <= 1.0
    evaluated = eval_transform(20, crop_pct=0.875, **STATS)(image=IMAGES[0])["image"]
    assert evaluated.shape == (3, 20, 20)


def test_augmentation_is_a_function_of_seed_epoch_and_index():
    dataset = AugmentedDataset(
        ArrayDataset(IMAGES, range(20)), train_transform(16, randaug_magnitude=9, **STATS), seed=1
    )
    first = dataset[(0, 3)][0]
    assert torch.equal(first, dataset[(0, 3)][0])  # any worker, any time, after any resume
    assert not torch.equal(first, dataset[(1, 3)][0])  # next epoch: new augmentation
    assert not torch.equal(first, AugmentedDataset(dataset.base, dataset.transform, seed=2)[(0, 3)][0])


def test_sampler_order_depends_only_on_epoch_and_splits_ranks_disjointly():
    dataset = ArrayDataset(IMAGES, range(20))
    ranks = [EpochDistributedSampler(dataset, num_replicas=2, rank=r, seed=0, drop_last=True) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(3)
    keys = [list(sampler) for sampler in ranks]
    assert all(epoch == 3 for part in keys for epoch, _ in part)
    indices = [index for part in keys for _, index in part]
    assert sorted(indices) == list(range(20))
    again = EpochDistributedSampler(dataset, num_replicas=2, rank=0, seed=0, drop_last=True)
    again.set_epoch(3)
    assert list(again) == keys[0]
    again.set_epoch(4)
    assert list(again) != keys[0]


def test_datamodule_knows_its_class_count_before_reading_images():
    assert tiny_datamodule().num_classes == 10


def test_train_loader_is_cached_until_the_stage_changes():
    datamodule = tiny_datamodule(image_size=24, randaug_magnitude=2.0, mean=(0.5,) * 3, std=(0.5,) * 3)
    first = datamodule.train_dataloader()
    assert datamodule.train_dataloader() is first and datamodule.train_loader_builds == 1
    images, labels = next(iter(first))
    assert images.shape == (32, 3, 24, 24) and labels.shape == (32,)
    datamodule.hparams.image_size = 32
    assert datamodule.train_dataloader() is not first and datamodule.train_loader_builds == 2


def test_train_subset_is_a_fixed_random_subset():
    chosen = list(tiny_datamodule(train_subset=100, seed=3)._splits().train.indices)
    assert len(chosen) == len(set(chosen)) == 100
    assert list(tiny_datamodule(train_subset=100, seed=3)._splits().train.indices) == chosen  # fixed by the seed
    assert list(tiny_datamodule(train_subset=100, seed=4)._splits().train.indices) != chosen
    assert len(tiny_datamodule(train_subset=100, seed=3)._splits().val) == 360  # evaluation untouched
