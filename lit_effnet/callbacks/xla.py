"""Graph boundaries on an XLA device (TPU), so that each step compiles once and a graph seen before is reused.

torch_xla records operations lazily and compiles whatever is pending when it is made to run. Lightning marks a
step after each optimizer step and, on one device, nowhere else, so the graph of a step held whatever was pending
before it: the previous step's EMA update, except after validation, where validation had run it; at an epoch's
first step, Lightning's reset of its logged values; and a whole validation epoch was one graph. Each of those
made a step graph of its own, compiled at every epoch's first steps. Here a graph ends before every batch goes to
the device (`end_graph`, called by ImageDataModule.on_before_batch_transfer) and after every batch (the callback):
a step's graph is its batch's normalisation, forward, backward and optimizer step, the same at every step of an
image size; the EMA update is a graph of its own, the same for every size; each evaluation batch is one graph.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def end_graph(device: torch.device) -> None:
    """Run what is pending on an XLA device as a graph of its own (nothing elsewhere)."""
    if device.type == "xla":
        import torch_xla

        torch_xla.sync()


class XlaGraphBoundaries(Callback):
    """Ends a graph after every training, evaluation and prediction batch, on XLA devices only."""

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        # After EMA's update (a trainer callback, so before this one, a model callback).
        end_graph(pl_module.device)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        end_graph(pl_module.device)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        end_graph(pl_module.device)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        end_graph(pl_module.device)
