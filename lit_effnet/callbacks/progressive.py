"""Progressive learning with adaptive regularization (EfficientNetV2 section 4, Algorithm 1), in one place.

Data flows one way: the pure `ProgressiveSchedule` -> the `ProgressiveLearning` callback -> what it drives,
through two small interfaces checked at setup:
- the data (`StagedData`, e.g. `ImageDataModule`): image size and RandAugment magnitude;
- the LightningModule (`StagedModel`, e.g. `LitEfficientNet`): its network's dropout and drop path, its
  loss's mixup and CutMix alpha.
A scheduled knob that nothing can receive, or that the user also set elsewhere, stops the run at setup
with one line naming it.

A knob left unset (None) takes the model's own ranges (its spec row: the V2 paper's Table 6 for V2-S/M/L,
the official code's for the rest of V2) or, where the model has none, is not scheduled.

Two rules (facts 2, 3):
- "paper": stage i of M takes first + (last - first) * i / (M - 1); stage 0 trains at exactly the first
  values, stage M-1 at exactly the targets; the earlier sizes are rounded to a multiple of 8.
- "official" (automl efficientnetv2/main.py): stage i trains at int(ibase + (S - ibase) * (i + 1) / M), with
  ibase the first size (128) and S the last, so V2-S trains at 171/214/257/300; RandAugment, mixup and CutMix
  follow np.linspace(first, last, M); dropout is not scheduled (the code computes that list and deletes it).
With one stage both train at the targets throughout.

Two modes: "stages" (Algorithm 1: M consecutive parts of the epochs) and "random_resize" (Table 13's second
setting): every optimizer step trains at one of the M stage sizes with that stage's regularization, drawn
as a pure function of (seed, step), so every DDP rank draws the same and a resume repeats the draws.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from lit_effnet.errors import ConfigError
from lit_effnet.models.specs import ProgressiveRanges, ScheduleRule

Mode = Literal["stages", "random_resize"]
Pair = tuple[float, float]
DATA_KNOBS = ("image_size", "randaug_magnitude")
MODEL_KNOBS = ("dropout", "drop_path_rate", "mixup_alpha", "cutmix_alpha")
KNOBS = DATA_KNOBS + MODEL_KNOBS


@dataclass(frozen=True, kw_only=True)
class StageSettings:
    """What one stage trains with; None: not scheduled (the data's or the model's own setting applies)."""

    stage: int
    image_size: int | None = None
    dropout: float | None = None
    drop_path_rate: float | None = None
    randaug_magnitude: float | None = None
    mixup_alpha: float | None = None
    cutmix_alpha: float | None = None

    def values(self, knobs: Sequence[str] = KNOBS) -> dict[str, float]:
        """The scheduled values among `knobs`."""
        return {k: getattr(self, k) for k in knobs if getattr(self, k) is not None}


def _round_to_multiple(value: float, multiple: int) -> int:
    """The nearest multiple, ties upwards (212 -> 216 for 8), as one rounds by hand."""
    return max(multiple, int(value / multiple + 0.5) * multiple)


@dataclass(frozen=True, kw_only=True)
class ProgressiveSchedule:
    """(first, last) pairs over `num_stages` equal parts of the epochs; a pure function of the stage."""

    num_stages: int = 4
    rule: ScheduleRule = "paper"
    mode: Mode = "stages"
    image_size: tuple[int, int] | None = None
    dropout: Pair | None = None
    drop_path_rate: Pair | None = None
    randaug_magnitude: Pair | None = None
    mixup_alpha: Pair | None = None
    cutmix_alpha: Pair | None = None
    size_multiple: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_stages < 1:
            raise ConfigError(f"progressive.num_stages must be >= 1, got {self.num_stages}")
        for key in KNOBS:
            pair = getattr(self, key)
            if pair is not None and len(pair) != 2:
                raise ConfigError(f"progressive.{key} must be [first, last], got {list(pair)}")
        if self.mode == "random_resize" and self.image_size is not None:
            sizes = [s.image_size for s in self.stages()]
            if len(set(sizes)) < 2 or len(set(sizes)) != len(sizes):
                raise ConfigError(
                    f"progressive.mode random_resize draws among the stage sizes, which must be 2 or more distinct "
                    f"sizes (progressive.image_size, progressive.num_stages); got {sizes}"
                )

    @classmethod
    def resolve(cls, defaults: ProgressiveRanges | None, **settings: Any) -> ProgressiveSchedule:
        """The schedule with every knob left None taken from the model's ranges (`defaults`), when it has one."""
        for key in KNOBS:
            if settings.get(key) is None and defaults is not None:
                settings[key] = getattr(defaults, key, None)
            if settings.get(key) is not None:
                settings[key] = tuple(settings[key])
        schedule = cls(**settings)
        if schedule.mode == "random_resize" and schedule.image_size is None:
            raise ConfigError("progressive.mode random_resize needs progressive.image_size (the model has no ranges)")
        return schedule

    def scheduled(self) -> tuple[str, ...]:
        return tuple(k for k in KNOBS if getattr(self, k) is not None)

    def stage_at(self, epoch: int, max_epochs: int | None) -> int:
        """Stage of a 0-based epoch: max_epochs split into num_stages near-equal parts."""
        if self.num_stages == 1 or self.mode == "random_resize":
            return 0  # also for step-based runs (max_epochs -1)
        if max_epochs is None or max_epochs < self.num_stages:
            raise ConfigError(
                f"trainer.max_epochs ({max_epochs}) must be at least progressive.num_stages ({self.num_stages})"
            )
        return min(self.num_stages - 1, epoch * self.num_stages // max_epochs)

    def _value(self, key: str, stage: int) -> float | None:
        pair = getattr(self, key)
        if pair is None:
            return None
        first, last = pair
        if self.num_stages == 1:
            return float(last)
        return float(first + (last - first) * stage / (self.num_stages - 1))  # = np.linspace(first, last, M)[i]

    def _size(self, stage: int) -> int | None:
        if self.image_size is None:
            return None
        first, last = self.image_size
        if self.num_stages == 1 or stage == self.num_stages - 1:
            return int(last)
        if self.rule == "official":
            return int(first + (last - first) * (stage + 1) / self.num_stages)
        return _round_to_multiple(first + (last - first) * stage / (self.num_stages - 1), self.size_multiple)

    def settings(self, stage: int) -> StageSettings:
        return StageSettings(stage=stage, image_size=self._size(stage), **{k: self._value(k, stage) for k in KNOBS[1:]})

    def stages(self) -> list[StageSettings]:
        return [self.settings(s) for s in range(self.num_stages)]

    def random_stage(self, step: int) -> int:
        """random_resize: the stage whose size and regularization optimizer step `step` trains with."""
        return int(np.random.default_rng([self.seed, step]).integers(self.num_stages))

    def describe(self, max_epochs: int | None) -> list[dict[str, Any]]:
        """One entry per stage (per size under random_resize): its epochs [first, last] and values."""
        last_epoch = max_epochs - 1 if max_epochs and max_epochs > 0 else None
        rows = []
        for settings in self.stages():
            if self.mode == "random_resize" or self.num_stages == 1:
                epochs = [0, last_epoch]
            else:
                inside = [e for e in range(max_epochs) if self.stage_at(e, max_epochs) == settings.stage]
                epochs = [inside[0], inside[-1]]
            rows.append({"epochs": epochs, **{k: getattr(settings, k) for k in KNOBS}})
        return rows


# ------------------------------------------------------------------ what the callback drives


class TrainStage(NamedTuple):
    """What a train loader builds for one stage: image size and RandAugment magnitude (None: the data's own)."""

    image_size: int | None
    randaug_magnitude: float | None


class TrainStagePlan(Protocol):
    """What the data is handed: the stages its train loader serves, per epoch and per batch."""

    def stages_at(self, epoch: int) -> tuple[TrainStage, ...]:
        """The stages in use during `epoch` (one; all of them under random resize)."""

    def stage_of_batch(self, epoch: int, batch: int, batches_per_epoch: int) -> int:
        """Index into `stages_at(epoch)` of the stage that batch `batch` of `epoch` is built for."""


@runtime_checkable
class StagedData(Protocol):
    """Data whose train loader follows a plan (image size, RandAugment magnitude), e.g. ImageDataModule."""

    def follow(self, plan: TrainStagePlan, knobs: Sequence[str]) -> None:
        """Build train loaders from `plan` from now on; refuse (ConfigError) a knob the user set on the data."""


@runtime_checkable
class StagedModel(Protocol):
    """A LightningModule whose network regularization and loss mixing are set per stage, e.g. LitEfficientNet."""

    def progressive_ranges(self, rule: ScheduleRule) -> ProgressiveRanges | None:
        """The network's own ranges for `rule` (its spec row), or None."""

    def check_scheduled(self, knobs: Sequence[str]) -> None:
        """Refuse (ConfigError) knobs the network cannot receive or that the user set on the model."""

    def apply_stage(self, values: Mapping[str, float]) -> dict[str, float]:
        """Set dropout / drop_path_rate / mixup_alpha / cutmix_alpha; return the values now in force."""


@dataclass(frozen=True)
class _Plan:
    """The schedule as the data sees it."""

    schedule: ProgressiveSchedule
    max_epochs: int | None
    accumulate: int

    def _train_stage(self, settings: StageSettings) -> TrainStage:
        return TrainStage(settings.image_size, settings.randaug_magnitude)

    def stages_at(self, epoch: int) -> tuple[TrainStage, ...]:
        if self.schedule.mode == "random_resize":
            return tuple(self._train_stage(s) for s in self.schedule.stages())
        return (self._train_stage(self.schedule.settings(self.schedule.stage_at(epoch, self.max_epochs))),)

    def stage_of_batch(self, epoch: int, batch: int, batches_per_epoch: int) -> int:
        if self.schedule.mode != "random_resize":
            return 0
        # The optimizer step the batch belongs to, counting whole epochs: equal on all ranks, and after a resume.
        return self.schedule.random_stage((epoch * batches_per_epoch + batch) // self.accumulate)


class ProgressiveLearning(Callback):
    """Per-stage image size, dropout, drop path, RandAugment magnitude, mixup and CutMix alpha (V2 Algorithm 1).

    Args:
        num_stages: M; 1 trains at the targets throughout.
        schedule: "paper" (Table 6 and its linear rule) or "official" (automl's training loop), see the module.
        mode: "stages" or "random_resize" (a stage size drawn per optimizer step).
        image_size, dropout, drop_path_rate, randaug_magnitude, mixup_alpha, cutmix_alpha: [first, last];
            None: the model's own range for `schedule`, or not scheduled.
        size_multiple: earlier stage sizes of the paper rule are rounded to this (fewer torch.compile graphs).
        seed: of the random_resize draws; None: the `seed_everything` seed.
    """

    def __init__(
        self,
        num_stages: int = 4,
        schedule: ScheduleRule = "paper",
        mode: Mode = "stages",
        image_size: tuple[int, int] | None = None,
        dropout: Pair | None = None,
        drop_path_rate: Pair | None = None,
        randaug_magnitude: Pair | None = None,
        mixup_alpha: Pair | None = None,
        cutmix_alpha: Pair | None = None,
        size_multiple: int = 8,
        seed: int | None = None,
    ) -> None:
        self.settings: dict[str, Any] = dict(
            num_stages=num_stages, rule=schedule, mode=mode, image_size=image_size, dropout=dropout,
            drop_path_rate=drop_path_rate, randaug_magnitude=randaug_magnitude, mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha, size_multiple=size_multiple,
        )  # fmt: skip
        self.seed = seed
        self.schedule = ProgressiveSchedule(
            **{k: tuple(v) if k in KNOBS and v is not None else v for k, v in self.settings.items()}
        )  # checked now, completed at setup
        self.max_epochs: int | None = None
        self._stage_sizes: dict[int, int] = {}  # random_resize: image size -> stage
        self._applied_stage: int | None = None
        self._applied: dict[str, float] = {}
        self._announced_stage: int | None = None
        self._epoch_values: dict[str, list[float]] = {}  # what each batch of the epoch trained with, to log

    def resolve(self, defaults: ProgressiveRanges | None, max_epochs: int | None) -> ProgressiveSchedule:
        """The schedule with the network's ranges (`defaults`) in the unset knobs, checked against max_epochs."""
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        schedule = ProgressiveSchedule.resolve(defaults, **self.settings, seed=seed)
        if schedule.num_stages > 1 and schedule.mode == "stages" and (max_epochs is None or max_epochs < 1):
            raise ConfigError("progressive learning splits trainer.max_epochs into stages: set trainer.max_epochs")
        schedule.stage_at(0, max_epochs)  # fail fast on too few epochs
        return schedule

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.max_epochs = trainer.max_epochs
        rule = self.settings["rule"]
        defaults = pl_module.progressive_ranges(rule) if isinstance(pl_module, StagedModel) else None
        self.schedule = self.resolve(defaults, trainer.max_epochs)
        scheduled = self.schedule.scheduled()
        data_knobs = [k for k in scheduled if k in DATA_KNOBS]
        model_knobs = [k for k in scheduled if k in MODEL_KNOBS]
        if model_knobs:
            if not isinstance(pl_module, StagedModel):
                raise ConfigError(
                    f"progressive.{model_knobs[0]} is scheduled, but {type(pl_module).__name__} cannot receive it "
                    "(use lit_effnet.training.LitEfficientNet, which wraps any classifier)"
                )
            pl_module.check_scheduled(model_knobs)
        if data_knobs:
            datamodule = trainer.datamodule
            if not isinstance(datamodule, StagedData):
                raise ConfigError(
                    f"progressive.{data_knobs[0]} is scheduled, but the data ({type(datamodule).__name__}) cannot "
                    "receive it (use lit_effnet.data.ImageDataModule)"
                )
            datamodule.follow(_Plan(self.schedule, trainer.max_epochs, trainer.accumulate_grad_batches), data_knobs)
        if self.schedule.mode == "random_resize":
            self._stage_sizes = {s.image_size: s.stage for s in self.schedule.stages()}
        elif self.schedule.num_stages > 1:
            # Lightning asks the data for the train loader each epoch; ImageDataModule returns its cached
            # loader unless the stage changed, so this costs nothing between stage boundaries.
            trainer.reload_dataloaders_every_n_epochs = 1
        self._applied_stage = None

    def _stage_of(self, trainer: Trainer, batch: Any) -> int:
        if self.schedule.mode == "random_resize":
            return self._stage_sizes[int(batch[0].shape[-1])]  # the size the loader built for this batch
        return self.schedule.stage_at(trainer.current_epoch, self.max_epochs)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        # Per batch, not per epoch: a resume in the middle of an epoch gets its stage before the first step.
        stage = self._stage_of(trainer, batch)
        settings = self.schedule.settings(stage)
        if stage != self._applied_stage:
            values = settings.values(MODEL_KNOBS)
            self._applied = pl_module.apply_stage(values) if values else {}
            self._applied_stage = stage
        logged = {"stage": stage, "image_size": int(batch[0].shape[-1]), **settings.values(DATA_KNOBS[1:])}
        for key, value in {**logged, **self._applied}.items():
            self._epoch_values.setdefault(key, []).append(float(value))

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_values = {}
        stage = self.schedule.stage_at(trainer.current_epoch, self.max_epochs)
        if stage != self._announced_stage:
            self._announce(trainer, stage)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The epoch's mean of each value, kept on the host and logged once: no tensor per batch on the device.
        for key, values in self._epoch_values.items():
            pl_module.log(f"train/{key}", sum(values) / len(values), on_step=False, on_epoch=True)

    def _announce(self, trainer: Trainer, stage: int) -> None:
        """One console line per stage, where the user watches the curve."""
        self._announced_stage = stage
        last = self.schedule.num_stages - 1
        if self.schedule.mode == "random_resize":
            sizes = ", ".join(str(s.image_size) for s in self.schedule.stages())
            rank_zero_info(f"progressive learning: random resize among {sizes} px, regularization following the size")
            return
        values = dataclasses.asdict(self.schedule.settings(stage))
        shown = ", ".join(f"{k} {v:g}" for k, v in values.items() if k != "stage" and v is not None)
        note = ""
        if stage < last:
            note = (
                "; val/acc1 is measured at the eval size with BN statistics of the train size, so it stays"
                " low until the last stage: expected, not a bug"
            )
        rank_zero_info(
            f"progressive learning: stage {stage + 1}/{last + 1} from epoch {trainer.current_epoch}: {shown}{note}"
        )
