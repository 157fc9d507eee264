"""Measured speed, printed as ratios from one process: `python -m lit_effnet.bench {models,pipeline,progressive,stage}`.

    models       training step and inference of our B0/V2-S/V2-M against timm's same architecture, alternated
    pipeline     training-loader images/s per worker at a V2 schedule's sizes on ImageNet-like JPEGs: the path
                 before issue 14 against ours (reduced-scale decode, uint8 out), a profile of both, torchvision v2,
                 the decoders, and the workers a model's rate needs
    progressive  time to a target accuracy on digits: progressive (small -> large) vs fixed large size, same epochs
    stage        seconds to rebuild the train loader (and recompile, with --compile) at a stage boundary
    seeds        a train.py config over seeds, in named variants (default: the quickstart, progressive and at
                 its last stage's values throughout): best and last val/acc1 as mean, min and max (README figures)
    shards       training-loader images/s of one worker and time to the first batch, the same JPEGs streamed from
                 a local shard set (litdata) against read from their folder, at a V2 schedule's first and last size

Every figure in bench/RESULTS.md comes from one of these commands; each prints the machine and torch version.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import nn

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # before albumentations is imported (lazily, below)

# ours -> timm's model of the same architecture (symmetric padding, as our default)
TIMM_TWINS = {
    "efficientnet_b0": "efficientnet_b0",
    "efficientnetv2_s": "efficientnetv2_s",
    "efficientnetv2_m": "efficientnetv2_m",
}


def machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    return f"{platform.node()} | {device} | torch {torch.__version__} | {time.strftime('%Y-%m-%d')}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def rotated_timings(fns: dict[str, Callable[[], None]], device: torch.device, rounds: int) -> dict[str, list[float]]:
    """One call of each per round, the order rotating, so load and clock drift hit every side alike."""
    keys, times = list(fns), {key: [] for key in fns}
    for r in range(rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[key].append(_timed(fns[key], device))
    return times


@dataclass
class SpeedCase:
    name: str
    batch: int
    size: int

    @classmethod
    def parse(cls, text: str) -> SpeedCase:
        name, batch, size = text.split(":")
        return cls(name, int(batch), int(size))


def _build(name: str, device: torch.device, channels_last: dict[str, bool], compile_: bool) -> dict[str, nn.Module]:
    import timm

    from lit_effnet import create_model

    # Same training-time regularisation on both sides: stochastic depth 0.2 (timm's default is 0).
    models = {"ours": create_model(name), "timm": timm.create_model(TIMM_TWINS[name], drop_path_rate=0.2)}
    for key, model in models.items():
        model.to(device)
        if channels_last[key]:
            model.to(memory_format=torch.channels_last)
        if compile_:
            model.compile(dynamic=False)
        models[key] = model
    return models


def bench_models(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    cases = [SpeedCase.parse(c) for c in args.cases]
    # --as-shipped: ours as LitEfficientNet runs it (channels_last), timm as timm.create_model returns it (NCHW)
    channels_last = {"ours": args.channels_last or args.as_shipped, "timm": args.channels_last}
    print(f"# models: {machine()} | bf16={args.bf16} channels_last={channels_last} compile={args.compile}")
    print("model              mode    batch  size  ours ms (median/min)  timm ms (median/min)  ours/timm median  min")
    for case in cases:
        models = _build(case.name, device, channels_last, args.compile)
        x_nchw = torch.randn(case.batch, 3, case.size, case.size, device=device)
        y = torch.randint(0, 1000, (case.batch,), device=device)
        steps: dict[str, dict[str, Callable[[], None]]] = {"train": {}, "infer": {}}
        for key, model in models.items():
            x = x_nchw.contiguous(memory_format=torch.channels_last) if channels_last[key] else x_nchw
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            steps["train"][key] = _train_step(model, optimizer, x, y, autocast)
            steps["infer"][key] = _inference(model, x, autocast)
        for mode, fns in steps.items():
            for fn in fns.values():  # warm-up (and compilation)
                for _ in range(args.warmup):
                    fn()
            times = rotated_timings(fns, device, args.rounds)
            (om, omin), (tm, tmin) = (
                (statistics.median(times[k]) * 1e3, min(times[k]) * 1e3) for k in ("ours", "timm")
            )
            print(
                f"{case.name:18s} {mode:6s} {case.batch:6d} {case.size:5d}  {om:9.1f} / {omin:8.1f}  "
                f"{tm:9.1f} / {tmin:8.1f}  {om / tm:16.3f}  {omin / tmin:.3f}"
            )


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y, autocast) -> Callable[[], None]:
    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def _inference(model: nn.Module, x, autocast) -> Callable[[], None]:
    def infer() -> None:
        model.eval()
        with torch.inference_mode(), autocast:
            model(x)

    return infer


# ------------------------------------------------------------------ pipeline: one loader worker, today's path and ours

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CROP_SCALE = (0.08, 1.0)  # ImageDataModule's generic crop_scale
GOALS = {128: 2.0, 300: 1.3}  # issue 14: per-worker speed-up over today's path at the first and last V2-S stage


def photo_jpegs(folder: Path, count: int, width: int, height: int, quality: int = 90, seed: int = 0) -> list[Path]:
    """`count` distinct width x height JPEGs from scikit-learn's two photos (china.jpg, flower.jpg, 640x427): a
    random window of the target's aspect ratio, maybe mirrored, resized to the target size, saved at `quality`."""
    import cv2
    import numpy as np
    import sklearn.datasets
    from PIL import Image

    photos = sorted((Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        photo = arrays[i % len(arrays)]
        h, w = photo.shape[:2]
        win_h = int(h * rng.uniform(0.85, 1.0))
        win_w = min(w, round(win_h * width / height))  # the target's aspect ratio, so nothing is stretched
        top, left = rng.integers(0, h - win_h + 1), rng.integers(0, w - win_w + 1)
        window = photo[top : top + win_h, left : left + win_w]
        if rng.random() < 0.5:
            window = window[:, ::-1]
        method = cv2.INTER_AREA if width < win_w else cv2.INTER_CUBIC
        image = cv2.resize(np.ascontiguousarray(window), (width, height), interpolation=method)
        files.append(folder / f"{width}x{height}_{i}.jpg")
        Image.fromarray(image).save(files[-1], quality=quality)
    return files


class _Files(torch.utils.data.Dataset):
    """JPEG files as a train split of files holds them (`read_encoded`), label 0."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple:
        from lit_effnet.data.decode import read_encoded

        return read_encoded(self.paths[index]), 0


def _today_compose(size: int, magnitude: float, normalize: bool):
    """The train transform before issue 14, from albumentations directly: RandomResizedCrop -> flip -> RandAugment
    -> [Normalize to float32] -> ToTensorV2, on the fully decoded image."""
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    from lit_effnet.data.randaugment import RandAugment

    steps = [A.RandomResizedCrop(size=(size, size), scale=CROP_SCALE, interpolation=cv2.INTER_LINEAR)]
    steps += [A.HorizontalFlip(p=0.5), RandAugment(num_ops=2, magnitude=magnitude)]
    return A.Compose([*steps, *([A.Normalize(mean=MEAN, std=STD)] if normalize else []), ToTensorV2()])


Sampler = Callable[[int, int], object]  # (epoch, index) -> one training sample of one path


def _today_sampler(files: list[Path], size: int, magnitude: float, normalize: bool) -> Sampler:
    """A sample as a worker made it before: load_rgb, then the Compose seeded per (seed, epoch, index) with
    `set_random_seed` (a generator pair per step); `normalize` False is the uint8 output alone."""
    from lit_effnet.data.datamodule import sample_seed
    from lit_effnet.data.decode import load_rgb

    compose = _today_compose(size, magnitude, normalize)

    def sample(epoch: int, index: int) -> torch.Tensor:
        compose.set_random_seed(sample_seed(0, epoch, index))
        return compose(image=load_rgb(files[index]))["image"]

    return sample


def _new_dataset(files: list[Path], size: int, magnitude: float):
    from lit_effnet.data.datamodule import AugmentedDataset
    from lit_effnet.data.transforms import train_transform

    transform = train_transform(size, randaug_magnitude=magnitude, crop_scale=CROP_SCALE)
    return AugmentedDataset(_Files(files), [transform], seed=0)


def _new_sampler(files: list[Path], size: int, magnitude: float) -> Sampler:
    """A sample as ImageDataModule's train loader makes it now: AugmentedDataset over the encoded files."""
    from lit_effnet.data.datamodule import SampleKey

    dataset = _new_dataset(files, size, magnitude)
    return lambda epoch, index: dataset[SampleKey(epoch, index)][0]


def _torchvision_sampler(files: list[Path], size: int, magnitude: float) -> Sampler:
    """The same steps in torchvision v2 (decode_jpeg, float32 normalised on the worker), unseeded."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.RandomResizedCrop(size, scale=CROP_SCALE, antialias=True), v2.RandomHorizontalFlip(),
        v2.RandAugment(num_ops=2, magnitude=round(magnitude)), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])  # fmt: skip
    return lambda epoch, index: transform(decode_jpeg(read_file(str(files[index]))))


def interleaved_seconds(
    samplers: dict[str, Sampler], images: int, rounds: int, collate: bool
) -> dict[str, list[float]]:
    """Seconds per round of each path, side by side: every image goes through every path, in an order that
    rotates image by image, so load from other work hits them alike. A round is one batch (an epoch: new
    random draws), collated with default_collate when `collate`; a first round warms up and is not counted."""
    from torch.utils.data import default_collate

    keys, seconds = list(samplers), {key: [] for key in samplers}
    for epoch in range(rounds + 1):
        spent, batches = dict.fromkeys(keys, 0.0), {key: [] for key in keys}
        for index in range(images):
            shift = (epoch * images + index) % len(keys)
            for key in keys[shift:] + keys[:shift]:
                start = time.perf_counter()
                batches[key].append((samplers[key](epoch, index), 0))
                spent[key] += time.perf_counter() - start
        for key in keys if collate else ():
            start = time.perf_counter()
            default_collate(batches[key])
            spent[key] += time.perf_counter() - start
        for key in keys if epoch else ():
            seconds[key].append(spent[key])
    return seconds


def interleaved_rates(samplers: dict[str, Sampler], images: int, rounds: int, collate: bool) -> dict[str, float]:
    """Images/s of each path over its median round (`interleaved_seconds`)."""
    seconds = interleaved_seconds(samplers, images, rounds, collate)
    return {key: images / statistics.median(s) for key, s in seconds.items()}


def paired_ratio(seconds: dict[str, list[float]], fast: str, slow: str) -> float:
    """How many times faster `fast` is than `slow`: the median over rounds of the ratio within each round
    (the two paths ran side by side in it), steadier under load than a ratio of medians."""
    return statistics.median(s / f for f, s in zip(seconds[fast], seconds[slow]))


class _Laps:
    """Seconds per named step: `start()`, then `lap(name)` after each step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.t = time.perf_counter()

    def start(self) -> None:
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.t
        self.t = now


PROFILE_STEPS = ("seeding", "decode", "crop+resize", "flip", "RandAugment", "normalise", "collate")


def _today_steps(files: list[Path], size: int, magnitude: float) -> Callable[[int, int, _Laps], torch.Tensor]:
    """Today's sample with each step timed (the Compose's own bookkeeping, a few µs, left out)."""
    from lit_effnet.data.datamodule import sample_seed
    from lit_effnet.data.decode import load_rgb

    compose = _today_compose(size, magnitude, normalize=True)
    crop, flip, randaug, normalize, to_tensor = compose.transforms

    def sample(epoch: int, index: int, laps: _Laps) -> torch.Tensor:
        laps.start()
        compose.set_random_seed(sample_seed(0, epoch, index))
        laps.lap("seeding")
        image = load_rgb(files[index])
        laps.lap("decode")
        x = crop(image=image)["image"]
        laps.lap("crop+resize")
        x = flip(image=x)["image"]
        laps.lap("flip")
        x = randaug(image=x)["image"]
        laps.lap("RandAugment")
        x = to_tensor(image=normalize(image=x)["image"])["image"]
        laps.lap("normalise")
        return x

    return sample


def _new_steps(files: list[Path], size: int, magnitude: float) -> Callable[[int, int, _Laps], torch.Tensor]:
    """Our sample with each piece timed: read + decode at 1/2^k, header + box + resample, the albumentations
    steps; uint8 out (normalised later, on the device: not on the worker)."""
    from lit_effnet.data.datamodule import sample_seed
    from lit_effnet.data.decode import decode_bgr, reduction_for, resize_box

    dataset = _new_dataset(files, size, magnitude)
    transform = dataset.transforms[0]
    flip, randaug, to_tensor = transform.steps.transforms

    def sample(epoch: int, index: int, laps: _Laps) -> torch.Tensor:
        laps.start()
        rng = transform.seeded(sample_seed(0, epoch, index))
        laps.lap("seeding")
        encoded = dataset.base[index][0]
        laps.lap("decode")
        box = transform.crop.box(encoded, rng)
        laps.lap("crop+resize")
        bgr, k = decode_bgr(encoded, reduction_for(box, size))
        laps.lap("decode")
        image = resize_box(bgr, k, box, size, transform.crop.interpolation)
        laps.lap("crop+resize")
        x = flip(image=image)["image"]
        laps.lap("flip")
        x = randaug(image=x)["image"]
        laps.lap("RandAugment")
        x = to_tensor(image=x)["image"]
        laps.lap("normalise")
        return x

    return sample


def _profiles(files: list[Path], size: int, magnitude: float, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per image in each step of today's path and ours, interleaved image by image as in
    `interleaved_rates` (the mean over rounds, after one that warms up); collate spread over the batch."""
    from torch.utils.data import default_collate

    paths = {"today": _today_steps(files, size, magnitude), "new": _new_steps(files, size, magnitude)}
    for epoch in range(rounds + 1):
        if epoch <= 1:  # the first round warms up
            laps = {key: _Laps() for key in paths}
        batches = {key: [] for key in paths}
        for index in range(len(files)):
            for key in sorted(paths, reverse=(epoch * len(files) + index) % 2 == 1):
                batches[key].append((paths[key](epoch, index, laps[key]), 0))
        for key, batch in batches.items():
            laps[key].start()
            default_collate(batch)
            laps[key].lap("collate")
    samples = rounds * len(files)
    return {key: {step: lap.seconds[step] / samples for step in PROFILE_STEPS} for key, lap in laps.items()}


def _decoder_ms(datas: list[bytes], rounds: int) -> dict[tuple[str, int], float]:
    """ms per whole image for OpenCV (ours) and PIL (its `draft` mode: the same DCT scaling) at 1/2^k."""
    import io

    import numpy as np
    from PIL import Image

    from lit_effnet.data.decode import MAX_REDUCTION, decode_bgr

    def pil(data: bytes, k: int) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (-(-image.width >> k), -(-image.height >> k)))  # the smallest scale >= that
            return np.asarray(image.convert("RGB"))

    result = {}
    for k in range(MAX_REDUCTION + 1):
        fns = {
            "OpenCV": lambda e, i, k=k: decode_bgr(datas[i], k),
            "PIL": lambda e, i, k=k: pil(datas[i], k),
        }
        for name, rate in interleaved_rates(fns, len(datas), rounds, collate=False).items():
            result[name, k] = 1e3 / rate
    return result


def _header_us(datas: list[bytes], rounds: int) -> dict[str, float]:
    """µs per image to read (height, width): our marker walk against PIL's lazy open."""
    import io

    from PIL import Image

    from lit_effnet.data.decode import jpeg_shape

    def pil(data: bytes) -> tuple[int, int]:
        with Image.open(io.BytesIO(data)) as image:
            return image.height, image.width

    fns = {"jpeg_shape": lambda e, i: jpeg_shape(datas[i]), "PIL open": lambda e, i: pil(datas[i])}
    return {key: 1e6 / rate for key, rate in interleaved_rates(fns, len(datas), rounds, collate=False).items()}


def _reduction_mix(size: int, height: int, width: int, draws: int = 2000) -> list[float]:
    """Share of samples decoded at 1/1, 1/2, 1/4, 1/8 at this size (boxes of the loader's draws)."""
    import random

    from lit_effnet.data.decode import MAX_REDUCTION, reduction_for, sample_crop_box

    rng = random.Random(0)
    ks = [reduction_for(sample_crop_box(rng, height, width, CROP_SCALE), size) for _ in range(draws)]
    return [ks.count(k) / draws for k in range(MAX_REDUCTION + 1)]


def bench_pipeline(args: argparse.Namespace) -> None:
    """Images/s of one loader worker on ImageNet-like JPEGs: before issue 14 (full decode, float out) and now."""
    import tempfile

    import cv2

    torch.set_num_threads(1)  # as in a DataLoader worker
    cv2.setNumThreads(1)
    sources = [tuple(int(v) for v in text.split("x")) for text in args.sources]
    stages = list(zip(args.sizes, args.magnitudes))
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as folder:
        files = {src: photo_jpegs(Path(folder), args.images, *src) for src in sources}
        kb = {src: statistics.mean(p.stat().st_size for p in fs) / 1024 for src, fs in files.items()}
        print(f"# pipeline: {machine()} | one worker, 1 thread | {args.images} JPEGs per source, quality 90, from")
        print(f"#   scikit-learn's 2 photos: {', '.join(f'{w}x{h} ({kb[w, h]:.0f} KB)' for w, h in sources)}")
        print(f"#   RandAugment 2 ops | crop scale {CROP_SCALE} | bilinear | {args.rounds} rounds of a batch")
        print("# today: load_rgb (whole image) -> albumentations RandomResizedCrop -> flip -> RandAugment -> Normalize")
        print("#        (float32 on the worker); Compose.set_random_seed per sample (a generator pair per step)")
        print("# new:   header -> box -> decode at 1/2^k -> crop+resize -> flip -> RandAugment -> uint8 (normalised on")
        print("#        the device); one generator pair per sample. today u8: today's path with uint8 out")

        print("\nimages/s per worker (median round, batch collated); speed-ups: the median of the rounds' ratios")
        print(
            "source     size  mag  today  today u8  new   new/today  goal  met | tv-v2  today/tv"
            " | decoded at 1/1 1/2 1/4 1/8"
        )
        rates: dict[tuple, dict[str, float]] = {}
        for src in sources:
            for size, magnitude in stages:
                samplers = {
                    "today": _today_sampler(files[src], size, magnitude, normalize=True),
                    "today u8": _today_sampler(files[src], size, magnitude, normalize=False),
                    "new": _new_sampler(files[src], size, magnitude),
                    "tv": _torchvision_sampler(files[src], size, magnitude),
                }
                seconds = interleaved_seconds(samplers, args.images, args.rounds, collate=True)
                rate = rates[src, size] = {key: args.images / statistics.median(s) for key, s in seconds.items()}
                speedup, goal = paired_ratio(seconds, "new", "today"), GOALS.get(size)
                target, met = (f"{goal:.1f}x", "yes" if speedup >= goal else "no") if goal else ("-", "-")
                mix = " ".join(f"{share:.2f}" for share in _reduction_mix(size, src[1], src[0]))
                print(
                    f"{src[0]:4d}x{src[1]:<4d}  {size:4d}  {magnitude:4.1f} {rate['today']:6.0f}"
                    f"  {rate['today u8']:8.0f}  {rate['new']:4.0f}  {speedup:8.2f}x  {target:>4s}  {met:>3s}"
                    f" | {rate['tv']:5.0f}  {paired_ratio(seconds, 'today', 'tv'):8.2f} | {mix:>26s}"
                )

        print("\nprofile: ms per image by step (share of the path's total); steps timed one by one")
        print(f"source     size  path   total  {'  '.join(f'{step:>12s}' for step in PROFILE_STEPS)}")
        for src in sources:
            for size, magnitude in stages:
                for name, prof in _profiles(files[src], size, magnitude, args.rounds).items():
                    total = sum(prof.values())
                    cells = "  ".join(f"{v * 1e3:6.3f} ({v / total:3.0%})" for v in prof.values())
                    lead = f"{src[0]:4d}x{src[1]:<4d}  {size:4d}" if name == "today" else " " * 15
                    print(f"{lead}  {name:5s}  {total * 1e3:5.2f}  {cells}")

        print("\ndecode only, ms per whole image at 1/2^k (OpenCV: ours; PIL: its draft mode)")
        for src in sources:
            table = _decoder_ms([p.read_bytes() for p in files[src]], args.rounds)
            for name in ("OpenCV", "PIL"):
                row = "  ".join(f"1/{1 << k} {table[name, k]:6.3f}" for k in range(4))
                print(f"{src[0]:4d}x{src[1]:<4d}  {name:6s}  {row}")
            print(f"{src[0]:4d}x{src[1]:<4d}  OpenCV/PIL speed at 1/1: {table['PIL', 0] / table['OpenCV', 0]:.2f}")
        header = _header_us([p.read_bytes() for p in files[sources[0]]], args.rounds)
        print("header, µs per image: " + ", ".join(f"{k} {v:.1f}" for k, v in header.items()))

        if args.model_rate:
            print(
                f"\nworkers per device to feed a model training at {args.model_rate} img/s"
                " (ceil(rate / per-worker img/s)), today -> new:"
            )
            for (src, size), rate in rates.items():
                today, new = (math.ceil(args.model_rate / rate[key]) for key in ("today", "new"))
                print(f"  {src[0]}x{src[1]} {size}px: {today} -> {new}")


def _loader_epoch(loader, epoch: int) -> tuple[float, float]:
    """(seconds to the first batch, images/s after it) of one epoch of a train loader, its workers started anew
    or (persistent) woken up: what a worker makes while the main process only receives."""
    set_epoch = getattr(loader, "set_epoch", None) or loader.sampler.set_epoch
    set_epoch(epoch)
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    after_first = time.perf_counter()
    images = sum(len(labels) for _, labels in batches)
    return after_first - start, images / (time.perf_counter() - after_first)


def bench_shards(args: argparse.Namespace) -> None:
    """Images/s of one loader worker, and the time to the first batch: the same JPEGs as a local litdata shard set
    (`train.py shard`) and as an ImageFolder, through ImageDataModule's train loaders as shipped."""
    import tempfile

    from lit_effnet.data import ImageDataModule
    from lit_effnet.data.shards import write_shards

    stages = list(zip(args.sizes, args.magnitudes))
    print(
        f"# shards: {machine()} | one loader worker | {args.images} JPEGs per source, quality 90, from scikit-learn's"
    )
    print(
        f"#   2 photos | batch {args.batch} | RandAugment 2 ops | crop scale {CROP_SCALE} | {args.rounds} epochs each"
    )
    print(
        "# folder: ImageFolder files (persistent worker); shards: the same files' bytes in litdata chunks on the same"
    )
    print("#   disk, streamed (a fresh worker each epoch, as shipped); warm: page cache filled by a first epoch")
    print(
        "\nsource     size  mag  folder img/s  shards img/s  shards/folder | first batch s: folder  shards  (epoch 0)"
    )
    with tempfile.TemporaryDirectory(prefix="bench_shards_") as folder:
        for width, height in (tuple(int(v) for v in text.split("x")) for text in args.sources):
            root = Path(folder, f"{width}x{height}")
            for seed, (split, label) in enumerate((s, c) for s in ("train", "val") for c in ("a", "b")):
                (root / split / label).mkdir(parents=True)
                photo_jpegs(root / split / label, args.images // 2 if split == "train" else 1, width, height, seed=seed)
            write_shards("imagefolder", str(root), str(root / "shards"), log=lambda line: None)
            for size, magnitude in stages:
                loaders = {}
                for name, data_root in (("folder", root), ("shards", root / "shards")):
                    datamodule = ImageDataModule(
                        "imagefolder" if name == "folder" else "shards", root=str(data_root), batch_size=args.batch,
                        num_workers=1, image_size=size, randaug_magnitude=magnitude, crop_scale=CROP_SCALE, seed=0,
                    )  # fmt: skip
                    datamodule.setup("fit")
                    loaders[name] = datamodule.train_dataloader()
                cold = {name: _loader_epoch(loader, 0)[0] for name, loader in loaders.items()}
                rates: dict[str, list[float]] = {name: [] for name in loaders}
                firsts: dict[str, list[float]] = {name: [] for name in loaders}
                for epoch in range(1, args.rounds + 1):
                    for name in list(loaders)[:: 1 if epoch % 2 else -1]:  # alternate which goes first
                        first, rate = _loader_epoch(loaders[name], epoch)
                        firsts[name].append(first)
                        rates[name].append(rate)
                ratio = statistics.median(s / f for s, f in zip(rates["shards"], rates["folder"]))
                rate, first = ({k: statistics.median(v[k]) for k in loaders} for v in (rates, firsts))
                print(
                    f"{width:4d}x{height:<4d}  {size:4d}  {magnitude:4.1f}  {rate['folder']:12.0f}"
                    f"  {rate['shards']:12.0f}  {ratio:12.2f}x | warm {first['folder']:6.3f}  {first['shards']:6.3f}"
                    f"  ({cold['folder']:.3f}  {cold['shards']:.3f})"
                )


class _EpochClock(L.Callback):
    """Wall time of each epoch (training and validation) and the val/acc1 after it."""

    def __init__(self) -> None:
        self.elapsed, self.curve, self.start = 0.0, [], 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # In Lightning 2 validation has already run here, so its time counts too.
        self.elapsed += time.perf_counter() - self.start
        self.curve.append((self.elapsed, float(trainer.callback_metrics["val/acc1"])))


def _digits_run(seed: int, sizes: tuple[int, int], stages: int, epochs: int, eval_size: int) -> _EpochClock:
    from lit_effnet.callbacks import ProgressiveLearning
    from lit_effnet.data import ImageDataModule
    from lit_effnet.training import LitEfficientNet

    L.seed_everything(seed, verbose=False)
    net = {"width": 0.5, "depth": 0.5, "bn_momentum": 0.1, "drop_path_rate": 0.0}
    model = LitEfficientNet(
        "efficientnetv2_b0", 10, model_kwargs=net, optimizer="adamw", lr=0.005, lr_schedule="cosine", warmup_epochs=1
    )
    data = ImageDataModule(
        "digits", batch_size=64, num_workers=0, eval_size=eval_size, crop_pct=1.0, crop_scale=(0.6, 1.0), hflip=False
    )
    progressive = ProgressiveLearning(
        num_stages=stages, image_size=sizes, dropout=(0.0, 0.1), randaug_magnitude=(0.0, 1.0), mixup_alpha=None
    )
    clock = _EpochClock()
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        callbacks=[progressive, clock], enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, data)
    return clock


def bench_progressive(args: argparse.Namespace) -> None:
    """Digits, V2-B0 at half width and depth: progressive small -> large vs fixed large, same epochs, several seeds."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # keep the table readable
    print(f"# progressive: {machine()} | digits, {args.epochs} epochs, eval {args.size}px, target {args.target}")
    print("seed  schedule      train s  epochs-to-target  time-to-target s  final val/acc1")
    schedules = {"progressive": ((args.start, args.size), args.stages), "fixed": ((args.size, args.size), 1)}
    summary: dict[str, list[tuple[float, float, float]]] = {key: [] for key in schedules}
    for seed in args.seeds:
        for label, (sizes, stages) in schedules.items():
            clock = _digits_run(seed, sizes, stages, args.epochs, args.size)
            hit = next(((i + 1, t) for i, (t, acc) in enumerate(clock.curve) if acc >= args.target), (None, math.nan))
            final = clock.curve[-1][1]
            summary[label].append((clock.elapsed, hit[1], final))
            print(f"{seed:4d}  {label:12s} {clock.elapsed:8.1f}  {hit[0]!s:>16s}  {hit[1]:16.1f}  {final:.4f}")
    for index, what in ((0, "total"), (1, "time-to-target")):
        prog, fixed = (statistics.mean(row[index] for row in summary[k]) for k in schedules)
        print(f"speed-up, {what} (mean over seeds): {fixed / prog:.2f}x (progressive {prog:.1f}s, fixed {fixed:.1f}s)")
    finals = {k: statistics.mean(row[2] for row in summary[k]) for k in schedules}
    print(f"final val/acc1 (mean): progressive {finals['progressive']:.4f}, fixed {finals['fixed']:.4f}")


def bench_stage(args: argparse.Namespace) -> None:
    """Cost of a stage boundary: a new train loader (and, with --compile, new graphs) for the next size."""
    from lit_effnet import create_model
    from lit_effnet.data import ImageDataModule

    print(f"# stage change: {machine()} | digits loader, {args.workers} workers | compile={args.compile}")
    model = create_model("efficientnetv2_b0", num_classes=10, width=0.5, depth=0.5).train()
    if args.compile:
        model.compile(dynamic=False)  # as LitEfficientNet(compile=True): one static graph per size
    print("size  build loader s  first batch s  first step s  later step s")
    for size in args.sizes:
        data = ImageDataModule(
            "digits", batch_size=64, num_workers=args.workers, image_size=size, randaug_magnitude=2.0,
            eval_size=args.sizes[-1], persistent_workers=False,
        )  # fmt: skip
        data.setup("fit")
        start = time.perf_counter()
        loader = data.train_dataloader()
        built = time.perf_counter()
        batches = iter(loader)
        images = data.on_after_batch_transfer(next(batches), 0)[0]
        first_batch = time.perf_counter()
        model(images).logsumexp(1).mean().backward()
        first_step = time.perf_counter()
        images = data.on_after_batch_transfer(next(batches), 0)[0]
        step_start = time.perf_counter()
        model(images).logsumexp(1).mean().backward()
        later = time.perf_counter() - step_start
        row = (built - start, first_batch - built, first_step - first_batch, later)
        print(f"{size:4d}  {row[0]:14.3f}  {row[1]:13.3f}  {row[2]:12.3f}  {row[3]:12.3f}")


def _train_py_curve(argv: list[str]) -> list[dict[str, float]]:
    """Run `train.py argv` in this process in a temporary folder; its per-epoch validation curve."""
    import json
    import tempfile
    from pathlib import Path

    from lit_effnet.callbacks.report import read_curve
    from lit_effnet.cli import main as train_py

    with tempfile.TemporaryDirectory() as root:
        curve = Path(root) / "curve.jsonl"
        logger = {"class_path": "lit_effnet.callbacks.report.CurveFile", "init_args": {"path": str(curve)}}
        quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
        code = train_py(
            [*argv, "--trainer.default_root_dir", root, *quiet, f"--trainer.callbacks+={json.dumps(logger)}"]
        )
        if code != 0:
            raise SystemExit(f"train.py {' '.join(argv)} failed (exit {code})")
        return read_curve(curve)


def _spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} (min {min(values):.4f}, max {max(values):.4f})"


def bench_seeds(args: argparse.Namespace) -> None:
    """A config over seeds, in variants NAME=OVERRIDES (default: progressive as configured, and fixed at its
    last stage's values throughout): best and last val/acc1 as mean, min and max."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # keep the table readable
    variants = dict(v.partition("=")[::2] for v in args.variant or ["progressive=", "fixed=--progressive.num_stages 1"])
    print(f"# seeds: {machine()} | train.py --config {args.config} {' '.join(args.overrides)} | seeds {args.seeds}")
    print("seed  variant      train s  best val/acc1  (epoch)  last val/acc1")
    results: dict[str, list[tuple[float, float, float]]] = {key: [] for key in variants}
    for seed in args.seeds:
        for label, extra in variants.items():
            argv = ["--config", args.config, "--seed_everything", str(seed), *shlex.split(extra), *args.overrides]
            curve = _train_py_curve(argv)
            best = max(curve, key=lambda row: row["val/acc1"])
            last = curve[-1]
            results[label].append((last["elapsed_s"], best["val/acc1"], last["val/acc1"]))
            print(
                f"{seed:4d}  {label:11s} {last['elapsed_s']:8.1f}  {best['val/acc1']:13.4f}  {best['epoch']:7d}  "
                f"{last['val/acc1']:.4f}"
            )
    for label, rows in results.items():
        print(
            f"{label}: best {_spread([r[1] for r in rows])}; last {_spread([r[2] for r in rows])}; "
            f"train s {statistics.mean(r[0] for r in rows):.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_effnet.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help=bench_models.__doc__)
    models.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    models.add_argument(
        "--cases",
        nargs="+",
        default=["efficientnet_b0:16:224", "efficientnetv2_s:8:300", "efficientnetv2_m:2:384"],
        help="name:batch:size",
    )
    models.add_argument("--bf16", action="store_true", help="bf16 autocast")
    models.add_argument("--channels-last", action="store_true", help="both models and inputs channels_last")
    models.add_argument("--as-shipped", action="store_true", help="our default (channels_last) vs timm's (NCHW)")
    models.add_argument("--compile", action="store_true", help="torch.compile both models")
    models.add_argument("--warmup", type=int, default=2)
    models.add_argument("--rounds", type=int, default=10)
    pipeline = sub.add_parser("pipeline", help=bench_pipeline.__doc__)
    pipeline.add_argument("--sizes", type=int, nargs="+", default=[128, 184, 240, 300])
    pipeline.add_argument("--magnitudes", type=float, nargs="+", default=[5, 6.7, 8.3, 10])
    pipeline.add_argument("--sources", nargs="+", default=["500x375", "1000x750"], help="JPEG sizes, WxH")
    pipeline.add_argument("--images", type=int, default=64)
    pipeline.add_argument("--rounds", type=int, default=5)
    pipeline.add_argument("--model-rate", type=int, default=0, help="model img/s to size the worker count for")
    progressive = sub.add_parser("progressive", help=bench_progressive.__doc__)
    progressive.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    progressive.add_argument("--epochs", type=int, default=24)
    progressive.add_argument("--stages", type=int, default=3)
    progressive.add_argument("--start", type=int, default=64)
    progressive.add_argument("--size", type=int, default=128)
    progressive.add_argument("--target", type=float, default=0.95)
    stage = sub.add_parser("stage", help=bench_stage.__doc__)
    stage.add_argument("--sizes", type=int, nargs="+", default=[128, 184, 240, 300])
    stage.add_argument("--workers", type=int, default=2)
    stage.add_argument("--compile", action="store_true")
    seeds = sub.add_parser("seeds", help=bench_seeds.__doc__)
    seeds.add_argument("--config", default="quickstart")
    seeds.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    seeds.add_argument("--variant", action="append", help='NAME=OVERRIDES, e.g. "scratch=--model.pretrained null"')
    seeds.add_argument("overrides", nargs="*", help="train.py overrides for every run, after --")
    shards = sub.add_parser("shards", help=bench_shards.__doc__)
    shards.add_argument("--sizes", type=int, nargs="+", default=[128, 300])
    shards.add_argument("--magnitudes", type=float, nargs="+", default=[5, 10])
    shards.add_argument("--sources", nargs="+", default=["500x375", "1000x750"], help="JPEG sizes, WxH")
    shards.add_argument("--images", type=int, default=192)
    shards.add_argument("--batch", type=int, default=16)
    shards.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    commands = {
        "models": bench_models, "pipeline": bench_pipeline, "progressive": bench_progressive, "stage": bench_stage,
        "seeds": bench_seeds, "shards": bench_shards,
    }  # fmt: skip
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
