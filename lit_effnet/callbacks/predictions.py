"""Prints what `train.py predict` found: each file's top-5 classes with probabilities."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


class TopKPrinter(BasePredictionWriter):
    """One line per image: `path: label (p), label (p), ...` (class indices when no names are known)."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        datamodule = trainer.datamodule
        paths = datamodule.predict_paths() if hasattr(datamodule, "predict_paths") else None
        names = datamodule.class_names() if hasattr(datamodule, "class_names") else None
        for index, probs, classes in zip(
            prediction["index"].tolist(), prediction["probs"].tolist(), prediction["classes"].tolist()
        ):
            label = paths[index] if paths else index
            top = ", ".join(f"{names[c] if names else c} ({p:.3f})" for c, p in zip(classes, probs))
            print(f"{label}: {top}", flush=True)
