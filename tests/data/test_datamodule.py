import os
import random
import re
from pathlib import Path
from types import SimpleNamespace

import albumentations as A
import cv2
import lightning as L
import numpy as np
import pytest
import sklearn.datasets
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image

from lit_effnet.callbacks import ProgressiveLearning
from lit_effnet.data import ImageDataModule, decode, transforms
from lit_effnet.data.datamodule import AugmentedDataset, EpochDistributedSampler, SampleKey, sample_seed
from lit_effnet.data.datasets import ArrayDataset
from lit_effnet.data.transforms import train_transform
from lit_effnet.errors import ConfigError, CorruptImageError, DataError
from tests.conftest import fast_trainer, tiny_datamodule, tiny_module
from tests.data.fixtures import write_imagefolder, write_shard_set

IMAGES = np.random.default_rng(0).integers(0, 256, (20, 24, 24, 3), dtype=np.uint8)
PHOTOS = sorted((Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))  # china, flower: 640x427


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """An ImageFolder of real photos: 2 classes x 4 JPEGs of 500x375 (ImageNet-like), quality 90."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for photo in PHOTOS:
        rgb = np.asarray(Image.open(photo).convert("RGB"))
        for i in range(4):
            top, left = rng.integers(0, 40), rng.integers(0, 80)
            window = np.ascontiguousarray(rgb[top : top + 380, left : left + 507])
            image = cv2.resize(window, (500, 375), interpolation=cv2.INTER_AREA)
            for split in ("train", "val"):
                (root / split / photo.stem).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / split / photo.stem / f"{i}.jpg", quality=90)
    return root


def photo_datamodule(root: Path, **kwargs) -> ImageDataModule:
    defaults = dict(batch_size=4, image_size=64, num_workers=0, randaug_magnitude=9.0, seed=3, crop_scale=(0.08, 1.0))
    return ImageDataModule("imagefolder", root=str(root), **{**defaults, **kwargs})


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


def _reference_box(key: SampleKey, seed: int, shape: tuple[int, int], scale: tuple[float, float]) -> tuple:
    """albumentations' RandomResizedCrop box for this sample: its first draws from the sample's generator."""
    crop = A.RandomResizedCrop(size=(64, 64), scale=scale)
    crop.set_random_state(np.random.default_rng(0), random.Random(sample_seed(seed, key.epoch, key.index)))
    return tuple(crop.get_params_dependent_on_data({"shape": shape}, {})["crop_coords"])


def test_train_loader_crops_the_boxes_and_sizes_of_the_full_resolution_path(photo_folder, monkeypatch):
    """Through ImageDataModule: every sample's box is albumentations' RandomResizedCrop box for the same
    (seed, epoch, index) and is resized to the stage's size, however much of the JPEG was decoded."""
    crops = []

    def recording(source, box, size, interpolation):
        crops.append((box, size, decode.reduction_for(box, size)))
        return decode.decode_crop(source, box, size, interpolation)

    monkeypatch.setattr(transforms, "decode_crop", recording)
    datamodule = photo_datamodule(photo_folder)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        keys, start = list(loader.sampler), len(crops)
        for images, _ in loader:
            assert images.shape == (4, 3, 64, 64) and images.dtype == torch.uint8
        assert len(crops) - start == len(keys) == 8
        for key, (box, size, _) in zip(keys, crops[start:]):
            assert (box.x0, box.y0, box.x1, box.y1) == _reference_box(key, 3, (375, 500), (0.08, 1.0)) and size == 64
    assert {k for _, _, k in crops} >= {1, 2}  # reduced decodes among them (1/2, 1/4)


