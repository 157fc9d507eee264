"""Shard sets (lit_effnet/data/shards.py): `train.py shard`, training from them as from folders, resume, bad input."""

import collections
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import sklearn.datasets
import torch
from lightning.pytorch import Callback
from litdata import StreamingDataset
from PIL import Image
from torch.utils.data import default_collate

from lit_effnet.callbacks import ProgressiveLearning
from lit_effnet.callbacks.checkpoint import LastCheckpoint
from lit_effnet.cli import PROJECT_ROOT, main
from lit_effnet.data import ImageDataModule, shards
from lit_effnet.data.datasets import Splits, load_digits_splits, load_splits
from lit_effnet.data.transforms import train_transform
from lit_effnet.errors import ConfigError, CorruptImageError, DataError, DatasetNotFoundError
from tests.conftest import child_env, fast_trainer, tiny_datamodule, tiny_module
from tests.data.fixtures import write_imagefolder

PHOTOS = sorted((Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))  # china, flower: 640x427


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """An ImageFolder of real photos (2 classes x 4 JPEGs of 500x375, quality 90; val: 2 per class): JPEGs big
    enough that the train crop decodes many of them at reduced scale."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for photo in PHOTOS:
        rgb = np.asarray(Image.open(photo).convert("RGB"))
        for i in range(4):
            top, left = rng.integers(0, 40), rng.integers(0, 80)
            image = cv2.resize(np.ascontiguousarray(rgb[top : top + 380, left : left + 507]), (500, 375))
            for split in ("train", "val")[: 1 + (i < 2)]:
                (root / split / photo.stem).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / split / photo.stem / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def photo_shards(photo_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("photo_shards") / "set"
    shards.write_shards("imagefolder", str(photo_folder), str(out), chunk_bytes=100_000, log=lambda line: None)
    return out


@pytest.fixture(scope="module")
def digit_shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digit_shards") / "set"
    shards.write_shards("digits", "data", str(out), chunk_bytes=20_000, log=lambda line: None)
    return out


def config_file(folder: Path, root: Path, name: str = "imagefolder") -> str:
    path = folder / f"{name}-{root.name}.yaml"
    path.write_text(f"data:\n  name: {name}\n  root: {root}\n")
    return str(path)


def records(split_folder: Path) -> list[dict]:
    stream = StreamingDataset(str(split_folder))
    return [stream[i] for i in range(len(stream))]


def photo_datamodule(name: str, root: Path, **kwargs) -> ImageDataModule:
    defaults = dict(batch_size=4, image_size=64, num_workers=0, randaug_magnitude=9.0, seed=3, crop_scale=(0.08, 1.0))
    return ImageDataModule(name, root=str(root), **{**defaults, **kwargs})


def epoch_samples(loader, epoch: int) -> list[tuple[int, bytes]]:
    """(label, augmented pixels) of every sample of one epoch, sorted: the epoch as a multiset."""
    set_epoch = getattr(loader, "set_epoch", None) or loader.sampler.set_epoch
    set_epoch(epoch)
    samples = [
        (int(label), image.numpy().tobytes()) for images, labels in loader for image, label in zip(images, labels)
    ]
    return sorted(samples)


# ------------------------------------------------------------------ writing


def test_shard_command_writes_every_split_with_the_files_bytes_labels_and_class_names(tmp_path, capsys):
    write_imagefolder(tmp_path / "folder", classes=("cat", "dog", "eel"), per_class=3)
    out = tmp_path / "set"
    assert main(["shard", "--config", config_file(tmp_path, tmp_path / "folder"), "--out", str(out)]) == 0
    assert f"complete, 3 classes; train with --data.name shards --data.root {out}" in capsys.readouterr().out
    manifest = json.loads((out / shards.MANIFEST).read_text())
    assert manifest["classes"] == ["cat", "dog", "eel"] and manifest["sizes"] == {"train": 9, "val": 6}
    assert manifest["split_folders"] == {"train": "train", "val": "val", "test": "val"} and not (out / "test").exists()
    assert not (out / shards.PARTIAL).exists()
    for split, per_class in (("train", 3), ("val", 2)):
        files = [(tmp_path / "folder" / split / c / f"{i}.jpg", label) for label, c in enumerate(("cat", "dog", "eel"))
                 for i in range(per_class)]  # fmt: skip
        written = records(out / split)
        assert [r["index"] for r in written] == list(range(len(files)))
        assert [r["label"] for r in written] == [label for _, label in files]
        assert [bytes(r["image"]) for r in written] == [path.read_bytes() for path, _ in files]  # not re-encoded
        assert [r["path"] for r in written] == [f"{split}/{p.parent.name}/{p.name}" for p, _ in files]


def test_in_memory_datasets_are_sharded_as_their_uint8_arrays(digit_shards):
    digits = load_digits_splits()
    train = records(digit_shards / "train")
    assert len(train) == len(digits.train) == 1437 and len(records(digit_shards / "val")) == 360
    for record in train[::97]:
        image, label = digits.train[record["index"]]
        assert record["image"].dtype == np.uint8 and np.array_equal(record["image"], image) and record["label"] == label
    assert shards.ShardSet.open(digit_shards).classes == [str(d) for d in range(10)]


def interrupt_after(monkeypatch, items: int) -> None:
    """The conversion is killed (KeyboardInterrupt) after `items` samples have gone to the writers."""
    from litdata.streaming.writer import BinaryWriter

    original, count = BinaryWriter.add_item, [0]

    def add_item(self, index, item):
        count[0] += 1
        if count[0] > items:
            raise KeyboardInterrupt
        return original(self, index, item)

    monkeypatch.setattr(BinaryWriter, "add_item", add_item)


def test_an_interrupted_conversion_is_no_shard_set_and_a_rerun_finishes_or_starts_over_saying_which(
    tmp_path, monkeypatch, capsys
):
    write_imagefolder(tmp_path / "folder", per_class=4)
    write_imagefolder(tmp_path / "other", classes=("ant", "bee", "cow"), per_class=4)
    out, config = tmp_path / "set", config_file(tmp_path, tmp_path / "folder")
    with monkeypatch.context() as patch:
        interrupt_after(patch, 12 + 3)  # all 12 train images, then 3 of the 6 val images
        with pytest.raises(KeyboardInterrupt):
            main(["shard", "--config", config, "--out", str(out)])
    assert (out / "train" / "index.json").is_file() and not (out / "val" / "index.json").exists()
    with pytest.raises(DatasetNotFoundError, match=rf"{out} holds only an interrupted conversion"):
        _ = ImageDataModule("shards", root=str(out)).num_classes
    assert main(["--config", "quickstart", "--data.name", "shards", "--data.root", str(out)]) == 2
    assert f"error: shards: {out} holds only an interrupted conversion" in capsys.readouterr().err

    assert main(["shard", "--config", config, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "finishing the interrupted conversion" in said and "train: complete (12 images), kept" in said
    assert "val: 6 images written" in said and len(records(out / "val")) == 6
    assert ImageDataModule("shards", root=str(out)).classes == ["cat", "dog", "eel"]
    assert main(["shard", "--config", config, "--out", str(out)]) == 0
    assert "already holds this shard set, complete: nothing to do" in capsys.readouterr().out

    other = config_file(tmp_path, tmp_path / "other")
    assert main(["shard", "--config", other, "--out", str(out)]) == 2  # a complete set is not overwritten
    assert "already holds a complete shard set of another source" in capsys.readouterr().err
    out2 = tmp_path / "set2"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 5)
        with pytest.raises(KeyboardInterrupt):
            main(["shard", "--config", config, "--out", str(out2)])
    assert main(["shard", "--config", other, "--out", str(out2)]) == 0
    assert "starting over: " in capsys.readouterr().out
    assert ImageDataModule("shards", root=str(out2)).classes == ["ant", "bee", "cow"]
    assert [r["label"] for r in records(out2 / "train")] == [0] * 4 + [1] * 4 + [2] * 4

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["shard", "--config", config, "--out", str(tmp_path / "mine")]) == 2
    assert "is not empty and holds no shard set" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------ training from shards as from folders


@pytest.mark.parametrize("workers", [2, 0])  # 0: the samples are made in this process (where mutmut sees them)
def test_shard_epochs_hold_the_folder_epochs_samples_pixel_for_pixel_in_another_order(
    photo_folder, photo_shards, workers
):
    """Each epoch from shards holds the same (label, augmented image) samples as from the folder: the same bytes
    through the same transform with the same draws, reduced-scale decodes and RandAugment included."""
    folder = photo_datamodule("imagefolder", photo_folder)
    streamed = photo_datamodule("shards", photo_shards, num_workers=workers)
    for datamodule in (folder, streamed):
        datamodule.setup("fit")
    folder_loader, shard_loader = folder.train_dataloader(), streamed.train_dataloader()
    assert len(shard_loader) == len(folder_loader) == 2
    epochs = []
    for epoch in (0, 1):
        expected = epoch_samples(folder_loader, epoch)
        assert len(expected) == 8 and epoch_samples(shard_loader, epoch) == expected
        epochs.append(expected)
    assert epochs[0] != epochs[1]  # new draws each epoch
    images, _ = next(iter(shard_loader))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.uint8
    streamed.hparams.image_size = 48  # a stage change: a new loader at the new size
    loader = streamed.train_dataloader()
    assert loader is not shard_loader and streamed.train_loader_builds == 2
    assert next(iter(loader))[0].shape == (4, 3, 48, 48)


def test_eval_splits_stream_in_order_at_the_eval_size_as_from_the_folder(photo_folder, photo_shards):
    loaders = []
    for name, root in (("imagefolder", photo_folder), ("shards", photo_shards)):
        datamodule = photo_datamodule(name, root, eval_size=72, crop_pct=0.875, eval_batch_size=3)
        datamodule.setup("fit")
        loaders.append((datamodule.val_dataloader(), datamodule.test_dataloader()))
    for folder_loader, shard_loader in zip(*loaders):
        folder_batches, shard_batches = list(folder_loader), list(shard_loader)
        assert [len(labels) for _, labels in shard_batches] == [3, 1]
        for (images, labels), (expected_images, expected_labels) in zip(shard_batches, folder_batches, strict=True):
            assert images.shape[1:] == (3, 72, 72) and torch.equal(images, expected_images)
            assert torch.equal(labels, expected_labels)


@pytest.fixture
def sigterm_reaches_lightning_alone():
    """A test's own SIGTERM must stop only the Trainer (as in tests/test_reliability.py)."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


