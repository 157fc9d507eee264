"""Shard sets: a dataset's splits as litdata chunks, in a folder or an S3-compatible bucket, streamed to training.

`python train.py shard --config C --out DIR_OR_URL` writes every split of the config's dataset; `--data.name shards
--data.root DIR_OR_URL` trains from them. Layout of a shard set:

    OUT/train/index.json, chunk-*.bin    one litdata dataset per split, samples in the split's own order
    OUT/val/...                          (OUT/test/ only where the test split is not the val split)
    OUT/lit_effnet_shards.json           dataset, class names, splits and their sizes: written last

A sample is {"index", "label", "path", "image"}: `image` holds a file's bytes as they are on disk (no re-encode;
the train transform decodes them at reduced scale, as for folders) or, for the datasets kept in memory (digits,
CIFAR), the uint8 array. `index` is the sample's position in its split, so augmentation draws stay a function of
(seed, epoch, index): a shard sample is the folder path's sample, pixel for pixel, whatever order it streams in.

Complete or refused: the manifest is written only after every split's index.json, and a root without it is no
shard set. A rerun of an interrupted conversion keeps the splits whose index.json holds all their samples and
rewrites the others ("finishing"), or starts over when the source changed; it never deletes a folder it did not
write. Object storage is reached through boto3's usual environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, default_collate

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # litdata must not ask PyPI for its newest version

from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.writer import BinaryWriter

from lit_effnet.data.datamodule import sample_seed
from lit_effnet.data.datasets import ArrayDataset, Splits, dataset_entry, load_splits
from lit_effnet.data.decode import EncodedImage, load_rgb, read_encoded
from lit_effnet.data.transforms import TrainTransform
from lit_effnet.errors import ConfigError, CorruptImageError, DataError, DatasetNotFoundError


def _obstore_allows_http() -> None:
    """litdata 0.2.76 fetches S3 chunks through obstore, built without `allow_http`: an http:// endpoint set by the
    user (MinIO, a test server) fails there with "BadScheme" while boto3 takes it. Allow what the endpoint says."""
    from litdata.streaming import downloader

    downloader._OBSTORE_CLIENT_OPTIONS = {**downloader._OBSTORE_CLIENT_OPTIONS, "allow_http": "true"}


_obstore_allows_http()

MANIFEST = "lit_effnet_shards.json"
PARTIAL = "lit_effnet_shards.partial.json"  # written first: the folder holds a conversion of this source
FORMAT = "lit-effnet shards 1"
INDEX = "index.json"  # litdata's: a split is complete when its index holds all of the split's samples
DEFAULT_CHUNK_BYTES = "64MB"  # litdata's default chunk size
READ_BLOCK = 1024  # samples read ahead at once by the conversion's threads


def is_url(root: str | os.PathLike) -> bool:
    return "://" in str(root)


# ------------------------------------------------------------------ where a shard set lives


class Store:
    """A folder of a shard set: local, or an S3 prefix. Small files are read and written whole; chunks uploaded."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = str(root).rstrip("/")

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # Local folders; S3Store overrides each.
    def read_text(self, name: str) -> str | None:
        path = Path(self.root, name)
        return path.read_text() if path.is_file() else None

    def write_text(self, name: str, text: str) -> None:
        path = Path(self.root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # a reader sees the old file or the new one, never half of one

    def delete(self, name: str) -> None:
        path = Path(self.root, name)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def is_empty(self) -> bool:
        path = Path(self.root)
        return not path.exists() or (path.is_dir() and not any(path.iterdir()))

    def local_folder(self, name: str) -> str | None:
        """Where a split's chunks are written directly (None: write them to a staging folder and upload)."""
        return str(Path(self.root, name))

    def upload(self, local_path: str, name: str) -> None:
        raise NotImplementedError  # local splits are written in place


class S3Store(Store):
    """An s3://bucket/prefix through boto3, which takes the endpoint and credentials from the environment as the
    AWS tools do (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...).

    boto3 directly, not litdata's S3 client: that one retries up to 1000 times, so an unreachable endpoint would
    hang the run instead of stopping it with one line.
    """

    def __init__(self, root: str) -> None:
        super().__init__(root)
        scheme, _, rest = self.root.partition("://")
        if scheme != "s3":
            raise ConfigError(f"{root}: only local folders and s3:// URLs hold shard sets")
        self.bucket, _, self.prefix = rest.partition("/")
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
        self.client = boto3.client("s3", config=config)

    def _key(self, name: str) -> str:
        return "/".join(part for part in (self.prefix, name) if part)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise DataError(f"{self.root}: {what} failed ({err})") from None
        except BotoCoreError as err:  # no connection, no credentials, a bad endpoint URL
            endpoint = self.client.meta.endpoint_url
            raise DataError(f"{self.root}: {what} failed at {endpoint} ({err})") from None

    def read_text(self, name: str) -> str | None:
        response = self._call(
            f"reading {name}", lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(name))
        )
        return None if response is None else response["Body"].read().decode()

    def write_text(self, name: str, text: str) -> None:  # an object appears whole or not at all
        self._call(
            f"writing {name}", lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=text)
        )

    def _keys(self, name: str = "") -> Iterator[str]:
        prefix = self._key(name)
        prefix = prefix + "/" if prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in self._call(f"listing {prefix or '/'}", lambda: list(pages)) or []:
            yield from (entry["Key"] for entry in page.get("Contents", []))

    def delete(self, name: str) -> None:
        keys = [*self._keys(name), self._key(name)]
        for start in range(0, len(keys), 1000):
            objects = [{"Key": key} for key in keys[start : start + 1000]]
            self._call(
                f"deleting {name}",
                lambda o=objects: self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": o}),
            )

    def is_empty(self) -> bool:
        return next(self._keys(), None) is None

    def local_folder(self, name: str) -> str | None:
        return None

    def upload(self, local_path: str, name: str) -> None:
        self._call(f"uploading {name}", lambda: self.client.upload_file(local_path, self.bucket, self._key(name)))


