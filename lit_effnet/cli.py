"""`python train.py [fit|validate|test|predict|export|shard] --config NAME [--dotted.key value ...]` (LightningCLI).

On top of LightningCLI this adds only what a config-driven research workflow needs:
- `--config NAME` is looked up in configs/ (with or without .yaml) when it is not a path; a config may start
  with `extends: OTHER` (a thin per-variant file over its family's recipe), and OTHER is applied first;
- `fit` is the default subcommand; `--devices/--accelerator/--precision/--num_nodes/--strategy` are
  short for `--trainer.<same>`, `--pretrained` for `--model.pretrained`, and `--files A B ...` for
  `--data.predict_files [A, B, ...]`;
- runs log and checkpoint to DIR/<config>/version_N/ (DIR: `--trainer.default_root_dir`, default
  checkpoints/), and `--ckpt_path last` resumes the newest last.ckpt there, logging on into the same
  version (`--ckpt_path auto`: the same if there is one, else a fresh start, for requeued cluster jobs);
- `--print_schedule` prints the resolved progressive-learning schedule as JSON and exits;
- `test` also writes per_class.csv and confusion.png into the run's folder;
- `export` writes the model for timm, torchvision, ONNX or torch.export (`lit_effnet.export`);
- `shard` writes the config's dataset as a litdata shard set (`lit_effnet.data.shards`);
- a user mistake (the project's error types, lit_effnet.errors, and the command line's) prints one line
  naming the culprit and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lit_effnet.callbacks import EMA, ProgressiveLearning
from lit_effnet.callbacks.checkpoint import PREVIOUS_SUFFIX, LastCheckpoint, best_checkpoint, previous_version
from lit_effnet.callbacks.predictions import TopKPrinter
from lit_effnet.callbacks.ranks import RankWatch, disable_lightning_process_observer
from lit_effnet.callbacks.report import ErrorReport
from lit_effnet.callbacks.seeding import BatchSeeding
from lit_effnet.data import ImageDataModule
from lit_effnet.errors import CheckpointError, ConfigError, LitEffnetError, refuse_pinned
from lit_effnet.models import VariantSpec, resolve_spec
from lit_effnet.models.baselines import BaselineSpec, baseline_spec, is_library_name
from lit_effnet.models.weights import load_pretrained, newest_checkpoint, read_checkpoint, weight_settings
from lit_effnet.training import LitEfficientNet

SUBCOMMANDS = ("fit", "validate", "test", "predict")
TRAINER_SHORTCUTS = ("devices", "accelerator", "precision", "num_nodes", "strategy")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = "checkpoints"
RUN_LAYOUT = "version_*/checkpoints/last.ckpt"
# Trainer options where an integer is a count of batches and a float a fraction (1 batch vs 100% at 1).
BATCH_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def resolve_config(value: str) -> Path:
    """A config path, or a name looked up as configs/NAME[.yaml] (here, then in the project)."""
    if Path(value).is_file():
        return Path(value)
    for base in (Path.cwd(), PROJECT_ROOT):
        for candidate in (base / "configs" / value, base / "configs" / f"{value}.yaml"):
            if candidate.is_file():
                return candidate
    raise ConfigError(f"config {value!r} not found: no such file, and no configs/{value}[.yaml]")


def config_run_name(config: Path) -> str:
    """configs/transfer/cifar10.yaml -> 'transfer/cifar10'; other paths -> the file's stem."""
    for base in (Path.cwd() / "configs", PROJECT_ROOT / "configs"):
        try:
            return config.resolve().relative_to(base.resolve()).with_suffix("").as_posix()
        except ValueError:
            continue
    return config.stem


def expand_config(path: Path, seen: tuple[Path, ...] = ()) -> list[str]:
    """`--config` values for one config file: its `extends` chain first (paths), then the file itself."""
    if path.resolve() in seen:
        raise ConfigError(f"config {path}: `extends` loops back to {path.name}")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path}: not valid YAML ({err})") from None
    bases = content.pop("extends", None) if isinstance(content, dict) else None
    if bases is None:
        return [str(path)]
    values = []
    for base in [bases] if isinstance(bases, str) else bases:
        values += expand_config(resolve_config(base), (*seen, path.resolve()))
    return [*values, yaml.safe_dump(content)]  # the file's own keys, without `extends`, as a YAML string