def test_train_samples_are_the_full_resolution_path_within_the_decode_bound(photo_folder):
    """AugmentedDataset against albumentations at full resolution (load_rgb -> RandomResizedCrop -> flip), same
    draws: identical where no reduction applies, and within tests/data/test_decode.py's bounds where one does."""
    datamodule = photo_datamodule(photo_folder, randaug_magnitude=None)
    datamodule.setup("fit")
    dataset = datamodule.train_dataloader().dataset
    files = [path for path, _ in datamodule.splits.train.samples]
    reduced, same = [], 0
    for size in (128, 300):  # the sizes tests/data/test_decode.py bounds; 300 px of 375 never reduces
        dataset.transforms = [train_transform(size, crop_scale=(0.08, 1.0))]
        for epoch in range(4):
            for index, path in enumerate(files):
                key = SampleKey(epoch, index)
                out = dataset[key][0].numpy().astype(np.int16)
                steps = [A.RandomResizedCrop(size=(size, size), scale=(0.08, 1.0)), A.HorizontalFlip(p=0.5)]
                reference = A.Compose([*steps, ToTensorV2()])
                rng, generator = random.Random(sample_seed(3, epoch, index)), np.random.default_rng(0)
                for step in reference.transforms:
                    step.set_random_state(generator, rng)
                expected = reference(image=decode.load_rgb(path))["image"].numpy().astype(np.int16)
                box = _reference_box(key, 3, (375, 500), (0.08, 1.0))
                if decode.reduction_for(decode.CropBox(*box), size) == 0:
                    np.testing.assert_array_equal(out, expected)
                    same += 1
                else:
                    reduced.append(np.abs(out - expected).mean())
    assert same >= 10 and len(reduced) >= 10
    # measured: 19 reduced crops, mean |difference| 4.1 grey levels, worst crop 8.2; test_decode's bounds (china)
    assert np.mean(reduced) <= 9.0 and max(reduced) <= 13.0


def test_augmentation_is_the_same_with_any_worker_count_and_after_a_rebuild(photo_folder):
    def first_batch(datamodule: ImageDataModule) -> tuple[torch.Tensor, torch.Tensor]:
        loader = datamodule.train_dataloader()
        return next(iter(loader))

    single = photo_datamodule(photo_folder, num_workers=0, persistent_workers=False)
    multi = photo_datamodule(photo_folder, num_workers=2, persistent_workers=False)
    for datamodule in (single, multi):
        datamodule.setup("fit")
    images, labels = first_batch(single)
    other_images, other_labels = first_batch(multi)
    assert torch.equal(images, other_images) and torch.equal(labels, other_labels)
    single.hparams.image_size = 48
    assert first_batch(single)[0].shape[-1] == 48
    single.hparams.image_size = 64
    again, _ = first_batch(single)
    assert single.train_loader_builds == 3 and torch.equal(again, images)


def test_a_corrupt_training_file_is_named_or_skipped_by_the_train_transform(photo_folder, tmp_path):
    """The split only reads the file; its header and pixels are decoded by the train transform, inside the retry."""
    import shutil

    root = tmp_path / "photos"
    shutil.copytree(photo_folder, root)
    bad = root / "train" / "china" / "1.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    datamodule = photo_datamodule(root)
    datamodule.setup("fit")
    files = [path for path, _ in datamodule.splits.train.samples]
    transform = [train_transform(32)]
    strict = AugmentedDataset(datamodule.splits.train, transform)
    with pytest.raises(CorruptImageError, match=re.escape(str(bad))):
        strict[SampleKey(0, files.index(str(bad)))]
    skipping = AugmentedDataset(datamodule.splits.train, transform, skip_corrupt=True)
    with pytest.warns(UserWarning, match=r"skipped corrupt image \(1 in this process\): .*1\.jpg"):
        image, label = skipping[SampleKey(0, files.index(str(bad)))]
    assert image.shape == (3, 32, 32) and label == datamodule.splits.train.targets[files.index(str(bad)) + 1]


def test_the_loader_resumes_at_the_batch_its_state_names_and_only_in_that_epoch():
    data = tiny_datamodule(image_size=32)
    data.setup("fit")
    loader = data.train_dataloader()
    whole = [labels for _, labels in loader]
    assert loader.state_dict() == {"epoch": 0, "batches": len(whole)}
    loader.load_state_dict({"epoch": 0, "batches": 3})
    resumed = [labels for _, labels in loader]
    assert len(resumed) == len(whole) - 3 and all(torch.equal(a, b) for a, b in zip(resumed, whole[3:]))
    assert loader.state_dict() == {"epoch": 0, "batches": len(whole)}
    loader.load_state_dict({"epoch": 0, "batches": 3})  # saved at the end of epoch 0 ...
    loader.sampler.set_epoch(1)  # ... and read back for epoch 1: the whole epoch
    assert len(list(loader)) == len(whole)