def store_of(root: str | os.PathLike) -> Store:
    return S3Store(str(root)) if is_url(root) else Store(root)


# ------------------------------------------------------------------ reading a shard set


@dataclass(frozen=True)
class ShardSet:
    """What a complete shard set's manifest says: its root, dataset, class names and split sizes."""

    root: str
    dataset: str
    classes: list[str]
    sizes: dict[str, int]  # split folder -> samples
    split_folders: dict[str, str]  # train/val/test -> the folder holding it (test may be val's)

    @staticmethod
    def open(root: str | os.PathLike) -> ShardSet:
        """The shard set at `root`, or a DatasetNotFoundError naming root when there is none (or only part of one)."""
        store = store_of(root)
        text = store.read_text(MANIFEST)
        if text is None:
            partial = store.read_text(PARTIAL) is not None
            what = "only an interrupted conversion" if partial else "no shard set"
            raise DatasetNotFoundError(
                f"shards: {store.root} holds {what} ({MANIFEST} missing). "
                f"Write one with: python train.py shard --config CONFIG --out {store.root}"
            )
        manifest = json.loads(text)
        if manifest.get("format") != FORMAT:
            raise DatasetNotFoundError(f"shards: {store.join(MANIFEST)} is not a {FORMAT!r} manifest")
        return ShardSet(
            root=store.root,
            dataset=manifest["dataset"],
            classes=list(manifest["classes"]),
            sizes={k: int(v) for k, v in manifest["sizes"].items()},
            split_folders=dict(manifest["split_folders"]),
        )

    def url(self, split: str) -> str:
        return f"{self.root}/{self.split_folders[split]}"


@dataclass(frozen=True)
class ShardSplit:
    """One split of a shard set, as `Splits` holds it: where it streams from and how many samples it has."""

    shards: ShardSet
    split: str

    @property
    def url(self) -> str:
        return self.shards.url(self.split)

    def __len__(self) -> int:
        return self.shards.sizes[self.shards.split_folders[self.split]]


def load_shard_splits(root: Path | str) -> Splits:
    """The `shards` entry of the dataset registry: the splits of the shard set at `root` (nothing streamed yet)."""
    shards = ShardSet.open(root)
    split = {name: ShardSplit(shards, name) for name in ("train", "val", "test")}
    return Splits(train=split["train"], val=split["val"], test=split["test"], classes=shards.classes)


def shard_classes(root: Path | str) -> int:
    return len(ShardSet.open(root).classes)