def rewrite_argv(argv: Sequence[str]) -> tuple[list[str], str]:
    """Apply the shortcuts above; returns (LightningCLI argv, run name)."""
    ours = {"--config", "--pretrained", "--files", *(f"--{key}" for key in TRAINER_SHORTCUTS)}
    args: list[str] = []
    for arg in argv:  # "--config=x" -> "--config", "x" for the keys handled here
        key, sep, value = arg.partition("=")
        args += [key, value] if sep and key in ours else [arg]
    if not args or args[0] not in SUBCOMMANDS:
        args.insert(0, "fit")
    out, run_name = args[:1], "default"
    i = 1
    while i < len(args):
        arg = args[i]
        if arg not in ours:
            out.append(arg)
            i += 1
            continue
        values = []  # --files takes every value up to the next option; the others take one
        while i + 1 + len(values) < len(args) and not args[i + 1 + len(values)].startswith("--"):
            values.append(args[i + 1 + len(values)])
            if arg != "--files":
                break
        if not values:
            raise ConfigError(f"{arg} needs a value")
        i += 1 + len(values)
        value = values[0]
        if arg == "--files":
            out += ["--data.predict_files", json.dumps(values)]
        elif arg == "--pretrained":
            out += ["--model.pretrained", value]
        elif arg == "--config":
            path = resolve_config(value)
            # An overlay extends the first name: transfer/cifar10 + transfer/official -> transfer/cifar10+official
            run_name = config_run_name(path) if run_name == "default" else f"{run_name}+{path.stem}"
            for config in expand_config(path):
                out += [arg, config]
        else:
            out += [f"--trainer.{arg.removeprefix('--')}", value]
    return out, run_name


def batch_limits_given(args: Sequence[str]) -> dict[str, Any]:
    """The last value each BATCH_LIMITS key was given, as typed (configs in order, then the command line)."""
    given: dict[str, Any] = {}
    for flag, value in itertools.pairwise(args):
        if flag == "--config":
            text = Path(value).read_text() if Path(value).is_file() else value
            trainer = (yaml.safe_load(text) or {}).get("trainer") or {}
            given |= {key: trainer[key] for key in BATCH_LIMITS if key in trainer}
        elif flag.removeprefix("--trainer.") in BATCH_LIMITS:
            given[flag.removeprefix("--trainer.")] = yaml.safe_load(value)
    return given


def find_last_checkpoint(root: Path, run_name: str) -> tuple[Path, int] | None:
    """The newest ROOT/<run>/version_N/checkpoints/last.ckpt and its N, or None. A folder whose last.ckpt is
    missing (a kill between the writer's two renames) offers its last.prev.ckpt instead."""
    newest = newest_checkpoint(root / run_name, RUN_LAYOUT)
    orphan = newest_checkpoint(root / run_name, previous_version(RUN_LAYOUT).as_posix())
    if orphan is not None and orphan.with_name(Path(RUN_LAYOUT).name).exists():
        orphan = None
    candidates = [path for path in (newest, orphan) if path is not None]
    if not candidates:
        return None
    found = max(candidates, key=lambda path: path.stat().st_mtime)
    return found, int(found.parents[1].name.removeprefix("version_"))


def check_checkpoint(path: str) -> None:
    """Fail before anything starts when --ckpt_path is missing, unreadable or not a Lightning checkpoint."""
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"--ckpt_path {err}") from None
    missing = [key for key in ("state_dict", "hyper_parameters") if key not in checkpoint]
    if missing:
        raise CheckpointError(f"--ckpt_path {path}: not a lit-effnet checkpoint (no {missing[0]})")


