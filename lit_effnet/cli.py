"""`python train.py [fit|validate|test|predict] --config NAME [--dotted.key value ...]` (LightningCLI).

On top of LightningCLI this adds only what a config-driven research workflow needs:
- `--config NAME` is looked up in configs/ (with or without .yaml) when it is not a path;
- `fit` is the default subcommand; `--devices/--accelerator/--precision/--num_nodes/--strategy` are
  short for `--trainer.<same>`, `--pretrained` for `--model.pretrained`, and `--files A B ...` for
  `--data.predict_files [A, B, ...]`;
- runs log and checkpoint to checkpoints/<config>/version_N/, and `--ckpt_path last` resumes the
  newest last.ckpt there, logging on into the same version (`--ckpt_path auto`: the same if there is
  one, else a fresh start, for requeued cluster jobs);
- a bad command (unknown key or file, wrong type, missing data, mismatching weights) prints one
  line naming the culprit and exits 2; LIT_EFFNET_TRACEBACK=1 shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from lit_effnet.callbacks import EMA, ProgressiveLearning
from lit_effnet.callbacks.checkpoint import AtomicCheckpointIO, best_checkpoint, last_checkpoint
from lit_effnet.callbacks.predictions import TopKPrinter
from lit_effnet.callbacks.seeding import EpochSeeding
from lit_effnet.data import CorruptImageError, DatasetNotFoundError, ImageDataModule
from lit_effnet.models.weights import WeightsMismatchError
from lit_effnet.training import LitEfficientNet
from lit_effnet.training.module import NonFiniteLossError
from lit_effnet.training.transfer import read_checkpoint

SUBCOMMANDS = ("fit", "validate", "test", "predict")
TRAINER_SHORTCUTS = ("devices", "accelerator", "precision", "num_nodes", "strategy")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_ROOT = Path("checkpoints")


class CommandError(ValueError):
    """A command-line mistake detected before LightningCLI parses (unknown config, nothing to resume)."""


def resolve_config(value: str) -> Path:
    """A config path, or a name looked up as configs/NAME[.yaml] (here, then in the project)."""
    if Path(value).is_file():
        return Path(value)
    for base in (Path.cwd(), PROJECT_ROOT):
        for candidate in (base / "configs" / value, base / "configs" / f"{value}.yaml"):
            if candidate.is_file():
                return candidate
    raise CommandError(f"config {value!r} not found: no such file, and no configs/{value}[.yaml]")


def config_run_name(config: Path) -> str:
    """configs/transfer/cifar10.yaml -> 'transfer/cifar10'; other paths -> the file's stem."""
    for base in (Path.cwd() / "configs", PROJECT_ROOT / "configs"):
        try:
            return config.resolve().relative_to(base.resolve()).with_suffix("").as_posix()
        except ValueError:
            continue
    return config.stem


