"""Prints what `train.py predict` found: each file's top-5 classes with probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


@runtime_checkable
class NamesItsImages(Protocol):
    """Data that knows the files it predicts on and its class names (ImageDataModule)."""

    def predict_paths(self) -> list[Path]: ...

    def class_names(self) -> list[str] | None: ...


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
        named = isinstance(datamodule, NamesItsImages)
        paths, names = (datamodule.predict_paths(), datamodule.class_names()) if named else (None, None)
        for index, probs, classes in zip(
            prediction["index"].tolist(), prediction["probs"].tolist(), prediction["classes"].tolist()
        ):
            label = paths[index] if paths else index
            top = ", ".join(f"{names[c] if names else c} ({p:.3f})" for c, p in zip(classes, probs))
            print(f"{label}: {top}", flush=True)
