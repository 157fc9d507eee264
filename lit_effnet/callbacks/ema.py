"""Exponential moving average of weights and BN buffers, with TF's decay warmup.

Built on Lightning's WeightAveraging (it swaps the average in for validation and checkpoints both sets of
weights); the update itself is ours and uses WeightAveraging's internals, so pyproject.toml pins Lightning's
minor version and tests/callbacks/test_ema.py pins the update against TF's formula computed by hand.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from torchmetrics import MetricCollection

from lit_effnet.errors import ConfigError
from lit_effnet.training.metrics import accuracy_metrics


def ema_decay(step: int, decay: float, warmup: bool = True) -> float:
    """TF ExponentialMovingAverage(num_updates=step): min(decay, (1 + step) / (10 + step)).

    Without the warmup a 0.9999 average is still ~37% initial weights after 10k steps (timm#188).
    """
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


class EMA(WeightAveraging):
    """Lightning's WeightAveraging with an EMA average that warms up (EMAWeightAveraging has none).

    As in Lightning, validation runs with the EMA weights (so `val/acc1` is the EMA model's),
    checkpoints hold the EMA weights in `state_dict` and the raw ones in `current_model_state`, and
    a resume restores both. The raw model's accuracy is logged as `val/acc1_raw`, `val/acc5_raw`,
    `val/acc1_per_class_raw`.
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
            raise ConfigError(f"ema.decay must be in [0, 1), got {decay}")
        super().__init__(device=device, use_buffers=True)
        self.decay, self.warmup, self.update_every_n_steps = decay, warmup, update_every_n_steps
        self.validate_raw = validate_raw
        self._decay_now = decay
        self._raw_metrics: MetricCollection | None = None
        self._swapped = False  # EMA weights in the live module (during validation)
        self._pairs: tuple[list, list, list, list] | None = None

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx % self.update_every_n_steps == 0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # As WeightAveraging's, without AveragedModel.update_parameters, which reads `n_averaged == 0` on the
        # host every step. TF's EMA starts from the initial weights and always interpolates: no first copy.
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=step_idx):
            self._decay_now = ema_decay(trainer.global_step, self.decay, self.warmup)  # on the host: no sync
            self._update_average(pl_module)
            self._latest_update_step = trainer.global_step

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._pairs = None

    def _update_average(self, pl_module: LightningModule) -> None:
        if self._pairs is None:  # EMA and live tensors, paired in registration order, split by dtype (once)
            average = self._average_model.module
            ema = [t.detach() for t in itertools.chain(average.parameters(), average.buffers())]
            live = [t.detach() for t in itertools.chain(pl_module.parameters(), pl_module.buffers())]
            floats = [(e, c) for e, c in zip(ema, live) if e.is_floating_point()]
            counters = [(e, c) for e, c in zip(ema, live) if not e.is_floating_point()]  # BN num_batches_tracked
            self._pairs = (
                [e for e, _ in floats], [c for _, c in floats], [e for e, _ in counters], [c for _, c in counters],
            )  # fmt: skip
        ema_float, live_float, ema_counters, live_counters = self._pairs
        torch._foreach_lerp_(ema_float, live_float, 1.0 - self._decay_now)
        if ema_counters:
            # Copies, not the live tensors: on XLA a plain copy_ leaves the average sharing the live counters'
            # device buffers, which the next step can then not update in place (a graph of its own).
            torch._foreach_copy_(ema_counters, torch._foreach_add(live_counters, 0))
        self._average_model.n_averaged += 1  # on the device, for the checkpoint's averaging_state

    # -------------------------------------------------- the raw model's validation accuracy

    def _raw_module(self) -> LightningModule | None:
        # During validation Lightning has swapped the EMA weights into the live module and the raw ones
        # into its copy: that copy is the raw model.
        return self._average_model.module if self._average_model is not None else None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        self._swapped = self._average_model is not None
        raw = self._raw_module()
        if self.validate_raw and raw is not None and not trainer.sanity_checking:
            raw.eval()
            if self._raw_metrics is None:
                self._raw_metrics = accuracy_metrics(pl_module.hparams["num_classes"]).to(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        raw = self._raw_module()
        if self._raw_metrics is None or raw is None or trainer.sanity_checking:
            return
        images, targets = batch
        with torch.no_grad():
            self._raw_metrics.update(raw(images), targets)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._raw_metrics is not None and not trainer.sanity_checking:
            for name, value in self._raw_metrics.compute().items():
                pl_module.log(f"val/{name}_raw", value, on_epoch=True)
            self._raw_metrics.reset()
        super().on_validation_epoch_end(trainer, pl_module)
        self._swapped = False

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Interrupted during validation: put the raw weights back before a checkpoint is written.
        if self._swapped:
            self._swap_models(pl_module)
            self._swapped = False