def readable_or_previous(path: Path) -> Path:
    """`path`, or where it cannot be read, the version it replaced (last.prev.ckpt), said in one line."""
    try:
        check_checkpoint(str(path))
        return path
    except CheckpointError as err:
        previous = previous_version(path)
        if path.name.endswith(f"{PREVIOUS_SUFFIX}.ckpt") or not previous.is_file():
            raise
        check_checkpoint(str(previous))
        rank_zero_only(print)(f"warning: {one_line(err)}; resuming from the one before it, {previous}", file=sys.stderr)
        return previous


def check_accelerator(accelerator: Any) -> Any:
    """The accelerator as the Trainer will resolve it ("tpu" for XLA, also under "auto"); one that this machine
    lacks is refused in one line (Lightning's own check ends in a traceback, or in a missing-module error)."""
    from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator, XLAAccelerator

    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__
    if isinstance(accelerator, XLAAccelerator) or name in ("tpu", "xla"):
        if importlib.util.find_spec("torch_xla") is None:
            raise ConfigError(
                f"trainer.accelerator {name}: torch_xla is not installed (pip install the torch_xla release "
                f"that matches torch {torch.__version__}; `make test-xla` builds such an environment)"
            )
        if not XLAAccelerator.is_available():
            raise ConfigError(f"trainer.accelerator {name}: torch_xla finds no TPU on this machine")
        return "tpu"
    if name in ("gpu", "cuda") and not CUDAAccelerator.is_available() and not MPSAccelerator.is_available():
        raise ConfigError(f"trainer.accelerator {name}: no GPU on this machine (torch {torch.__version__} sees none)")
    if name == "mps" and not MPSAccelerator.is_available():
        raise ConfigError("trainer.accelerator mps: no Apple GPU (MPS) on this machine")
    if name == "auto" and XLAAccelerator.is_available():
        return "tpu"
    return accelerator


def xla_precision(precision: Any) -> Any:
    """What XLA runs for a precision: Lightning's XLA plugin has 32-true, 16-true and bf16-true, no autocast.

    The configs' bf16-mixed becomes 32-true, said in one line: weights, optimizer and EMA state stay float32 (in
    bf16-true an EMA step of (1 - 0.9999) x difference rounds away), and TPU matrix units multiply in bfloat16 at
    torch_xla's default matmul precision, which is what bf16 autocast buys on a GPU.
    """
    if str(precision) in ("bf16-mixed", "16-mixed", "bf16", "16"):
        rank_zero_info(
            f"precision {precision}: XLA has no autocast in Lightning; training in 32-true (float32 weights and "
            "state; on TPUs the matrix units multiply in bfloat16 by default). --precision bf16-true stores the "
            "weights in bfloat16 instead"
        )
        return "32-true"
    return precision


def set_collective_timeout(trainer: Trainer, minutes: float | None) -> None:
    """The DDP process group's timeout: how long a collective waits for a dead or stuck peer on another machine
    (on this machine RankWatch notices within a second). Lightning takes it only as a DDPStrategy argument, which
    a config that names no strategy cannot give."""
    from lightning.pytorch.strategies import DDPStrategy

    if minutes is None:
        return
    if minutes <= 0:
        raise ConfigError(f"collective_timeout must be > 0 minutes, got {minutes}")
    if isinstance(trainer.strategy, DDPStrategy):
        trainer.strategy._timeout = timedelta(minutes=minutes)