class Batches(Callback):
    """Every training batch as the step sees it: (epoch, batch index, labels, images)."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images, labels = batch
        self.seen.append((trainer.current_epoch, batch_idx, labels.tolist(), images.clone()))


class SigtermAt(Batches):
    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.at = (epoch, batch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_resume_in_the_middle_of_an_epoch_continues_the_same_stream(
    tmp_path, digit_shards, sigterm_reaches_lightning_alone
):
    """SIGTERM after batch 2 of epoch 0 (last.ckpt holds litdata's position), then a resume: the batches after it,
    through the rest of epoch 0 and all of epoch 1 (the same loader going on), equal those of the uninterrupted run."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    def fit(*callbacks, ckpt_path=None):
        trainer = fast_trainer(
            tmp_path, max_epochs=2, limit_train_batches=5, limit_val_batches=0,
            enable_checkpointing=any(isinstance(c, LastCheckpoint) for c in callbacks),
            callbacks=list(callbacks),
        )  # fmt: skip
        datamodule = tiny_datamodule(
            name="shards", root=str(digit_shards), batch_size=8, num_workers=2, image_size=16, randaug_magnitude=4.0
        )
        trainer.fit(tiny_module(), datamodule, ckpt_path=ckpt_path)

    whole = Batches()
    fit(whole)
    stop = SigtermAt(epoch=0, batch=2)
    with pytest.raises(SIGTERMException):
        fit(stop, LastCheckpoint(str(tmp_path / "ckpt")))
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert (saved["epoch"], saved["global_step"]) == (0, 3)
    resumed = Batches()
    fit(resumed, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    after = [b for b in whole.seen if b[:2] > (0, 2)]
    assert [b[:3] for b in resumed.seen] == [b[:3] for b in after] and len(after) == 2 + 5
    assert all(torch.equal(mine[3], theirs[3]) for mine, theirs in zip(resumed.seen, after))
    assert [b[:3] for b in stop.seen] == [b[:3] for b in whole.seen[:3]]  # the same stream up to the stop
    assert whole.seen[0][2] != whole.seen[5][2]  # epoch 1 is another draw, not a replay of epoch 0


def test_a_checkpoint_resumed_on_a_shard_set_of_other_classes_stops_naming_it(tmp_path):
    """Same class count (the weights fit), other class names: the datamodule's state in the checkpoint says so."""
    for name, classes in (("a", ("cat", "dog", "eel")), ("b", ("ant", "bee", "cow"))):
        write_imagefolder(tmp_path / name, classes=classes, per_class=4)
        shards.write_shards("imagefolder", str(tmp_path / name), str(tmp_path / f"{name}-set"), log=lambda line: None)

    def datamodule(name):
        return tiny_datamodule(name="shards", root=str(tmp_path / f"{name}-set"), batch_size=4, image_size=24)

    trainer = fast_trainer(tmp_path, max_epochs=1)
    trainer.fit(tiny_module(num_classes=3), datamodule("a"))
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    state = torch.load(tmp_path / "a.ckpt", weights_only=False)["ImageDataModule"]
    assert state["classes"] == ["cat", "dog", "eel"] and state["train_loader"]["current_epoch"] == 1
    with pytest.raises(DataError, match=r"b-set holds other classes than the checkpoint expects: class 0 is 'ant'"):
        fast_trainer(tmp_path, max_epochs=2).fit(
            tiny_module(num_classes=3), datamodule("b"), ckpt_path=tmp_path / "a.ckpt"
        )


# ------------------------------------------------------------------ bad input


def test_a_corrupt_image_in_a_shard_is_named_or_skipped_for_the_next_one(tmp_path):
    write_imagefolder(tmp_path / "folder", per_class=2)
    (tmp_path / "folder" / "train" / "dog" / "1.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    shards.write_shards("imagefolder", str(tmp_path / "folder"), str(tmp_path / "set"), log=lambda line: None)
    url, transform = str(tmp_path / "set" / "train"), train_transform(24)
    with pytest.raises(CorruptImageError, match=r"set/train#3 \(train/dog/1\.jpg\): cannot"):
        shards.ShardStream(url, transform, size=6)[3]
    skipping = shards.ShardStream(url, transform, size=6, skip_corrupt=True)
    with pytest.warns(UserWarning, match=r"skipped corrupt image \(1 in this process\): .*train/dog/1\.jpg"):
        image, label = skipping[3]
    assert image.shape == (3, 24, 24) and label == 2  # the next image of the split: train/eel/0.jpg


@pytest.mark.parametrize(
    ("extra", "culprit"),
    [
        (["--data.root", "{empty}"], "shards: {empty} holds no shard set (lit_effnet_shards.json missing)"),
        (
            ["--data.root", "{digits}", "--data.classes", "12"],
            "data.root {digits} holds 10 classes, data.classes expects 12",
        ),
        (
            ["--data.root", "{digits}", "--data.classes", '["0","1","2","3","4","5","6","7","9","8"]'],
            "data.root {digits} holds other classes than data.classes expects: class 8 is '8', data.classes has '9'",
        ),
        (["--data.root", "{digits}", "--data.train_subset", "10"], "data.train_subset: not with data.name shards"),
        (
            ["--data.root", "{digits}", "--progressive.mode", "random_resize"],
            "progressive.mode random_resize: not with data.name shards",
        ),
    ],
)
def test_bad_shard_input_is_one_line_naming_it_and_exit_2(tmp_path, digit_shards, capsys, extra, culprit):
    (tmp_path / "empty").mkdir()
    paths = {"empty": tmp_path / "empty", "digits": digit_shards}
    argv = ["--config", "quickstart", "--data.name", "shards", "--trainer.max_epochs", "1",
            "--trainer.default_root_dir", str(tmp_path), *(arg.format(**paths) for arg in extra)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    assert err[-1].startswith("error: " + culprit.format(**paths))


def test_the_shard_command_refuses_a_config_that_already_trains_from_shards(tmp_path, capsys):
    assert main(["shard", "--config", "quickstart", "--data.name", "shards", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: data.name shards: this config already trains from shards; shard its source dataset"
    )
    shutil.rmtree(tmp_path / "x", ignore_errors=True)


# ------------------------------------------------------------------ two processes, and object storage


@pytest.mark.slow  # two train.py processes: ~30-50 s on 2 cores, and the default suite is at its 10-minute budget
def test_two_ddp_processes_stream_disjoint_halves_of_each_epoch_with_as_many_batches(tmp_path):
    """train.py over 2 CPU processes (gloo) from a shard set whose 18 training images each have their own class,
    so a batch's labels say which images it holds: per epoch the ranks' images are disjoint, cover all but the
    dropped remainder (18 = 2 ranks x 2 batches x 4 + 2), and each rank trains on the same number of batches."""
    classes = tuple(f"c{i:02d}" for i in range(18))
    write_imagefolder(tmp_path / "folder", classes=classes, per_class=1)
    shards.write_shards("imagefolder", str(tmp_path / "folder"), str(tmp_path / "set"), log=lambda line: None)
    probe = json.dumps({"class_path": "tests.data.shard_probe.LabelProbe", "init_args": {"out": str(tmp_path / "p")}})
    argv = [
        sys.executable, str(PROJECT_ROOT / "train.py"), "--config", "quickstart", "--accelerator", "cpu",
        "--devices", "2", "--data.name", "shards", "--data.root", str(tmp_path / "set"), "--data.batch_size", "4",
        "--data.num_workers", "1", "--trainer.max_epochs", "2", "--progressive.num_stages", "2",
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", f"--trainer.callbacks+={probe}",
    ]  # fmt: skip
    env = child_env(PYTHONPATH=str(PROJECT_ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "p" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    for epoch0, epoch1 in zip(*ranks):
        assert len(epoch0) == len(epoch1) == 2 and all(len(batch) == 4 for batch in epoch0 + epoch1)
        first, second = [label for batch in epoch0 for label in batch], [label for batch in epoch1 for label in batch]
        assert len(set(first)) == len(set(second)) == 8 and not set(first) & set(second)
    assert ranks[0][0] != ranks[0][1]  # reshuffled per epoch


@pytest.fixture
def s3_server(monkeypatch, tmp_path):
    """moto's S3 server on 127.0.0.1 (a free port), reached as users reach theirs: endpoint and credentials in the
    environment; no instance metadata, no real AWS. Yields the GET requests it served, by path."""
    from moto.moto_server import werkzeug_app
    from moto.server import ThreadedMotoServer

    served = collections.Counter()
    app_call = werkzeug_app.DomainDispatcherApplication.__call__

    def counting(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "GET":
            served[environ["PATH_INFO"]] += 1
        return app_call(self, environ, start_response)

    monkeypatch.setattr(werkzeug_app.DomainDispatcherApplication, "__call__", counting)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-creds"),
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3").create_bucket(Bucket="lake")
    yield served
    server.stop()


def test_a_run_streams_from_an_s3_compatible_server_writing_only_to_its_cache_folder(
    tmp_path, s3_server, digit_shards, monkeypatch
):
    """The shard command uploads to s3://, staging each split in a temporary folder it removes; a 2-stage run
    streams from it: each chunk is fetched once, the stage change rebuilds the loader without fetching again, and
    the run writes nothing outside data.cache_dir."""
    home, temp, cache = tmp_path / "home", tmp_path / "tmp", tmp_path / "cache"
    for folder in (home, temp):
        folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert main(["shard", "--config", "quickstart", "--out", "s3://lake/sets/digits", "--chunk_bytes", "20000"]) == 0
    assert list(temp.iterdir()) == []
    held = sorted(k["Key"] for k in boto3_objects("lake"))
    local = sorted(str(p.relative_to(digit_shards)) for p in digit_shards.rglob("*") if p.is_file())
    assert [k.removeprefix("sets/digits/") for k in held] == local  # the same files as a local shard set
    s3_server.clear()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLCONFIGDIR", str(temp / "mpl"))
    stages = dict(num_stages=2, image_size=(16, 24), dropout=(0.0, 0.0), randaug_magnitude=(0.0, 2.0), mixup_alpha=None)
    datamodule = tiny_datamodule(name="shards", root="s3://lake/sets/digits", cache_dir=str(cache), batch_size=16)
    trainer = fast_trainer(
        tmp_path / "run", max_epochs=2, limit_train_batches=3, callbacks=[ProgressiveLearning(**stages)]
    )
    trainer.fit(tiny_module(), datamodule)
    assert datamodule.train_loader_builds == 2 and trainer.global_step == 6
    chunks = {path: n for path, n in s3_server.items() if "/chunk-" in path}
    assert set(chunks) == {f"/lake/sets/digits/{p}" for p in local if "/chunk-" in p}  # every chunk of both splits
    assert set(chunks.values()) == {1}  # once each, across the stage change
    assert list(home.rglob("*")) == [] and [p for p in temp.rglob("*") if "mpl" not in p.parts] == []
    assert any(p.name.startswith("chunk-") for p in cache.rglob("*"))


def boto3_objects(bucket: str) -> list[dict]:
    import boto3

    return boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])


@pytest.fixture
def closed_endpoint(monkeypatch):
    """S3 at the discard port of this machine, where nothing listens; credentials that reach nothing else."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)


def test_an_unreachable_endpoint_is_one_line_naming_it_and_exit_2(tmp_path, closed_endpoint, capsys):
    argv = ["--config", "quickstart", "--data.name", "shards", "--data.root", "s3://lake/sets/digits",
            "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    assert err[-1].startswith(
        "error: s3://lake/sets/digits: reading lit_effnet_shards.json failed at http://127.0.0.1:9"
    )


def test_an_s3_store_reads_writes_lists_and_deletes_under_its_own_prefix_only(s3_server):
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="pond")  # its own bucket: moto's objects outlive a test in the same process
    client.put_object(Bucket="pond", Key="sets/xy/other", Body=b"a sibling prefix")
    store = shards.store_of("s3://pond/sets/x/")
    assert (
        isinstance(store, shards.S3Store) and store.join("train", "index.json") == "s3://pond/sets/x/train/index.json"
    )
    assert store.is_empty() and store.read_text("m.json") is None and store.local_folder("train") is None
    store.write_text("m.json", '{"a": 1}')
    store.write_text("train/index.json", "[]")
    store.write_text("train/chunk-0.bin", "x")
    assert not store.is_empty() and store.read_text("m.json") == '{"a": 1}'
    store.delete("train")
    assert sorted(k["Key"] for k in boto3_objects("pond")) == ["sets/x/m.json", "sets/xy/other"]
    store.delete("m.json")
    assert store.is_empty() and not shards.store_of("s3://pond").is_empty()  # the bucket's root: everything


def test_each_s3_operation_that_fails_names_the_store_the_operation_and_the_endpoint(tmp_path, closed_endpoint):
    store, local = shards.store_of("s3://lake/sets/x"), tmp_path / "chunk.bin"
    local.write_bytes(b"x")
    operations = [
        (lambda: store.write_text("m.json", "{}"), "writing m.json"),
        (lambda: store.read_text("m.json"), "reading m.json"),
        (lambda: store.is_empty(), "listing sets/x/"),
        (lambda: store.delete("train"), "listing sets/x/train/"),
        (lambda: store.upload(str(local), "train/chunk.bin"), "uploading train/chunk.bin"),
        (lambda: shards.store_of("s3://lake").is_empty(), "listing /"),
    ]
    for operation, what in operations:
        with pytest.raises(DataError) as error:
            operation()
        root = "s3://lake" if what == "listing /" else "s3://lake/sets/x"
        assert str(error.value).startswith(f"{root}: {what} failed at http://127.0.0.1:9 ("), str(error.value)


def test_a_local_store_writes_nested_files_whole_and_joins_paths(tmp_path):
    store = shards.store_of(tmp_path / "set")
    assert not isinstance(store, shards.S3Store) and store.is_empty()
    store.write_text("train/deeper/index.json", "[]")  # folders made as needed
    assert (tmp_path / "set/train/deeper/index.json").read_text() == "[]" and not store.is_empty()
    assert store.join("train", "index.json") == f"{tmp_path}/set/train/index.json"
    assert store.local_folder("val") == str(tmp_path / "set/val")


def test_the_shard_command_takes_data_name_and_root_from_the_config_chain_then_the_overrides(tmp_path):
    assert shards.config_data([]) == ("digits", "data")  # ImageDataModule's defaults
    assert shards.config_data(["--config", "transfer/cifar10", "-h"]) == ("cifar10", "data")  # -h is not ours
    own = tmp_path / "own.yaml"
    own.write_text("extends: transfer/cifar10\ndata:\n  root: /datasets\n")
    assert shards.config_data(["--config", str(own)]) == ("cifar10", "/datasets")
    assert shards.config_data(["--config", str(own), "--data.root", "/elsewhere", "--data.name", "cifar100"]) == (
        "cifar100", "/elsewhere",
    )  # fmt: skip


def test_the_shard_commands_help_names_it_and_says_what_each_option_does(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as done:
        shards.shard_command(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse's column layout aside
    assert done.value.code == 0 and out.startswith("usage: python train.py shard [-h] --config CONFIG --out OUT")
    for line in (
        "`train.py shard --config NAME --out DIR_OR_URL [--chunk_bytes 64MB] [--threads 8]`.",
        "--config CONFIG the config whose dataset (data.*) to shard",
        "--out OUT a new folder, or s3://bucket/prefix",
        "--chunk_bytes CHUNK_BYTES size of one chunk (litdata's default)",
        "--threads THREADS threads reading the image files",
        "--data.name NAME override the config's data.name",
        "--data.root ROOT override the config's data.root",
    ):
        assert line in out, line


def test_the_shard_commands_data_overrides_beat_the_config(tmp_path):
    write_imagefolder(tmp_path / "real", classes=("ant", "bee"), per_class=2)
    config = config_file(tmp_path, tmp_path / "nowhere", name="cifar10")  # another dataset, another root
    out = tmp_path / "set"
    argv = ["--config", config, "--data.name", "imagefolder", "--data.root", str(tmp_path / "real"), "--out", str(out)]
    assert shards.shard_command([*argv, "--chunk_bytes", "100000", "--threads", "1"]) == 0
    assert json.loads((out / shards.MANIFEST).read_text())["classes"] == ["ant", "bee"]


def test_corrupt_images_in_a_row_are_each_counted_and_a_split_with_none_readable_stops(tmp_path):
    write_imagefolder(tmp_path / "folder", per_class=2)
    for bad in ("dog/0.jpg", "dog/1.jpg"):
        (tmp_path / "folder" / "train" / bad).write_bytes(b"\xff\xd8\xff not a jpeg")
    shards.write_shards("imagefolder", str(tmp_path / "folder"), str(tmp_path / "set"), log=lambda line: None)
    url, transform = str(tmp_path / "set" / "train"), train_transform(24)
    skipping = shards.ShardStream(url, transform, size=6, skip_corrupt=True)
    with pytest.warns(UserWarning, match=r"skipped corrupt image \(1 in this process\): .*train/dog/0\.jpg"):
        _, label = skipping[2]
    assert label == 2 and skipping.skipped == 2  # dog/1.jpg skipped too, for eel/0.jpg
    with pytest.warns(UserWarning, match=r"skipped corrupt image \(3 in this process\): .*train/dog/0\.jpg"):
        skipping[2]
    assert skipping.skipped == 4  # counted over the process's reads, not per read
    for name in ("cat/0.jpg", "cat/1.jpg", "eel/0.jpg", "eel/1.jpg"):
        (tmp_path / "folder" / "train" / name).write_bytes(b"\xff\xd8\xff not a jpeg")
    shards.write_shards("imagefolder", str(tmp_path / "folder"), str(tmp_path / "all-bad"), log=lambda line: None)
    url = str(tmp_path / "all-bad" / "train")
    with pytest.warns(UserWarning), pytest.raises(CorruptImageError) as error:
        shards.ShardStream(url, transform, size=6, skip_corrupt=True)[0]
    assert str(error.value) == f"no readable image among the 6 of {url}"


def test_a_sample_record_holds_the_files_bytes_and_relative_path_or_the_arrays_uint8_pixels(tmp_path):
    image = tmp_path / "cls" / "a.jpg"
    image.parent.mkdir()
    image.write_bytes(b"\xff\xd8 bytes")
    encoded = shards.sample_record(4, shards.read_encoded(image), np.int64(2), str(tmp_path))
    assert encoded == {"index": 4, "label": 2, "path": "cls/a.jpg", "image": b"\xff\xd8 bytes"}
    array = shards.sample_record(5, np.arange(12, dtype=np.int64).reshape(2, 2, 3), 1, str(tmp_path))
    assert {k: v for k, v in array.items() if k != "image"} == {"index": 5, "label": 1, "path": ""}
    assert array["image"].dtype == np.uint8 and array["image"].tolist() == np.arange(12).reshape(2, 2, 3).tolist()


def test_only_file_and_array_splits_can_be_sharded_and_a_concatenation_reads_its_parts_files_undecoded(tmp_path):
    write_imagefolder(tmp_path)
    from torch.utils.data import ConcatDataset, TensorDataset
    from torchvision.datasets import ImageFolder

    parts = ConcatDataset([ImageFolder(str(tmp_path / "train")), ImageFolder(str(tmp_path / "val"))])
    samples = shards.split_samples(parts)
    assert all(isinstance(samples[i][0], shards.EncodedImage) for i in (0, len(samples) - 1))
    with pytest.raises(ConfigError) as error:
        shards.split_samples(TensorDataset(torch.zeros(2, 3)))
    assert str(error.value) == "cannot shard a TensorDataset split: it holds neither files nor arrays"


def test_a_manifest_names_the_source_and_its_fingerprint_follows_the_classes_and_the_files(tmp_path):
    write_imagefolder(tmp_path / "folder")
    splits = load_splits("imagefolder", tmp_path / "folder")
    plan = shards.plan_of("imagefolder", str(tmp_path / "folder"), splits)
    assert {k: v for k, v in plan.items() if k != "fingerprint"} == {
        "format": "lit-effnet shards 1", "dataset": "imagefolder", "source": str(tmp_path / "folder"),
        "classes": ["cat", "dog", "eel"], "sizes": {"train": 12, "val": 6},  # by folder: test is val
        "split_folders": {"train": "train", "val": "val", "test": "val"},
    }  # fmt: skip
    digits = load_digits_splits()
    embedded = shards.plan_of("digits", "anywhere", digits)
    assert embedded["source"].startswith("embedded") and embedded == shards.plan_of("digits", "elsewhere", digits)
    apart = dataclasses.replace(digits, test=digits.train)
    assert shards.plan_of("digits", "x", apart)["split_folders"]["test"] == "test"  # a test split of its own
    renamed = dataclasses.replace(splits, classes=["cat", "dog", "emu"])
    assert shards.plan_of("imagefolder", str(tmp_path / "folder"), renamed)["fingerprint"] != plan["fingerprint"]
    (tmp_path / "folder/train/eel/0.jpg").rename(tmp_path / "folder/train/eel/9.jpg")  # same counts, other files
    moved = load_splits("imagefolder", tmp_path / "folder")
    assert shards.plan_of("imagefolder", str(tmp_path / "folder"), moved)["fingerprint"] != plan["fingerprint"]


def test_the_shard_loaders_hand_every_setting_to_their_stream_and_their_loader(tmp_path):
    write_imagefolder(tmp_path / "folder", per_class=2)
    shards.write_shards("imagefolder", str(tmp_path / "folder"), str(tmp_path / "set"), log=lambda line: None)
    splits = shards.load_shard_splits(tmp_path / "set")
    settings = dict(skip_corrupt=True, num_workers=1, persistent_workers=True)
    train = shards.train_loader(
        splits.train, train_transform(24), seed=5, batch_size=2, cache_dir=str(tmp_path / "a"), pin_memory=True,
        **settings,
    )  # fmt: skip
    evaluation = shards.eval_loader(splits.val, None, batch_size=3, cache_dir=str(tmp_path / "b"), **settings)
    for loader, cache, is_train in ((train, "a", True), (evaluation, "b", False)):
        stream = loader.dataset
        assert (stream.size, stream.skip_corrupt, stream.cache_dir.path) == (6, True, str(tmp_path / cache))
        assert stream.shuffle is stream.drop_last is is_train  # train: shuffled, full batches, as many on each rank
        assert loader.num_workers == 1 and loader.persistent_workers is False  # fresh workers: each epoch's seeds
        assert loader.collate_fn.collate_fn is default_collate  # torch's, not litdata's own
    assert (train.dataset.seed, train.pin_memory, train.batch_size, evaluation.batch_size) == (5, True, 2, 3)
    train.set_epoch(3)  # a new loader resumes nothing: it serves the epoch it is given
    assert train.current_epoch == 3
    assert len(shards.train_loader(splits.train, None, seed=0, batch_size=6, cache_dir=None, skip_corrupt=False)) == 1
    with pytest.raises(ConfigError) as error:
        shards.train_loader(splits.train, None, seed=0, batch_size=7, cache_dir=None, skip_corrupt=False)
    assert str(error.value) == (
        f"data.batch_size 7 is larger than the 6 training images of {tmp_path / 'set'}/train per device"
    )


@pytest.fixture
def pools(monkeypatch) -> list[int | None]:
    """The thread count of each pool the conversion reads files with."""
    made = []

    class Recorded(shards.ThreadPoolExecutor):
        def __init__(self, max_workers=None, *args, **kwargs):
            made.append(max_workers)
            super().__init__(max_workers, *args, **kwargs)

    monkeypatch.setattr(shards, "ThreadPoolExecutor", Recorded)
    return made


def test_a_conversion_says_what_it_writes_and_writes_a_val_that_is_also_test_once(tmp_path, pools):
    write_imagefolder(tmp_path / "folder", per_class=2)
    out, said = tmp_path / "set", []
    written = shards.write_shards("imagefolder", str(tmp_path / "folder"), str(out), log=said.append)
    assert said == [
        f"shard: writing imagefolder ({tmp_path / 'folder'}) to {out}",
        "shard: train: 6 images written",
        "shard: val: 6 images written",  # the test split is val's: not written again
        f"shard: {out}: complete, 3 classes; train with --data.name shards --data.root {out}",
    ]
    assert pools == [8, 8]  # the default: 8 threads reading each split's files
    assert shards.write_shards("imagefolder", str(tmp_path / "folder"), str(out), log=said.append) == written
    assert said[-1] == f"shard: {out} already holds this shard set, complete: nothing to do"
    write_imagefolder(tmp_path / "other", classes=("ant", "bee"), per_class=2)
    with pytest.raises(DataError) as error:
        shards.write_shards("imagefolder", str(tmp_path / "other"), str(out), log=said.append)
    assert str(error.value) == (
        f"--out {out} already holds a complete shard set of another source (imagefolder): choose another --out, "
        "or delete it first"
    )


def test_the_threads_and_chunk_size_asked_for_reach_the_conversion(tmp_path, pools):
    write_imagefolder(tmp_path / "folder", per_class=2)
    config = config_file(tmp_path, tmp_path / "folder")
    assert shards.shard_command(["--config", config, "--out", str(tmp_path / "set"), "--threads", "3"]) == 0
    assert shards.shard_command(["--config", config, "--out", str(tmp_path / "small"), "--chunk_bytes", "2000"]) == 0
    assert pools == [3, 3, 8, 8]  # --threads, then its default
    index = json.loads((tmp_path / "small/train/index.json").read_text())
    assert len(index["chunks"]) > 1 and index["config"]["chunk_bytes"] == 2000
    assert len(json.loads((tmp_path / "set/train/index.json").read_text())["chunks"]) == 1  # litdata's 64 MB
    store = shards.store_of(tmp_path / "one")
    shards.write_split(store, "train", load_splits("imagefolder", tmp_path / "folder").train, "", threads=0)
    assert pools[-1] == 1  # at least one thread


def test_starting_over_removes_the_folders_of_the_other_sources_interrupted_conversion(tmp_path, capsys):
    write_imagefolder(tmp_path / "folder", per_class=2)
    out = tmp_path / "set"
    for folder in ("train", "test"):  # another source's conversion, killed: it had a test split of its own
        (out / folder).mkdir(parents=True)
        (out / folder / "chunk-0-0.bin").write_bytes(b"old")
    (out / shards.PARTIAL).write_text(json.dumps({"fingerprint": "another", "sizes": {"train": 5, "test": 2}}))
    shards.write_shards("imagefolder", str(tmp_path / "folder"), str(out))
    assert "shard: starting over: " in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [shards.MANIFEST, "train", "val"]  # its test folder is gone


class FileList(list):
    """A torchvision file dataset as plan_of sees it: its length and its private list of files."""

    def __init__(self, attr: str, files: list[tuple[str, int]]) -> None:
        super().__init__(files)
        setattr(self, attr, list(files))


@pytest.mark.parametrize(("name", "attr"), [("food101", "_image_files"), ("flowers102", "_image_files"),
                                            ("stanford_cars", "_samples")])  # fmt: skip
def test_the_fingerprint_follows_the_file_lists_of_torchvisions_datasets(name, attr):
    def plan(files):
        train, val = FileList(attr, files), FileList(attr, [("v/0.jpg", 0)])
        return shards.plan_of(name, "/data", Splits(train=train, val=val, test=val, classes=["a", "b"]))

    files = [("a/0.jpg", 0), ("b/0.jpg", 1)]
    assert plan(files)["fingerprint"] == plan(list(files))["fingerprint"]
    assert plan(files)["fingerprint"] != plan([("a/0.jpg", 0), ("b/1.jpg", 1)])["fingerprint"]  # same counts
