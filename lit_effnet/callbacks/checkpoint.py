"""The checkpoints a run keeps (last.ckpt every epoch and on interruption, the best by val/acc1), written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

LAST_NAME = "last"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the same folder, fsyncs it and renames it over the target.

    A crash or kill in the middle of a write leaves the previous last.ckpt intact, never a truncated one.
    Lightning 2.6's own writer goes through an fsspec transaction whose temporary file lives in the system
    temp folder: on another filesystem the final move is a copy, which a kill can leave truncated.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        path = Path(path)
        if "://" in str(path):  # remote filesystems: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class LastCheckpoint(ModelCheckpoint):
    """Rewrites last.ckpt after every epoch, and writes it when the run is interrupted (SIGTERM, Ctrl-C).

    Lightning 2.6's `save_last=True` only rewrites last.ckpt on epochs where a top-k checkpoint was
    also saved (or at the very end, after EMA weights were copied into the model), so a resume could
    silently repeat epochs; an unmonitored top-1 checkpoint named "last" is written every epoch.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__(
            dirpath=dirpath, filename=LAST_NAME, monitor=None, save_top_k=1, every_n_epochs=1,
            enable_version_counter=False,
        )  # fmt: skip

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Checkpoint callbacks run last, so EMA has already put the raw weights back in the model.
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or self.dirpath is None:
            return
        path = Path(self.dirpath) / f"{LAST_NAME}{self.FILE_EXTENSION}"
        trainer.save_checkpoint(path)
        reason = "SIGTERM" if isinstance(exception, SIGTERMException) else "interrupt"
        rank_zero_info(
            f"{reason} at epoch {trainer.current_epoch}, step {trainer.global_step}: saved {path}. "
            "Resume with the same command plus --ckpt_path last"
        )


def best_checkpoint(dirpath: str | None = None, monitor: str = "val/acc1") -> ModelCheckpoint:
    """Keeps the checkpoint with the best `monitor` (the EMA model's accuracy when EMA is on)."""
    return ModelCheckpoint(
        dirpath=dirpath,
        monitor=monitor,
        mode="max",
        save_top_k=1,
        filename="best-epoch{epoch:03d}-acc{val/acc1:.4f}",
        auto_insert_metric_name=False,
    )