def resume_command(argv: Sequence[str]) -> str:
    """The command line that resumes this run: the same options, with --ckpt_path last."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            args.append(arg)
    return shlex.join(["python", "train.py", *args, "--ckpt_path", "last"])


class EffNetCLI(LightningCLI):
    """LightningCLI with optional `progressive` and `ema` callback groups and the class count taken from the data.

    Each group is off when its config says `null` (`ema: null`, `progressive: null`); `progressive: {num_stages:
    4}` turns it on, and `--progressive.schedule official` or `--ema.decay 0.999` then override its values.
    """

    def __init__(self, *args: Any, run_name: str = "default", **kwargs: Any) -> None:
        self.run_name = run_name
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ProgressiveLearning, "progressive", subclass_mode=True, required=False)
        parser.add_lightning_class_args(EMA, "ema", subclass_mode=True, required=False)
        parser.add_lightning_class_args(LastCheckpoint, "checkpoint")
        parser.add_argument(
            "--collective_timeout", type=float | None, default=None,
            help="minutes a DDP collective waits for a peer before the run fails (torch's default: 30)",
        )  # fmt: skip
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_argument("--print_schedule", action="store_true", help="print the progressive schedule and exit")
        logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": DEFAULT_ROOT}}
        parser.set_defaults({"trainer.logger": logger, "trainer.default_root_dir": DEFAULT_ROOT})

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        config = self.config.get(self.config.get("subcommand"), self.config)
        # jsonargparse reads Lightning's `int | float` as float: 1 (one batch) would become 1.0 (all batches).
        self.batch_counts = {k: v for k, v in batch_limits_given(args).items() if isinstance(v, int)}
        root = Path(config.trainer.default_root_dir or DEFAULT_ROOT)
        version = None
        if config.get("ckpt_path") in ("last", "auto"):
            found = find_last_checkpoint(root, self.run_name)
            if found is None and config.ckpt_path == "last":
                raise CheckpointError(f"--ckpt_path last: no {root}/{self.run_name}/{RUN_LAYOUT} to resume from")
            config.ckpt_path, version = (str(readable_or_previous(found[0])), found[1]) if found else (None, None)
        if config.get("ckpt_path"):
            check_checkpoint(config.ckpt_path)
        logger = config.trainer.logger
        if getattr(logger, "class_path", "").endswith("TensorBoardLogger"):
            # Runs live at DIR/<config>/version_N; a resume logs on into the version it continues.
            logger.init_args.save_dir, logger.init_args.name = str(root), self.run_name
            logger.init_args.version = version
        self.run_dir = root / self.run_name

    def _parse_ckpt_path(self) -> None:
        # Lightning 2.6 would overwrite the model's config with the checkpoint's hyperparameters; here the
        # command line and config stay what the run uses, and a checkpoint that does not fit fails loudly.
        return

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        if config.get("print_schedule"):
            rows = schedule_of(config)  # a JSON list, one stage per line
            print("[\n" + ",\n".join(" " + json.dumps(row) for row in rows) + "\n]")
            raise SystemExit(0)

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        # An optional callback group set to null (`ema: null`) must not reach the Trainer as None.
        callbacks = [callback for callback in callbacks if callback is not None]
        config.update(self.batch_counts)
        # The run's folder also receives Lightning's SLURM requeue checkpoints (hpc_ckpt_N.ckpt).
        config["default_root_dir"] = str(self.run_dir)
        accelerator = check_accelerator(config.get("accelerator", "auto"))
        if accelerator == "tpu":
            config["precision"] = xla_precision(config.get("precision"))
        disable_lightning_process_observer()  # RankWatch reports a dead rank instead (callbacks/ranks.py)
        try:
            trainer = super()._instantiate_trainer(config, callbacks)
        except (MisconfigurationException, ValueError) as err:  # Lightning's word on a device count, a strategy...
            if isinstance(err, LitEffnetError):
                raise
            raise ConfigError(f"trainer: {one_line(err)}") from None
        set_collective_timeout(trainer, self.config.get(self.subcommand, self.config).get("collective_timeout"))
        # The `checkpoint` group's LastCheckpoint after best_checkpoint(): Lightning's `checkpoint_callback` (and
        # with it ckpt_path="best") is the first ModelCheckpoint.
        last = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, LastCheckpoint)] + last
        if config.get("sync_batchnorm") and trainer.strategy.root_device.type != "cuda":
            # torch's SyncBatchNorm has no CPU kernel: say so now rather than as a traceback in the first step.
            raise ConfigError("trainer.sync_batchnorm: SyncBatchNorm layers only work with GPU modules (CUDA)")
        return trainer

    def before_test(self) -> None:
        self.trainer.callbacks.append(ErrorReport())

    def after_fit(self) -> None:
        best = self.trainer.checkpoint_callback  # the first ModelCheckpoint: best_checkpoint()
        if self.trainer.is_global_zero and best is not None and best.best_model_path:
            last = Path(best.best_model_path).with_name("last.ckpt")
            # A spawning launcher (ddp_spawn) hands the parent the best path but not its score.
            score = "" if best.best_model_score is None else f" {float(best.best_model_score):.4f}"
            print(f"best {best.monitor}{score}: {best.best_model_path}")
            print(f"last: {last} (resume with --ckpt_path last)")


def _spec_of(model: Any) -> VariantSpec | BaselineSpec:
    """The spec the model config builds, without building it (the largest variants stay cheap)."""
    kwargs = dict(model.model_kwargs or {})
    if is_library_name(model.name) and not model.pretrained:  # timm:NAME, torchvision:NAME (study --net)
        return baseline_spec(model.name, **kwargs)
    if model.pretrained:
        weights = load_pretrained(model.pretrained, source=model.pretrained_source, weights=model.pretrained_weights)
        return resolve_spec(weights.spec.name, **{**weight_settings(weights.spec), **kwargs})
    return resolve_spec(model.name, **kwargs)


def schedule_of(config: Any) -> list[dict[str, Any]]:
    """The stages a fit config trains with, one entry each (one for a config without progressive stages):
    `epochs` [first, last], `image_size`, `dropout`, `drop_path_rate`, `randaug_magnitude`, `mixup_alpha`,
    `cutmix_alpha`, with the data's and the model's own values where nothing is scheduled."""
    model, data, max_epochs = config.model, config.data, config.trainer.max_epochs
    spec = _spec_of(model)
    size = {None: spec.train_size, "eval": spec.eval_size}.get(data.image_size, data.image_size)
    own = {
        "image_size": size, "dropout": spec.dropout, "drop_path_rate": spec.drop_path_rate,
        "randaug_magnitude": data.randaug_magnitude or 0.0, "mixup_alpha": model.mixup_alpha or 0.0,
        "cutmix_alpha": model.cutmix_alpha or 0.0,
    }  # fmt: skip
    if config.get("progressive") is None:
        return [{"epochs": [0, max_epochs - 1 if max_epochs and max_epochs > 0 else None], **own}]
    progressive = ProgressiveLearning(**vars(config.progressive.init_args))
    schedule = progressive.resolve(spec.progressive_ranges(progressive.settings["rule"]), max_epochs)
    pinned = {  # what the run would refuse at setup (the receivers' checks, here without building anything)
        "image_size": ("data.image_size", data.image_size),
        "randaug_magnitude": ("data.randaug_magnitude", data.randaug_magnitude),
        "dropout": ("model.model_kwargs.dropout", (model.model_kwargs or {}).get("dropout")),
        "drop_path_rate": ("model.model_kwargs.drop_path_rate", (model.model_kwargs or {}).get("drop_path_rate")),
        "mixup_alpha": ("model.mixup_alpha", model.mixup_alpha),
        "cutmix_alpha": ("model.cutmix_alpha", model.cutmix_alpha),
    }
    for knob in schedule.scheduled():
        refuse_pinned(knob, *pinned[knob])
    return [{k: own[k] if v is None else v for k, v in row.items()} for row in schedule.describe(max_epochs)]


def run_callbacks(argv: Sequence[str]) -> list:
    """What every run has besides the config's groups: the best checkpoint (first, so Lightning's ckpt_path="best"
    finds it), per-batch seeding, the predictions' printer, and the dead-rank watch with this run's resume command."""
    return [best_checkpoint(), BatchSeeding(), TopKPrinter(), RankWatch(resume_command(argv))]


def configured(argv: Sequence[str]) -> EffNetCLI:
    """The model, data and trainer a `train.py fit` command line would build, without running anything."""
    args, run_name = rewrite_argv(argv)
    return EffNetCLI(
        LitEfficientNet,
        ImageDataModule,
        args=args[1:],  # without the subcommand
        run=False,
        run_name=run_name,
        seed_everything_default=0,
        trainer_defaults={"callbacks": run_callbacks(argv)},
        parser_kwargs={"exit_on_error": False},
        load_from_checkpoint_support=False,
    )


def export_command(argv: Sequence[str]) -> int:
    """`train.py export --config NAME --ckpt_path PATH|last --format F [--out FILE] [--weights ema|raw]`."""
    import argparse

    from lit_effnet.export import SUFFIXES, export_checkpoint

    parser = argparse.ArgumentParser(prog="python train.py export", description=export_command.__doc__)
    parser.add_argument("--config", required=True, help="the run's config (its name finds --ckpt_path last)")
    parser.add_argument("--ckpt_path", required=True, help="a .ckpt, a run folder, or last (the config's newest)")
    parser.add_argument("--format", required=True, choices=sorted(SUFFIXES))
    parser.add_argument("--out", help="the file to write; default: next to the checkpoint, model.<suffix>")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema", help="from a .ckpt (default: EMA)")
    parser.add_argument("--size", type=int, help="input size of the graph (default: the run's eval size)")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="the runs' folder (trainer.default_root_dir)")
    args = parser.parse_args(argv)
    run_name = config_run_name(resolve_config(args.config))
    path = Path(args.ckpt_path)
    if args.ckpt_path == "last":
        found = find_last_checkpoint(Path(args.root), run_name)
        if found is None:
            raise CheckpointError(f"--ckpt_path last: no {args.root}/{run_name}/{RUN_LAYOUT} to export")
        path = found[0]
    if path.is_dir():
        path = newest_checkpoint(path) or path
    size = args.size
    if size is None and path.suffix == ".ckpt":  # the size the run evaluated at, when its data set one
        size = (read_checkpoint(path).get("datamodule_hyper_parameters") or {}).get("eval_size")
    out = Path(args.out) if args.out else path.with_name(f"model-{args.format}{SUFFIXES[args.format]}")
    result = export_checkpoint(path, args.format, out, args.weights, size=size)
    print(result.summary)
    return 0


def user_error(err: BaseException) -> BaseException | None:
    """The user mistake behind `err`: ours, or the command line's; jsonargparse wraps what a class's
    __init__ raises while it instantiates a group, so the chain of causes is searched too."""
    from jsonargparse import ArgumentError

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, (LitEffnetError, ArgumentError)):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def one_line(err: BaseException) -> str:
    """An error message on one line; for errors re-raised from DataLoader workers, the original's."""
    text = str(err).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def quiet() -> None:
    """Keep the console to progress, stage lines and results: no advertising tips, no library deprecations."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    # We pass the rewritten sys.argv as `args` on purpose; Lightning warns about that combination.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # num_workers 0 is deliberate
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in record.getMessage()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet()
    try:
        if argv[:1] == ["export"]:
            return export_command(argv[1:])
        if argv[:1] == ["shard"]:
            from lit_effnet.data.shards import shard_command

            return shard_command(argv[1:])
        args, run_name = rewrite_argv(argv)
        EffNetCLI(
            LitEfficientNet,
            ImageDataModule,
            args=args,
            run_name=run_name,
            seed_everything_default=0,
            trainer_defaults={"callbacks": run_callbacks(argv)},
            save_config_kwargs={"overwrite": True},
            # Hyperparameters as LitEfficientNet saves them (after --pretrained: the architecture the weights fix,
            # not the path), so load_from_checkpoint and a resume rebuild the model without the weights file.
            load_from_checkpoint_support=False,
            parser_kwargs={"exit_on_error": False},
        )
    except Exception as err:
        mistake = user_error(err)
        if mistake is None or os.environ.get("LIT_EFFNET_TRACEBACK"):
            raise
        print(f"error: {one_line(mistake)}", file=sys.stderr)
        return 2
    return 0
