"""Callbacks that kill the process they run in, for the kill tests and `make chaos`; loaded into `train.py` runs
through `--trainer.callbacks+=...`. SIGKILL runs nothing after it, as with the OOM killer or a lost machine."""

import os
import signal
import threading
import time
from pathlib import Path

import lightning as L


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class SigkillAt(L.Callback):
    """On rank `rank`, when the batch after optimizer step `step` starts: step `step`'s checkpoints are written,
    the next step is lost. With `stamp`, the kill's wall-clock time is written there first."""

    def __init__(self, step: int, rank: int = 0, stamp: str | None = None):
        self.step, self.rank, self.stamp = step, rank, stamp

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            if self.stamp is not None:
                Path(self.stamp).write_text(repr(time.time()))
            _sigkill()


class SigkillAfterEpoch(L.Callback):
    """`seconds` after the training batches of epoch `epoch` end, wherever the run is then: validation, the
    epoch's checkpoint, the next stage's loader, its first steps."""

    def __init__(self, epoch: int, seconds: float):
        self.epoch, self.seconds = epoch, seconds

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            threading.Timer(self.seconds, _sigkill).start()


class SigkillDuringWrite(L.Callback):
    """Halfway through writing the run's `nth` checkpoint file (1-based): a torn write."""

    def __init__(self, nth: int):
        self.nth, self.writes = nth, 0

    def setup(self, trainer, pl_module, stage):
        from lightning.fabric.plugins.io import torch_io

        write = torch_io._atomic_save

        def torn(checkpoint, filepath):
            self.writes += 1
            if self.writes < self.nth:
                return write(checkpoint, filepath)
            write(checkpoint, filepath)
            with open(filepath, "r+b") as f:  # as if the kill came with half of the bytes on disk
                f.truncate(os.path.getsize(filepath) // 2)
            _sigkill()

        torch_io._atomic_save = torn


class Progress(L.Callback):
    """Writes the optimizer step reached after every batch (what a kill cost is measured from)."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.is_global_zero:  # written whole or not at all: the kill may come at any moment
            tmp = self.path.with_name(f"{self.path.name}.tmp")
            tmp.write_text(str(trainer.global_step))
            os.replace(tmp, self.path)
