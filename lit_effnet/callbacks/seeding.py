"""Per-batch seeding, so that a run resumed anywhere, even in the middle of an epoch, repeats the same draws."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def batch_seed(seed: int, epoch: int, batch_idx: int, rank: int) -> int:
    """The seed of one training batch's random draws: a function of (seed, epoch, batch, rank) only."""
    return int(np.random.SeedSequence([seed, epoch, batch_idx, rank]).generate_state(1)[0])


class BatchSeeding(Callback):
    """Seeds torch, numpy and random before every training batch from (seed, epoch, batch index, rank).

    Data order and augmentation already depend only on (seed, epoch, index); this makes dropout, stochastic
    depth and mixup do the same, so a run resumed from a checkpoint written in the middle of an epoch draws
    what the uninterrupted run drew (bit-identical on CPU). The batch index, not the optimizer step, so the
    micro-batches of one accumulated step draw differently. Seeding costs microseconds and reads no device.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        state = batch_seed(seed, trainer.current_epoch, batch_idx, trainer.global_rank)
        torch.manual_seed(state)
        np.random.seed(state)
        random.seed(state)
