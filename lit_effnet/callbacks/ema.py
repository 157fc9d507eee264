"""Exponential moving average of weights and BN buffers, with TF's decay warmup."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from torchmetrics.classification import MulticlassAccuracy


def ema_decay(step: int, decay: float, warmup: bool = True) -> float:
    """TF ExponentialMovingAverage(num_updates=step): min(decay, (1 + step) / (10 + step)).

    Without the warmup a 0.9999 average is still ~37% initial weights after 10k steps (timm#188).
    """
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


class EMA(WeightAveraging):
    """Lightning's WeightAveraging with an EMA average that warms up (EMAWeightAveraging has none).

    As in Lightning, validation runs with the EMA weights (so `val/acc1` is the EMA model's),
    checkpoints hold the EMA weights in `state_dict` and the raw ones in `current_model_state`, and
    a resume restores both. The raw model's accuracy is logged as `val/acc1_raw`, `val/acc5_raw`.
    """

    def __init__(
        self,
        decay: float = 0.9999,
        warmup: bool = True,
        update_every_n_steps: int = 1,
        validate_raw: bool = True,
        device: str | None = None,
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema.decay must be in [0, 1), got {decay}")
        super().__init__(device=device, use_buffers=True, multi_avg_fn=self._average)
        self.decay, self.warmup, self.update_every_n_steps = decay, warmup, update_every_n_steps
        self.validate_raw = validate_raw
        self._decay_now = decay
        self._raw_metrics: torch.nn.ModuleDict | None = None
        self._swapped = False  # EMA weights in the live module (during validation)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx % self.update_every_n_steps == 0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # The decay is computed on the host from the step count: no device sync.
        self._decay_now = ema_decay(trainer.global_step, self.decay, self.warmup)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if averaged and averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, 1.0 - self._decay_now)
        else:  # integer buffers (BN num_batches_tracked) are counters, not averaged
            torch._foreach_copy_(averaged, current)

    # -------------------------------------------------- the raw model's validation accuracy

    def _raw_net(self) -> torch.nn.Module | None:
        # During validation Lightning has swapped the EMA weights into the live module and the raw ones
        # into its copy: that copy's net is the raw model.
        model = self._average_model
        return getattr(model.module, "net", None) if model is not None else None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        self._swapped = self._average_model is not None
        raw = self._raw_net()
        if self.validate_raw and raw is not None and not trainer.sanity_checking:
            raw.eval()
            num_classes = pl_module.hparams.get("num_classes") or getattr(raw, "num_classes", None)
            if self._raw_metrics is None:
                self._raw_metrics = torch.nn.ModuleDict(
                    {
                        "acc1": MulticlassAccuracy(num_classes, top_k=1),
                        "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes)),
                    }
                ).to(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        raw = self._raw_net()
        if self._raw_metrics is None or raw is None or trainer.sanity_checking:
            return
        images, targets = batch
        with torch.no_grad():
            logits = raw(pl_module.prepare_images(images) if hasattr(pl_module, "prepare_images") else images)
        for metric in self._raw_metrics.values():
            metric.update(logits, targets)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._raw_metrics is not None and not trainer.sanity_checking:
            for name, metric in self._raw_metrics.items():
                pl_module.log(f"val/{name}_raw", metric.compute(), on_epoch=True)
                metric.reset()
        super().on_validation_epoch_end(trainer, pl_module)
        self._swapped = False

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Interrupted during validation: put the raw weights back before a checkpoint is written.
        if self._swapped:
            self._swap_models(pl_module)
            self._swapped = False
