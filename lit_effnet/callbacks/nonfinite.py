"""Stop (or skip the step) when the training loss is NaN or infinite, before the weights are touched."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lit_effnet.errors import NonFiniteLossError


class NonFiniteLossGuard(Callback):
    """mode "stop": raise naming the step; "skip": drop that optimizer step and count it (train/skipped_steps).

    The check reads the loss on the host once per step (as AMP's GradScaler does), agreed over all ranks.
    A skipped step sets every gradient to None, so the optimizer leaves the weights and its state alone.
    """

    def __init__(self, mode: str = "stop") -> None:
        self.mode = mode
        self.skipped_steps = 0
        self._skip = False

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        finite = trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True)
        if finite:
            return
        if self.mode == "stop":
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {trainer.global_step}, epoch "
                f"{trainer.current_epoch}; the weights were not updated with it and last.ckpt holds the last "
                "finished epoch. Lower the LR (model.lr_per_256), or set model.nonfinite_loss=skip"
            )
        self._skip = True

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        if self._skip:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None
            self.skipped_steps += 1
            self._skip = False
        if self.mode == "skip":
            pl_module.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)
