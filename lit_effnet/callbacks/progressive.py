"""The callback that applies a ProgressiveSchedule to the live run."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lit_effnet.training.progressive import ProgressiveSchedule, StageSettings


class ProgressiveLearning(Callback):
    """Per-stage image size, dropout, RandAugment magnitude and mixup alpha (EfficientNetV2 Algorithm 1).

    The stage is always derived from `trainer.current_epoch` (never from a counter a resume would
    lose). Image size and RandAugment magnitude reach the data through `ImageDataModule`, which asks
    `stage_settings` when Lightning requests the train loader (before `on_train_epoch_start`);
    dropout and mixup alpha are set here on the live module before the stage's first batch.
    With `num_stages=1` training uses the last values throughout (progressive learning off); a value
    set to None is not scheduled, and the model's or data's own setting applies.
    """

    def __init__(
        self,
        num_stages: int = 4,
        image_size: tuple[int, int] | None = (128, 300),
        dropout: tuple[float, float] | None = (0.1, 0.3),
        randaug_magnitude: tuple[float, float] | None = (5.0, 10.0),
        mixup_alpha: tuple[float, float] | None = (0.0, 0.0),
        size_multiple: int = 8,
    ) -> None:
        def pair(value):
            return None if value is None else tuple(value)

        self.schedule = ProgressiveSchedule(
            num_stages=num_stages,
            image_size=pair(image_size),
            dropout=pair(dropout),
            randaug_magnitude=pair(randaug_magnitude),
            mixup_alpha=pair(mixup_alpha),
            size_multiple=size_multiple,
        )
        self._announced_stage: int | None = None

    def _max_epochs(self, trainer: Trainer) -> int | None:
        if self.schedule.num_stages > 1 and (trainer.max_epochs is None or trainer.max_epochs < 1):
            raise ValueError("progressive learning splits trainer.max_epochs into stages: set trainer.max_epochs")
        return trainer.max_epochs

    def stage_settings(self, trainer: Trainer) -> StageSettings:
        """The settings of the stage the trainer's current epoch belongs to."""
        return self.schedule.settings(self.schedule.stage_at(trainer.current_epoch, self._max_epochs(trainer)))

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.schedule.stage_at(0, self._max_epochs(trainer))  # fail fast on too few epochs
        if self.schedule.num_stages > 1:
            if trainer.reload_dataloaders_every_n_epochs not in (0, 1):
                rank_zero_warn("progressive learning sets reload_dataloaders_every_n_epochs=1")
            # The DataModule returns its cached loader unless the stage changed, so this costs nothing.
            trainer.reload_dataloaders_every_n_epochs = 1

    def _apply(self, trainer: Trainer, pl_module: LightningModule) -> StageSettings:
        settings = self.stage_settings(trainer)
        net = getattr(pl_module, "net", pl_module)
        if settings.dropout is not None and hasattr(net, "set_dropout"):
            net.set_dropout(settings.dropout)
        if settings.mixup_alpha is not None and hasattr(pl_module, "set_mixup_alpha"):
            pl_module.set_mixup_alpha(settings.mixup_alpha)
        return settings

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A resume in the middle of an epoch skips on_train_epoch_start; apply the stage here too.
        self._apply(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        settings = self._apply(trainer, pl_module)
        # The values in force, whether this schedule or the model/data set them.
        image_size, magnitude = (
            trainer.datamodule.train_stage()
            if hasattr(trainer.datamodule, "train_stage")
            else (
                settings.image_size,
                settings.randaug_magnitude,
            )
        )
        net = getattr(pl_module, "net", pl_module)
        values = {
            "train/stage": settings.stage,
            "train/image_size": image_size,
            "train/dropout": getattr(net, "dropout_rate", settings.dropout),
            "train/randaug_magnitude": magnitude,
            "train/mixup_alpha": getattr(pl_module, "mixup_alpha", settings.mixup_alpha),
        }
        for key, value in values.items():
            if value is not None:
                pl_module.log(key, float(value), on_step=False, on_epoch=True)
        if settings.stage != self._announced_stage:
            self._announce(trainer, settings.stage, values)

    def _announce(self, trainer: Trainer, stage: int, values: dict[str, float | None]) -> None:
        """One console line per stage, where the user watches the curve."""
        self._announced_stage = stage
        last = self.schedule.num_stages - 1
        shown = ", ".join(
            f"{k.removeprefix('train/')} {v:g}" for k, v in values.items() if k != "train/stage" and v is not None
        )
        note = ""
        if stage < last:
            note = (
                "; val/acc1 is measured at the eval size with BN statistics of the train size, so it stays"
                " low until the last stage: expected, not a bug"
            )
        rank_zero_info(
            f"progressive learning: stage {stage + 1}/{last + 1} from epoch {trainer.current_epoch}: {shown}{note}"
        )