def _children() -> list[int]:
    """Live child processes of this one (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_twelve_stage_changes_with_loader_workers_leave_memory_flat_and_no_workers_behind(tmp_path):
    class Watch(L.Callback):
        def __init__(self):
            self.epochs = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.epochs.append((_rss_bytes(), len(_children())))

    stages = ProgressiveLearning(num_stages=13, image_size=(16, 112))  # 16, 24, ..., 112: a new loader each epoch
    watch = Watch()
    trainer = fast_trainer(tmp_path, max_epochs=13, limit_train_batches=2, callbacks=[stages, watch])
    trainer.fit(tiny_module(), tiny_datamodule(num_workers=2, batch_size=16, persistent_workers=True))
    # 2 train workers of the current stage and 2 of the (cached) val loader, in every epoch
    assert [workers for _, workers in watch.epochs] == [4] * 13
    first, last = watch.epochs[0][0], watch.epochs[-1][0]
    assert last <= 1.10 * first, (first, last)


def test_a_restored_datamodule_resumes_its_first_train_loader_at_the_checkpoints_batch():
    # What a checkpoint written after 3 batches of epoch 0 holds, and a fresh run restored from it.
    data = tiny_datamodule(image_size=32)
    data.setup("fit")
    whole = [labels for _, labels in data.train_dataloader()]
    batches = iter(data.train_dataloader())
    for _ in range(3):
        next(batches)
    state = data.state_dict()
    assert state["train_loader"] == {"epoch": 0, "batches": 3}
    restored = tiny_datamodule(image_size=32)
    restored.load_state_dict(state)
    restored.setup("fit")
    resumed = [labels for _, labels in restored.train_dataloader()]
    assert len(resumed) == len(whole) - 3 and all(torch.equal(a, b) for a, b in zip(resumed, whole[3:]))
    assert len(list(restored.train_dataloader())) == len(whole)  # the position is used once


def _epoch_batches(datamodule: ImageDataModule, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The train loader's batches of `epoch`, asked for as Lightning asks: at the trainer's current epoch."""
    datamodule.trainer = SimpleNamespace(current_epoch=epoch, world_size=1, global_rank=0, lightning_module=None)
    return list(datamodule.train_dataloader())


def _as_set(batches) -> list[tuple[bytes, int]]:
    return sorted(
        (image.numpy().tobytes(), int(label)) for images, labels in batches for image, label in zip(images, labels)
    )


def test_each_epoch_the_train_loader_reshuffles_and_redraws_and_keeps_the_images_sizes_and_labels():
    # 64 of the digits in 4 batches of 16: each epoch holds every one of them once.
    fixed = dict(train_subset=64, batch_size=16, image_size=24, seed=5, pin_memory=False)
    plain = tiny_datamodule(**fixed, train_crop="whole")  # no random draw at all: the images as they are
    plain.setup("fit")
    epochs = [_epoch_batches(plain, epoch) for epoch in range(3)]
    assert [len(batches) for batches in epochs] == [4, 4, 4]
    assert all(images.shape == (16, 3, 24, 24) and images.dtype == torch.uint8 for images, _ in epochs[0])
    assert _as_set(epochs[0]) == _as_set(epochs[1]) == _as_set(epochs[2])  # the same images with the same labels
    orders = [torch.cat([labels for _, labels in batches]) for batches in epochs]
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])  # in another order

    augmented = tiny_datamodule(**fixed, randaug_magnitude=9.0)
    augmented.setup("fit")
    first, second = _epoch_batches(augmented, 0), _epoch_batches(augmented, 1)
    # The order is the sampler's alone: augmentation does not change which image comes when.
    assert torch.equal(torch.cat([labels for _, labels in first]), orders[0])
    assert torch.equal(torch.cat([labels for _, labels in second]), orders[1])

    # New draws each epoch: the same scan (known by its plain image at the same place) comes out otherwise.
    def by_scan(plain_batches, batches):
        scans = [image.numpy().tobytes() for images, _ in plain_batches for image in images]
        return dict(zip(scans, [image for images, _ in batches for image in images]))

    epoch0, epoch1 = by_scan(epochs[0], first), by_scan(epochs[1], second)
    assert len(epoch0) == len(epoch1) == 64 and epoch0.keys() == epoch1.keys()
    # Measured: 8 of 64 alike, crops of a scan's black border (black whatever is drawn); the same draws: 64.
    assert sum(torch.equal(epoch0[scan], epoch1[scan]) for scan in epoch0) <= 12
    # And an epoch is the same whenever it is asked for: a new datamodule, the same seed, epoch 0 again.
    again = tiny_datamodule(**fixed, randaug_magnitude=9.0)
    again.setup("fit")
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(_epoch_batches(again, 0), first))
    assert augmented.train_loader_builds == 1  # one loader for all epochs of one stage


