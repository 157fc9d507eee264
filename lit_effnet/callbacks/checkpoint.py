"""The checkpoints a run keeps: last.ckpt after every epoch and the best by val/acc1."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint

LAST_NAME = "last"


def last_checkpoint(dirpath: str | None = None) -> ModelCheckpoint:
    """Rewrites last.ckpt after every epoch.

    Lightning 2.6's `save_last=True` only rewrites last.ckpt on epochs where a top-k checkpoint was
    also saved (or at the very end, after EMA weights were copied into the model), so a resume could
    silently repeat epochs; an unmonitored top-1 checkpoint named "last" is written every epoch.
    """
    return ModelCheckpoint(
        dirpath=dirpath, filename=LAST_NAME, monitor=None, save_top_k=1, every_n_epochs=1, enable_version_counter=False
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
