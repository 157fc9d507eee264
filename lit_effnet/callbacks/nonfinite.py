"""Stop the run when the training loss turns NaN or infinite, without reading the device at every step."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lit_effnet.errors import NonFiniteLossError


class NonFiniteLossGuard(Callback):
    """mode "stop": a NaN/inf loss stops the run, naming the steps it appeared in, with last.ckpt from before it;
    "skip": that optimizer step is dropped and counted (train/skipped_steps).

    "stop" reads nothing from the device inside a training step: each step ORs `not isfinite(loss)` into a flag
    that stays on the device, and the flag is read (agreed over all ranks) only where Lightning reads the device
    anyway: at logging steps (every `trainer.log_every_n_steps`), at the end of each epoch and of training,
    and before every checkpoint is written. So the steps between two reads may train on with NaN weights, but
    no checkpoint is written after the NaN: the run's last.ckpt holds the weights from before it.
    "skip" must decide before the optimizer step, so it reads the loss on the host at every step (as AMP's
    GradScaler does); a skipped step sets every gradient to None, so the optimizer leaves the weights and its
    state alone.
    """

    def __init__(self, mode: str = "stop") -> None:
        self.mode = mode
        self.skipped_steps = 0
        self._skip = False  # "skip": a micro-batch of this optimizer step had a non-finite loss on some rank
        # "stop", made by on_train_start with `_clean_step` (the global step at the last read that found none):
        # on the device, a non-finite loss since that read.
        self._seen: torch.Tensor | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.mode == "stop":
            # Made once, updated in place: every step's graph is the same (one compile on XLA).
            self._seen = torch.tensor(False, device=pl_module.device)
            self._clean_step = trainer.global_step

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if self.mode == "skip":
            # True only when every rank's loss is finite (reduce_boolean_decision's default); kept over the
            # micro-batches an accumulated optimizer step is made of.
            finite = trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss.detach())))
            self._skip = self._skip or not finite
        elif self._seen is not None:
            self._seen.logical_or_(~torch.isfinite(loss.detach()))

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if self.mode != "skip":
            return
        if self._skip:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None
            self.skipped_steps += 1
        self._skip = False  # the next optimizer step's micro-batches start clean
        pl_module.log("train/skipped_steps", float(self.skipped_steps))  # per step: Lightning's default in this hook

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self.check(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self.check(trainer)  # raising here keeps the checkpoint from being written

    def check(self, trainer: Trainer) -> None:
        """Read the flag (one device-to-host read, agreed over ranks); raise if a loss was non-finite."""
        if self._seen is None:
            return
        if trainer.strategy.reduce_boolean_decision(not bool(self._seen)):  # clean on every rank
            self._clean_step = trainer.global_step
            return
        self._seen = None  # reported once, also when the error passes through the checkpoint hooks again
        first, last = self._clean_step + 1, trainer.global_step
        steps = f"step {last}" if first >= last else f"one of steps {first}-{last}"
        raise NonFiniteLossError(
            f"non-finite training loss in {steps} (epoch {trainer.current_epoch}); no checkpoint was written after "
            f"it, so {_last_checkpoint(trainer)} holds the weights from before it. Lower the LR "
            "(model.lr_per_256), or set model.nonfinite_loss=skip"
        )


def _last_checkpoint(trainer: Trainer) -> str:
    """The newest checkpoint this run wrote (or resumed from), for the message."""
    from lit_effnet.callbacks.checkpoint import LastCheckpoint

    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint) and callback.last_saved is not None:
            path, epoch, step = callback.last_saved
            return f"{path} (epoch {epoch}, step {step})"
    if trainer.ckpt_path:
        return f"{trainer.ckpt_path} (resumed from)"
    return "the run's last.ckpt, where there is one,"
