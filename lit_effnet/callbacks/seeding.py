"""Per-epoch seeding, so that a resumed run repeats whole epochs exactly."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class EpochSeeding(Callback):
    """Seeds torch, numpy and random at every epoch start from (seed, epoch, rank).

    Data order and augmentation already depend only on (seed, epoch, index); this makes dropout,
    stochastic depth and mixup do the same, so an epoch replayed after a resume is bit-identical on CPU.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        state = np.random.SeedSequence([seed, trainer.current_epoch, trainer.global_rank]).generate_state(1)[0]
        torch.manual_seed(int(state))
        np.random.seed(int(state))
        random.seed(int(state))
