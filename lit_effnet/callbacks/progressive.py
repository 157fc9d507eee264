"""The callback that applies a ProgressiveSchedule to the live run."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from lit_effnet.training.progressive import ProgressiveSchedule, StageSettings


class ProgressiveLearning(Callback):
    """Per-stage image size, dropout, RandAugment magnitude and mixup alpha (EfficientNetV2 Algorithm 1).

    The stage is always derived from `trainer.current_epoch` (never from a counter a resume would
    lose). Image size and RandAugment magnitude reach the data through `ImageDataModule`, which asks
    `stage_settings` when Lightning requests the train loader (before `on_train_epoch_start`);
    dropout and mixup alpha are set here on the live module before the stage's first batch.
    With `num_stages=1` training uses the last values throughout (progressive learning off).
    """

    def __init__(
        self,
        num_stages: int = 4,
        image_size: tuple[int, int] = (128, 300),
        dropout: tuple[float, float] = (0.1, 0.3),
        randaug_magnitude: tuple[float, float] = (5.0, 10.0),
        mixup_alpha: tuple[float, float] = (0.0, 0.0),
        size_multiple: int = 8,
    ) -> None:
        self.schedule = ProgressiveSchedule(
            num_stages=num_stages,
            image_size=tuple(image_size),
            dropout=tuple(dropout),
            randaug_magnitude=tuple(randaug_magnitude),
            mixup_alpha=tuple(mixup_alpha),
            size_multiple=size_multiple,
        )

    @staticmethod
    def _max_epochs(trainer: Trainer) -> int:
        if trainer.max_epochs is None or trainer.max_epochs < 1:
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
        if hasattr(net, "set_dropout"):
            net.set_dropout(settings.dropout)
        if hasattr(pl_module, "set_mixup_alpha"):
            pl_module.set_mixup_alpha(settings.mixup_alpha)
        return settings

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A resume in the middle of an epoch skips on_train_epoch_start; apply the stage here too.
        self._apply(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        settings = self._apply(trainer, pl_module)
        values = {
            "train/stage": settings.stage,
            "train/image_size": settings.image_size,
            "train/dropout": settings.dropout,
            "train/randaug_magnitude": settings.randaug_magnitude,
            "train/mixup_alpha": settings.mixup_alpha,
        }
        for key, value in values.items():
            pl_module.log(key, float(value), on_step=False, on_epoch=True)