class ShardStream(StreamingDataset):
    """A split's shards as (uint8 CHW tensor, label), each sample through `transform`.

    A `TrainTransform` gets the sample's seed, `sample_seed(seed, epoch, index)`: the folder path's draws for the
    same image. litdata counts epochs from 1 (its loader's `current_epoch`), the Trainer from 0. An eval pipeline
    (albumentations) gets the decoded image. With `skip_corrupt`, an image that does not decode is replaced by the
    next one of the split and counted in a warning, as in the folder path.
    """

    def __init__(
        self,
        url: str,
        transform: TrainTransform | Any,
        *,
        size: int,
        seed: int = 0,
        train: bool = False,
        cache_dir: str | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__(url, cache_dir=cache_dir, shuffle=train, drop_last=train, seed=seed)
        self.url, self.size, self.sample_transform, self.augment_seed = url, size, transform, seed
        self.skip_corrupt, self.skipped = skip_corrupt, 0

    def _sample(self, item: dict[str, Any]) -> tuple[torch.Tensor, int]:
        image = item["image"]
        if not isinstance(image, np.ndarray):
            image = EncodedImage(f"{self.url}#{item['index']} ({item['path']})", bytes(image))
        label = int(item["label"])
        if isinstance(self.sample_transform, TrainTransform):
            seed = sample_seed(self.augment_seed, self.current_epoch - 1, int(item["index"]))
            return self.sample_transform(image, seed), label
        array = image if isinstance(image, np.ndarray) else load_rgb(image)
        return self.sample_transform(image=array)["image"], label

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, int]:
        item = super().__getitem__(index)
        if isinstance(index, str):
            return item
        try:
            return self._sample(item)
        except CorruptImageError as err:
            if not self.skip_corrupt:
                raise
            self.skipped += 1
            warnings.warn(f"skipped corrupt image ({self.skipped} in this process): {err}", stacklevel=2)
            for offset in range(1, self.size):  # the split's next samples, by their index (= position)
                try:
                    return self._sample(super().__getitem__((int(item["index"]) + offset) % self.size))
                except CorruptImageError:
                    self.skipped += 1
            raise CorruptImageError(f"no readable image among the {self.size} of {self.url}") from None


class ShardLoader(StreamingDataLoader):
    """litdata's stateful loader, whose epoch is the Trainer's and whose resume replays only the epoch it resumes.

    Lightning stores the loader's `state_dict` in each checkpoint and hands it back on resume; litdata then
    continues the interrupted epoch where it stopped. litdata 0.2.76 forgets that it resumed only when an
    iteration runs to its end, which Lightning never lets it do (it stops at the loader's length), so the next
    epoch would replay the resumed one: only the first iteration after `load_state_dict` resumes here.
    """

    def __init__(self, dataset: ShardStream, **kwargs: Any) -> None:
        super().__init__(dataset, collate_fn=default_collate, **kwargs)
        self._replay = False

    def set_epoch(self, epoch: int) -> None:
        """The Trainer's epoch (from 0) this loader's next iteration serves, unless it resumes a saved one."""
        if not self._replay:
            self.current_epoch = epoch  # litdata adds 1 when the iteration starts

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        super().load_state_dict(obj)
        self._replay = self.restore

    def __iter__(self) -> Any:
        # A generator: this runs when the epoch's first batch is asked for, not at each iter() Lightning makes.
        replay, self._replay = self._replay, False
        if not replay:
            self.restore = False
        yield from super().__iter__()


def train_loader(
    split: ShardSplit,
    transform: TrainTransform,
    *,
    seed: int,
    batch_size: int,
    cache_dir: str | None,
    skip_corrupt: bool,
    **loader_kwargs: Any,
) -> ShardLoader:
    """A split's shards shuffled by (seed, epoch), full batches only, every rank the same number (litdata's
    drop_last), each sample through `transform` in the loader's workers."""
    stream = ShardStream(
        split.url, transform, size=len(split), seed=seed, train=True, cache_dir=cache_dir, skip_corrupt=skip_corrupt
    )
    # Fresh workers each epoch: persistent ones would keep the epoch (and the augmentation seeds) of the last one.
    loader_kwargs["persistent_workers"] = False
    loader = ShardLoader(stream, batch_size=batch_size, **loader_kwargs)
    if len(loader) < 1:
        raise ConfigError(
            f"data.batch_size {batch_size} is larger than the {len(split)} training images of {split.url} per device"
        )
    return loader


def eval_loader(
    split: ShardSplit, transform: Any, *, batch_size: int, cache_dir: str | None, skip_corrupt: bool, **loader_kwargs
) -> ShardLoader:
    """A split's shards in their order, every sample once (each rank its part), through the eval `transform`."""
    stream = ShardStream(split.url, transform, size=len(split), cache_dir=cache_dir, skip_corrupt=skip_corrupt)
    loader_kwargs["persistent_workers"] = False
    return ShardLoader(stream, batch_size=batch_size, **loader_kwargs)


