"""Measured speed, printed as ratios from one process: `python -m lit_effnet.bench {models,pipeline,progressive,stage}`.

    models       training step and inference of our B0/V2-S/V2-M against timm's same architecture, alternated
    pipeline     training-loader images/s per worker at a V2 schedule's sizes (albumentations vs torchvision v2),
                 against the model's consumption rate
    progressive  time to a target accuracy on digits: progressive (small -> large) vs fixed large size, same epochs
    stage        seconds to rebuild the train loader (and recompile, with --compile) at a stage boundary
    quickstart   `train.py --config quickstart` over seeds, progressive and at its last stage's size throughout:
                 best and last val/acc1 as mean, min and max (the README's figures)

Every figure in bench/RESULTS.md comes from one of these commands; each prints the machine and torch version.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

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


def _jpeg_files(count: int) -> list:
    """`count` copies of scikit-learn's two real photos (640x427 JPEGs), close to ImageNet's average size."""
    import tempfile
    from pathlib import Path

    import sklearn.datasets

    photos = [p.read_bytes() for p in sorted((Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))]
    folder = Path(tempfile.mkdtemp())
    files = []
    for i in range(count):
        files.append(folder / f"{i}.jpg")
        files[-1].write_bytes(photos[i % len(photos)])
    return files


def _albumentations_loader(files: list, size: int, magnitude: float, mean, std) -> Callable[[], None]:
    from lit_effnet.data.datasets import load_rgb
    from lit_effnet.data.transforms import Normalize, train_transform

    transform = train_transform(size, randaug_magnitude=magnitude, crop_scale=(0.08, 1.0))
    transform.set_random_seed(0)
    normalize = Normalize(mean, std)  # on the worker here, as the torchvision pipeline does

    def run() -> None:
        for path in files:
            normalize(transform(image=load_rgb(path))["image"][None])

    return run


def _torchvision_loader(files: list, size: int, magnitude: float, mean, std) -> Callable[[], None]:
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
        v2.RandAugment(num_ops=2, magnitude=round(magnitude)), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])  # fmt: skip

    def run() -> None:
        for path in files:
            transform(decode_jpeg(read_file(str(path))))

    return run


def _decode_all(files: list, opencv: bool) -> Callable[[], None]:
    """Our `load_rgb` (OpenCV), or the PIL decode it replaced."""
    import numpy as np
    from PIL import Image

    from lit_effnet.data import datasets

    def run() -> None:
        for path in files:
            if opencv:
                datasets.load_rgb(path)
            else:
                with Image.open(path) as image:
                    np.asarray(image.convert("RGB"))

    return run


def bench_pipeline(args: argparse.Namespace) -> None:
    """Images/s of one loader process (decode -> crop -> flip -> RandAugment -> normalise) on real JPEGs."""
    import cv2

    torch.set_num_threads(1)  # as in a DataLoader worker
    cv2.setNumThreads(1)
    files = _jpeg_files(args.images)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    print(f"# pipeline: {machine()} | {args.images} JPEGs of 640x427 | RandAugment 2 ops | one process")
    print("size  magnitude  albumentations img/s  torchvision-v2 img/s  alb/tv")
    rates = {}
    for size, magnitude in zip(args.sizes, args.magnitudes):
        fns = {
            "alb": _albumentations_loader(files, size, magnitude, mean, std),
            "tv": _torchvision_loader(files, size, magnitude, mean, std),
        }
        times = rotated_timings(fns, torch.device("cpu"), args.rounds)
        alb, tv = (args.images / statistics.median(times[k]) for k in ("alb", "tv"))
        rates[size] = alb
        print(f"{size:4d}  {magnitude:9.1f}  {alb:20.0f}  {tv:20.0f}  {alb / tv:.2f}")
    decoders = {"opencv": _decode_all(files, opencv=True), "pil": _decode_all(files, opencv=False)}
    times = rotated_timings(decoders, torch.device("cpu"), args.rounds)
    cv, pil = (args.images / statistics.median(times[k]) for k in decoders)
    print(f"decode only (load_rgb): OpenCV {cv:.0f} img/s, PIL {pil:.0f} img/s, OpenCV/PIL {cv / pil:.2f}")
    if args.model_rate:
        print(
            f"\nworkers per device to feed a model training at {args.model_rate} img/s (ceil(rate / per-worker rate)):"
        )
        for size, rate in rates.items():
            print(f"  {size}px: {math.ceil(args.model_rate / rate)}")


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


def bench_quickstart(args: argparse.Namespace) -> None:
    """The quickstart over seeds: progressive as configured, and at its last stage's values throughout."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # keep the table readable
    schedules = {"progressive": [], "fixed": ["--progressive.num_stages", "1"]}
    print(f"# quickstart: {machine()} | train.py --config {args.config} | seeds {args.seeds}")
    print("seed  schedule     train s  best val/acc1  (epoch)  last val/acc1")
    results: dict[str, list[tuple[float, float, float]]] = {key: [] for key in schedules}
    for seed in args.seeds:
        for label, extra in schedules.items():
            curve = _train_py_curve(["--config", args.config, "--seed_everything", str(seed), *extra, *args.overrides])
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
    pipeline.add_argument("--images", type=int, default=64)
    pipeline.add_argument("--rounds", type=int, default=3)
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
    quickstart = sub.add_parser("quickstart", help=bench_quickstart.__doc__)
    quickstart.add_argument("--config", default="quickstart")
    quickstart.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    quickstart.add_argument("overrides", nargs="*", help="train.py overrides, after --")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    commands = {
        "models": bench_models, "pipeline": bench_pipeline, "progressive": bench_progressive, "stage": bench_stage,
        "quickstart": bench_quickstart,
    }  # fmt: skip
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
