"""Train only the classifier for the first steps of a fine-tuning (or throughout: a linear probe)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn


class FreezeBackbone(Callback):
    """For `steps` optimizer steps (-1: always) everything but the classifier keeps its weights and BN statistics.

    The backbone's parameters stop requiring gradients (so the optimizer leaves them, and backward stops at
    the head) and its modules run in eval mode (BN uses and keeps its loaded statistics); the classifier trains.
    Needs `pl_module.classifier()` (LitEfficientNet: ours, timm's and torchvision's heads) and `pl_module.net`.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self._frozen = False

    def _frozen_now(self, trainer: Trainer) -> bool:
        return self.steps < 0 or trainer.global_step < self.steps

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._head = {id(p) for p in pl_module.classifier().parameters()}  # fails at setup on an unknown head

    def _set(self, pl_module: LightningModule, frozen: bool) -> None:
        net: nn.Module = pl_module.net
        for param in net.parameters():
            if id(param) not in self._head:
                param.requires_grad_(not frozen)
        net.train(not frozen)
        pl_module.classifier().train()
        self._frozen = frozen

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        frozen = self._frozen_now(trainer)
        # Lightning puts the module in train mode at every epoch start: re-freeze BN then, too.
        if frozen or self._frozen:
            self._set(pl_module, frozen)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._frozen:
            self._set(pl_module, False)