# ------------------------------------------------------------------ writing a shard set


def split_samples(dataset: Dataset) -> Dataset:
    """The split as (encoded bytes or array, label): a files dataset reads its files without decoding them."""
    if isinstance(dataset, ConcatDataset):
        return ConcatDataset([split_samples(part) for part in dataset.datasets])
    if hasattr(dataset, "loader"):  # torchvision's file datasets (ImageFolder, Flowers102, StanfordCars)
        dataset = copy.copy(dataset)
        dataset.loader = read_encoded
        return dataset
    if isinstance(dataset, ArrayDataset):
        return dataset
    raise ConfigError(f"cannot shard a {type(dataset).__name__} split: it holds neither files nor arrays")


def sample_record(index: int, image: Any, label: int, root: str) -> dict[str, Any]:
    """What one sample of a shard holds."""
    if isinstance(image, EncodedImage):  # the path, for messages about this image
        path = os.path.relpath(image.path, root)
        return {"index": index, "label": int(label), "path": path, "image": image.data}
    return {"index": index, "label": int(label), "path": "", "image": np.ascontiguousarray(image, np.uint8)}


def plan_of(name: str, root: str, splits: Splits) -> dict[str, Any]:
    """The manifest a conversion of this source writes; its fingerprint tells a rerun whether the source changed."""
    folders = {"train": "train", "val": "val", "test": "val" if splits.test is splits.val else "test"}
    sizes = {folder: len(getattr(splits, split)) for split, folder in folders.items()}
    where = dataset_entry(name).where
    manifest = {
        "format": FORMAT,
        "dataset": name,
        "source": where if where.startswith("embedded") else os.path.abspath(root),
        "classes": list(splits.classes),
        "sizes": sizes,
        "split_folders": folders,
    }
    digest = hashlib.sha256(json.dumps({k: v for k, v in manifest.items() if k != "source"}).encode())
    for split, folder in folders.items():
        dataset = getattr(splits, split)
        for attr in ("samples", "_samples", "_image_files"):  # the file lists, where the split has one
            digest.update(repr(getattr(dataset, attr, "")).encode())
        digest.update(folder.encode())
    return {**manifest, "fingerprint": digest.hexdigest()}


def _split_complete(store: Store, folder: str, size: int) -> bool:
    text = store.read_text(f"{folder}/{INDEX}")
    if text is None:
        return False
    return sum(int(chunk["chunk_size"]) for chunk in json.loads(text)["chunks"]) == size


def write_split(
    store: Store,
    folder: str,
    dataset: Dataset,
    root: str,
    *,
    chunk_bytes: str | int = DEFAULT_CHUNK_BYTES,
    threads: int = 8,
    staging: str | None = None,
) -> int:
    """Write one split as litdata chunks (its samples in order); index.json goes last. Returns the sample count.

    One in-process litdata writer rather than `litdata.optimize`, whose worker processes reorder the samples: the
    order is kept, and the files are read by a pool of threads (reading, not decoding, is the work here).
    """
    samples = split_samples(dataset)
    local = store.local_folder(folder) or os.path.join(staging or tempfile.mkdtemp(prefix="shards-"), folder)
    writer = BinaryWriter(local, chunk_bytes=chunk_bytes)
    remote = store.local_folder(folder) is None

    def send(paths: Sequence[str]) -> None:
        for path in paths:
            if remote:
                store.upload(path, f"{folder}/{os.path.basename(path)}")
                os.remove(path)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for start in range(0, len(samples), READ_BLOCK):
            indices = range(start, min(start + READ_BLOCK, len(samples)))
            for index, (image, label) in zip(indices, pool.map(samples.__getitem__, indices)):
                written = writer.add_item(index, sample_record(index, image, label, root))
                send([written] if written else [])
    send(writer.done())
    writer.merge()
    if remote:
        store.upload(os.path.join(local, INDEX), f"{folder}/{INDEX}")
        shutil.rmtree(local, ignore_errors=True)
    return len(samples)


