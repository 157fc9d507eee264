"""The checkpoints a run keeps: last.ckpt (every epoch, every N steps or T minutes, on interruption) and the best
by val/acc1; each written atomically, with the previous last.ckpt kept until the new one is complete."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_effnet.errors import CheckpointError, ConfigError

LAST_NAME = "last"
PREVIOUS_SUFFIX = ".prev"  # last.ckpt's previous version: last.prev.ckpt


def previous_version(path: str | Path) -> Path:
    """Where the writer keeps the version of `path` it replaced: last.ckpt -> last.prev.ckpt."""
    path = Path(path)
    return path.with_name(f"{path.stem}{PREVIOUS_SUFFIX}{path.suffix}")


def tensor_bytes(obj: Any) -> int:
    """The bytes of every tensor in a (nested) checkpoint: about the size of the file it makes."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(value) for value in obj)
    return 0


class AtomicCheckpointIO(_WrappingCheckpointIO):
    """Wraps the strategy's own writer (torch.save, or XLA's, which moves tensors to the CPU first): it writes to a
    temporary file in the same folder, fsyncs it, keeps the file it replaces as `<name>.prev.ckpt`, and renames.

    So a kill or a crash during a write leaves the previous checkpoint intact, and a newest file that turns out
    unreadable still has its predecessor beside it. A full disk stops the run with one line naming the path and
    the space needed. Lightning's own writer goes through an fsspec transaction whose temporary file lives in the
    system temp folder: on another filesystem the final move is a copy, which a kill can leave truncated.
    Remote paths (`s3://...`) go to the wrapped writer unchanged.
    """

    @property
    def _writer(self) -> CheckpointIO:
        return self.checkpoint_io or TorchCheckpointIO()  # built alone (not by make_atomic): torch.save's

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        writer = self._writer
        if "://" in str(path):
            return writer.save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            writer.save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            if path.exists():
                os.replace(path, previous_version(path))
            os.replace(tmp, path)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            free = shutil.disk_usage(path.parent).free
            raise CheckpointError(
                f"cannot write {path}: no space left on its disk (the checkpoint needs about "
                f"{_size(tensor_bytes(checkpoint))}, {_size(free)} free); the previous checkpoint is intact"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_folder(path.parent)

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._writer.load_checkpoint(*args, **kwargs)

    def remove_checkpoint(self, path: _PATH) -> None:
        self._writer.remove_checkpoint(path)


def _size(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power loss right after it must not bring the old name back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder cannot be opened on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_atomic(strategy: Strategy) -> None:
    """Route the strategy's checkpoint writes through AtomicCheckpointIO, around the writer it has.

    Only the two writers known to write synchronously to a local path are wrapped (torch.save and XLA's);
    a writer of the user's own (asynchronous, remote storage) is left as it is.
    """
    from lightning.fabric.plugins.io.xla import XLACheckpointIO

    writer = strategy.checkpoint_io
    if type(writer) in (TorchCheckpointIO, XLACheckpointIO):
        strategy.checkpoint_io = AtomicCheckpointIO(writer)


class LastCheckpoint(ModelCheckpoint):
    """last.ckpt after every epoch, every `every_n_train_steps` optimizer steps and/or every `train_time_interval`
    minutes, and when the run is interrupted (SIGTERM, Ctrl-C); written atomically (AtomicCheckpointIO).

    Lightning 2.6's `save_last=True` only rewrites last.ckpt on epochs where a top-k checkpoint was also saved
    (or at the very end, after EMA weights were copied into the model), so a resume could silently repeat
    epochs; an unmonitored top-1 checkpoint named "last" is written every epoch instead. Its step and time
    triggers are ours too: ModelCheckpoint takes one trigger only, and its time trigger broadcasts from rank 0 at
    every step (a host sync); here the clock is read at logging steps only, where Lightning syncs anyway.
    The last batch of an epoch never triggers a mid-epoch write: the epoch's own follows it.

    Args:
        dirpath: the folder (the CLI: the run's checkpoints/).
        every_n_train_steps: also write after every N optimizer steps (0: off).
        train_time_interval: also write when this many minutes have passed since the last write (None: off).
    """

    def __init__(
        self, dirpath: str | None = None, every_n_train_steps: int = 0, train_time_interval: float | None = None
    ) -> None:
        if every_n_train_steps < 0:
            raise ConfigError(f"checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        if train_time_interval is not None and train_time_interval <= 0:
            raise ConfigError(f"checkpoint.train_time_interval must be > 0 minutes, got {train_time_interval}")
        super().__init__(
            dirpath=dirpath, filename=LAST_NAME, monitor=None, save_top_k=1, every_n_epochs=1,
            enable_version_counter=False,
        )  # fmt: skip
        self.save_every_n_steps = every_n_train_steps
        self.save_every_s = None if train_time_interval is None else 60.0 * train_time_interval
        self.last_saved: tuple[str, int, int] | None = None  # (path, epoch, global step) of the newest write
        self._saved_at = time.monotonic()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        make_atomic(trainer.strategy)
        self._saved_at = time.monotonic()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx + 1 >= trainer.num_training_batches or self._should_skip_saving_checkpoint(trainer):
            return
        step = trainer.global_step
        due = bool(self.save_every_n_steps) and step % self.save_every_n_steps == 0
        if self.save_every_s is not None and step % max(1, trainer.log_every_n_steps) == 0:
            # Rank 0's clock decides for every rank: a rank that saved alone would wait at the save's barrier.
            due |= trainer.strategy.broadcast(time.monotonic() - self._saved_at >= self.save_every_s)
        if due:
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._saved_at = time.monotonic()
        self.last_saved = (filepath, trainer.current_epoch, trainer.global_step)

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