def test_the_eval_loaders_keep_their_own_batch_size_order_size_and_no_augmentation():
    # Train settings that must not reach evaluation: batch size, image size, RandAugment, flips, random crops.
    train = dict(batch_size=32, image_size=24, randaug_magnitude=9.0, hflip=True, crop_scale=(0.08, 0.1), seed=5)
    datamodule = tiny_datamodule(**train, eval_batch_size=50, eval_size=40, crop_pct=1.0, pin_memory=False)
    datamodule.setup("fit")
    val = list(datamodule.val_dataloader())
    assert [len(labels) for _, labels in val] == [50] * 7 + [10]  # all 360 images, the last batch short
    assert all(images.shape[1:] == (3, 40, 40) and images.dtype == torch.uint8 for images, _ in val)
    split = datamodule.splits.val
    assert torch.cat([labels for _, labels in val]).tolist() == [split[i][1] for i in range(len(split))]  # in order
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(val, datamodule.val_dataloader()))  # no draws
    plain = tiny_datamodule(eval_size=40, crop_pct=1.0, pin_memory=False, eval_batch_size=50)
    plain.setup("fit")
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(val, plain.val_dataloader()))
    # The whole 8x8 scan resized to 40 px (crop_pct 1.0): nothing is cropped away.
    whole = cv2.resize(np.asarray(split[0][0]), (40, 40), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(val[0][0][0].permute(1, 2, 0).numpy(), whole)
    assert [len(labels) for _, labels in tiny_datamodule(batch_size=100, eval_size=40).test_dataloader()] == [
        100, 100, 100, 60,
    ]  # without eval_batch_size, the train batch size  # fmt: skip


def test_the_predict_loader_reads_files_and_folders_in_order_at_the_eval_size_labelled_by_index(tmp_path):
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    shapes = {"b.png": (30, 50), "a.JPG": (20, 20), "nested/c.jpeg": (40, 10)}
    for name, (h, w) in shapes.items():
        Image.fromarray(np.full((h, w, 3), len(name), np.uint8)).save(photos / name, format="PNG")
    (photos / "notes.txt").write_text("not an image")
    single = tmp_path / "single.bmp"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(single)
    datamodule = tiny_datamodule(predict_files=[str(single), str(photos)], eval_size=16, eval_batch_size=3)
    datamodule.setup("predict")
    assert datamodule.predict_paths() == [single, photos / "a.JPG", photos / "b.png", photos / "nested/c.jpeg"]
    batches = list(datamodule.predict_dataloader())
    assert [labels.tolist() for _, labels in batches] == [[0, 1, 2], [3]]
    assert all(images.shape[1:] == (3, 16, 16) for images, _ in batches)
    assert int(batches[0][0][2].float().mean()) == len("b.png")  # each file's own pixels


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["missing.jpg"], "data.predict_files: no such file or folder missing.jpg"),
        (["empty"], "data.predict_files: no images in ['empty']"),
        ([], "data.predict_files: no images in []"),
    ],
)
def test_predict_files_that_name_no_image_are_refused_in_one_line(tmp_path, monkeypatch, entries, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("")
    with pytest.raises(DataError) as error:
        tiny_datamodule(predict_files=entries).setup("predict")
    assert str(error.value) == message


def test_the_state_holds_the_classes_and_the_train_loaders_place_and_a_resume_starts_there():
    assert tiny_datamodule().state_dict() == {}  # nothing set up: nothing to say
    datamodule = tiny_datamodule(batch_size=32, seed=1, image_size=16)
    datamodule.setup("fit")
    batches = iter(datamodule.train_dataloader())
    next(batches), next(batches)
    state = datamodule.state_dict()
    assert state == {"classes": [str(d) for d in range(10)], "train_loader": {"epoch": 0, "batches": 2}}
    resumed = tiny_datamodule(batch_size=32, seed=1, image_size=16)
    resumed.load_state_dict(state)
    resumed.setup("fit")
    assert torch.equal(next(iter(resumed.train_dataloader()))[0], next(batches)[0])  # the third batch


def test_a_resume_on_data_with_other_classes_is_refused_naming_the_root_and_the_first_difference():
    checkpoint = {"classes": ["0", "1", "2", "3", "4", "5", "6", "7", "9", "8"]}
    with pytest.raises(DataError) as error:
        tiny_datamodule(root="data/x").load_state_dict(checkpoint)
    assert str(error.value) == (
        "data.root data/x holds other classes than the checkpoint expects: class 8 is '8', the checkpoint has '9' "
        "(10 classes against 10)"
    )
    tiny_datamodule().load_state_dict({"classes": [str(d) for d in range(10)]})  # the same: accepted
    tiny_datamodule().load_state_dict({"train_loader": {"epoch": 0, "batches": 1}})  # none saved: nothing to check


def test_image_size_eval_trains_at_the_eval_size_and_no_size_without_a_network_is_refused():
    datamodule = tiny_datamodule(image_size="eval", eval_size=40)
    datamodule.setup("fit")
    assert next(iter(datamodule.train_dataloader()))[0].shape[-2:] == (40, 40)
    unsized = tiny_datamodule(image_size=None)
    unsized.setup("fit")
    with pytest.raises(ConfigError) as error:
        unsized.train_dataloader()
    assert str(error.value) == "data.image_size is not set and the network does not say its train size"


def test_a_followed_plan_sets_the_train_loaders_size_and_magnitude_per_epoch():
    class TwoStages:
        def stages_at(self, epoch):
            return ((16, 3.0),) if epoch == 0 else ((None, None),)

        def stage_of_batch(self, epoch, batch, batches):
            return 0

    datamodule = tiny_datamodule(image_size=24, randaug_magnitude=7.0)
    datamodule.follow(TwoStages(), knobs=())
    assert datamodule.train_stages(0) == ((16, 3.0),) and datamodule.train_stages(1) == ((24, 7.0),)


class _Unreadable(torch.utils.data.Dataset):
    """Five images labelled 0-4, of which those at `bad` cannot be read."""

    def __init__(self, bad):
        self.bad = set(bad)

    def __len__(self):
        return 5

    def __getitem__(self, index):
        if index in self.bad:
            raise CorruptImageError(f"img{index}.jpg: cannot decode image")
        return np.full((4, 4, 3), index, np.uint8), index


def test_skipping_corrupt_images_takes_the_next_readable_one_counting_each_and_stops_when_none_is_left():
    as_tensor = A.Compose([ToTensorV2()])
    skipping = AugmentedDataset(_Unreadable(bad={2, 3}), [as_tensor], skip_corrupt=True)
    with pytest.warns(UserWarning) as warned:
        image, label = skipping[2]
    assert label == 4 and int(image.max()) == 4
    assert [str(w.message) for w in warned] == [
        "skipped corrupt image (1 in this process): img2.jpg: cannot decode image",
        "skipped corrupt image (2 in this process): img3.jpg: cannot decode image",
    ]
    assert skipping[4][1] == 4 and skipping[0][1] == 0
    nothing = AugmentedDataset(_Unreadable(bad=range(5)), [as_tensor], skip_corrupt=True)
    with pytest.warns(UserWarning), pytest.raises(CorruptImageError) as error:
        nothing[1]
    assert str(error.value) == "no readable image among the 5 of this split"


def test_a_shard_set_trains_and_evaluates_with_the_folder_paths_settings(tmp_path):
    write_shard_set(tmp_path / "shards")
    common = dict(batch_size=4, eval_batch_size=5, image_size=24, eval_size=20, crop_pct=1.0, num_workers=0, seed=2)
    shards = ImageDataModule("shards", root=str(tmp_path / "shards"), cache_dir=str(tmp_path / "cache"), **common)
    folder = ImageDataModule("imagefolder", root=str(tmp_path / "shards-source"), **common)
    for datamodule in (shards, folder):
        datamodule.setup("fit")
    streamed, read = list(shards.val_dataloader()), list(folder.val_dataloader())
    expected = [labels.tolist() for _, labels in read]
    assert [labels.tolist() for _, labels in streamed] == expected == [[0, 0, 1, 1, 2], [2]]
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(streamed, read))  # the same pixels at the eval size
    train = list(shards.train_dataloader())
    assert [len(labels) for _, labels in train] == [4, 4, 4] and all(x.shape[1:] == (3, 24, 24) for x, _ in train)
    assert sorted(torch.cat([labels for _, labels in train]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4

    class RandomResize:
        def stages_at(self, epoch):
            return ((16, None), (24, None))

        def stage_of_batch(self, epoch, batch, batches):
            return batch % 2

    staged = ImageDataModule("shards", root=str(tmp_path / "shards"), cache_dir=str(tmp_path / "cache2"), **common)
    staged.setup("fit")
    staged.follow(RandomResize(), knobs=())  # a driver follows after the data's setup
    with pytest.raises(ConfigError) as error:
        staged.train_dataloader()
    assert str(error.value) == "progressive.mode random_resize: not with data.name shards (one stage per loader)"