def find_last_checkpoint(run_name: str, root: Path = CHECKPOINT_ROOT) -> tuple[Path, int]:
    """The newest checkpoints/<run>/version_N/checkpoints/last.ckpt and its N."""
    candidates = sorted((root / run_name).glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise CommandError(f"--ckpt_path last: no {root}/{run_name}/version_*/checkpoints/last.ckpt to resume from")
    newest = candidates[-1]
    return newest, int(newest.parents[1].name.removeprefix("version_"))


def rewrite_argv(argv: Sequence[str]) -> tuple[list[str], str, int | None]:
    """Apply the shortcuts above; returns (LightningCLI argv, run name, logger version to resume into)."""
    ours = {"--config", "--ckpt_path", "--pretrained", "--files", *(f"--{key}" for key in TRAINER_SHORTCUTS)}
    args: list[str] = []
    for arg in argv:  # "--config=x" -> "--config", "x" for the keys handled here
        key, sep, value = arg.partition("=")
        args += [key, value] if sep and key in ours else [arg]
    if not args or args[0] not in SUBCOMMANDS:
        args.insert(0, "fit")
    out, run_name, resume_last = args[:1], "default", None
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
            raise CommandError(f"{arg} needs a value")
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
            out += [arg, str(path)]
        elif arg == "--ckpt_path":
            resume_last = value if value in ("last", "auto") else None
            out += [arg, value]
        else:
            out += [f"--trainer.{arg.removeprefix('--')}", value]
    version = None
    if resume_last:
        at = out.index("--ckpt_path")
        try:
            path, version = find_last_checkpoint(run_name)
            out[at + 1] = str(path)
        except CommandError:
            if resume_last == "last":
                raise
            del out[at : at + 2]  # auto, and nothing to resume: a fresh run
    return out, run_name, version


class EffNetCLI(LightningCLI):
    """LightningCLI with `progressive.*` and `ema.*` groups and the class count taken from the data.

    EMA is off unless a config sets `ema: {class_path: lit_effnet.callbacks.EMA, init_args: {...}}` (or the
    command line says `--ema EMA`); `--ema.decay 0.999` then overrides it and `--ema null` turns it off.
    """

    def __init__(self, *args, run_name: str = "default", logger_version: int | None = None, **kwargs) -> None:
        self.run_name, self.logger_version = run_name, logger_version
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ProgressiveLearning, "progressive")
        parser.add_lightning_class_args(EMA, "ema", subclass_mode=True, required=False)
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        logger = {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(CHECKPOINT_ROOT), "name": self.run_name, "version": self.logger_version},
        }
        # default_root_dir: where Lightning's SLURM auto-requeue writes (and finds) its hpc_ckpt_N.ckpt.
        parser.set_defaults(
            {"trainer.logger": logger, "trainer.default_root_dir": str(CHECKPOINT_ROOT / self.run_name)}
        )

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        # An optional callback group set to null (`ema: null`, the default) must not reach the Trainer as None.
        callbacks = [callback for callback in callbacks if callback is not None]
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            config["plugins"] = [*plugins, AtomicCheckpointIO()]  # no truncated last.ckpt after a crash
        return super()._instantiate_trainer(config, callbacks)

    def after_fit(self) -> None:
        best = self.trainer.checkpoint_callback  # the first ModelCheckpoint: best_checkpoint()
        if self.trainer.is_global_zero and best is not None and best.best_model_path:
            last = Path(best.best_model_path).with_name("last.ckpt")
            print(f"best {best.monitor} {float(best.best_model_score):.4f}: {best.best_model_path}")
            print(f"last: {last} (resume with --ckpt_path last)")


# Mistakes in the command, the config or the data: one line, exit 2. Anything else is a bug: traceback.
USER_ERRORS = (
    CommandError, DatasetNotFoundError, CorruptImageError, WeightsMismatchError, NonFiniteLossError, ValueError,
    OSError,
)  # fmt: skip


def check_checkpoint(path: str) -> None:
    """Fail before anything starts when --ckpt_path is missing, unreadable or not a Lightning checkpoint."""
    if not Path(path).is_file():
        raise CommandError(f"--ckpt_path {path}: no such file")
    try:
        checkpoint = read_checkpoint(path)
    except WeightsMismatchError as err:
        raise CommandError(f"--ckpt_path {err}") from None
    missing = [key for key in ("state_dict", "hyper_parameters") if key not in checkpoint]
    if missing:
        raise CommandError(f"--ckpt_path {path}: not a lit-effnet checkpoint (no {missing[0]})")


def one_line(err: BaseException) -> str:
    """An error message on one line; for errors re-raised from DataLoader workers, the original's."""
    text = str(err).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from jsonargparse import ArgumentError

    # We pass the rewritten sys.argv as `args` on purpose; Lightning warns about that combination.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")

    try:
        args, run_name, version = rewrite_argv(sys.argv[1:] if argv is None else argv)
        if "--ckpt_path" in args:
            check_checkpoint(args[args.index("--ckpt_path") + 1])
        EffNetCLI(
            LitEfficientNet,
            ImageDataModule,
            args=args,
            run_name=run_name,
            logger_version=version,
            seed_everything_default=0,
            trainer_defaults={"callbacks": [best_checkpoint(), last_checkpoint(), EpochSeeding(), TopKPrinter()]},
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
        )
    except (ArgumentError, *USER_ERRORS) as err:
        if os.environ.get("LIT_EFFNET_TRACEBACK"):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    return 0