def write_shards(
    name: str,
    root: str,
    out: str,
    *,
    chunk_bytes: str | int = DEFAULT_CHUNK_BYTES,
    threads: int = 8,
    log: Callable[[str], None] = print,
) -> ShardSet:
    """Write dataset `name` under `root` as a shard set at `out` (a folder or s3:// URL); see the module."""
    splits = load_splits(name, root)
    plan = plan_of(name, root, splits)
    store = store_of(out)
    done = store.read_text(MANIFEST)
    if done is not None:
        if json.loads(done).get("fingerprint") == plan["fingerprint"]:
            log(f"shard: {store.root} already holds this shard set, complete: nothing to do")
            return ShardSet.open(out)
        raise DataError(
            f"--out {store.root} already holds a complete shard set of another source "
            f"({json.loads(done).get('dataset')}): choose another --out, or delete it first"
        )
    partial = store.read_text(PARTIAL)
    if partial is None and not store.is_empty():
        raise DataError(f"--out {store.root} is not empty and holds no shard set: choose a new or empty folder")
    finishing = partial is not None and json.loads(partial).get("fingerprint") == plan["fingerprint"]
    if partial is None:
        log(f"shard: writing {name} ({root}) to {store.root}")
    elif finishing:
        log(f"shard: finishing the interrupted conversion in {store.root}")
    else:
        log(f"shard: starting over: {store.root} holds an interrupted conversion of another source")
        for folder in json.loads(partial).get("sizes", {}):
            store.delete(folder)
    store.write_text(PARTIAL, json.dumps(plan, indent=1))
    with tempfile.TemporaryDirectory(prefix="lit_effnet_shards_") as staging:
        for split, folder in plan["split_folders"].items():
            if split == "test" and folder == "val":
                continue
            size = plan["sizes"][folder]
            if finishing and _split_complete(store, folder, size):
                log(f"shard: {folder}: complete ({size:,} images), kept")
                continue
            store.delete(folder)
            write_split(
                store, folder, getattr(splits, split), root, chunk_bytes=chunk_bytes, threads=threads, staging=staging
            )
            log(f"shard: {folder}: {size:,} images written")
    store.write_text(MANIFEST, json.dumps(plan, indent=1))
    store.delete(PARTIAL)
    shards = ShardSet.open(out)
    log(
        f"shard: {store.root}: complete, {len(shards.classes)} classes; "
        f"train with --data.name shards --data.root {store.root}"
    )
    return shards


def config_data(argv: Sequence[str]) -> tuple[str, str]:
    """data.name and data.root of a train.py config (its `extends` chain applied, then --data.* overrides)."""
    import yaml

    from lit_effnet.cli import expand_config, resolve_config

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--data.name", dest="name")
    parser.add_argument("--data.root", dest="root")
    args, _ = parser.parse_known_args(argv)
    data: dict[str, Any] = {"name": "digits", "root": "data"}  # ImageDataModule's defaults
    for config in args.config:
        for value in expand_config(resolve_config(config)):
            text = Path(value).read_text() if os.path.isfile(value) else value  # a file, or the YAML of one
            data |= (yaml.safe_load(text) or {}).get("data") or {}
    name, root = args.name or data.get("name"), args.root or data.get("root")
    if name == "shards":
        raise ConfigError("data.name shards: this config already trains from shards; shard its source dataset")
    return str(name), str(root)


def shard_command(argv: Sequence[str]) -> int:
    """`train.py shard --config NAME --out DIR_OR_URL [--chunk_bytes 64MB] [--threads 8]`."""
    parser = argparse.ArgumentParser(prog="python train.py shard", description=shard_command.__doc__)
    parser.add_argument("--config", action="append", required=True, help="the config whose dataset (data.*) to shard")
    parser.add_argument("--out", required=True, help="a new folder, or s3://bucket/prefix")
    parser.add_argument("--chunk_bytes", default=DEFAULT_CHUNK_BYTES, help="size of one chunk (litdata's default)")
    parser.add_argument("--threads", type=int, default=8, help="threads reading the image files")
    parser.add_argument("--data.name", dest="name", help="override the config's data.name")
    parser.add_argument("--data.root", dest="root", help="override the config's data.root")
    args = parser.parse_args(argv)
    overrides = [f"--config={c}" for c in args.config]
    overrides += [f"--data.{k}={v}" for k, v in (("name", args.name), ("root", args.root)) if v is not None]
    name, root = config_data(overrides)
    chunk_bytes = int(args.chunk_bytes) if str(args.chunk_bytes).isdigit() else args.chunk_bytes
    write_shards(name, root, args.out, chunk_bytes=chunk_bytes, threads=args.threads)
    return 0
