"""The non-finite-loss guard: stop naming the step before any update, or skip the step and count it."""

import lightning as L
import pytest
import torch

from lit_effnet.callbacks import NonFiniteLossGuard
from lit_effnet.errors import NonFiniteLossError
from tests.conftest import fast_trainer, tiny_datamodule, tiny_module


class _PoisonLoss:
    """Makes the training loss NaN at one step."""

    def __init__(self, module, step):
        self.module, self.step, self.original = module, step, module.loss

    def __call__(self, logits, targets):
        loss = self.original(logits, targets)
        return loss * float("nan") if self.module.training and self.module.global_step == self.step else loss


def test_a_nan_loss_stops_the_run_naming_the_step_before_any_update(tmp_path):
    module = tiny_module()
    module.loss = _PoisonLoss(module, step=2)
    trainer = fast_trainer(tmp_path, max_epochs=2, limit_train_batches=4)
    with pytest.raises(NonFiniteLossError, match="at step 2, epoch 0"):
        trainer.fit(module, tiny_datamodule())
    assert trainer.global_step == 2  # the poisoned step was not taken
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_skip_mode_skips_the_update_and_counts_it(tmp_path):
    module = tiny_module(nonfinite_loss="skip")
    module.loss = _PoisonLoss(module, step=2)
    trainer = fast_trainer(tmp_path, max_epochs=1, limit_train_batches=5)
    trainer.fit(module, tiny_datamodule())
    guard = next(c for c in trainer.callbacks if isinstance(c, NonFiniteLossGuard))
    assert guard.skipped_steps == 1 and trainer.callback_metrics["train/skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())


@pytest.mark.parametrize("optimizer", ["rmsprop_tf", "adamw", "sgd"])
def test_a_skipped_step_leaves_the_weights_and_the_optimizer_state_as_they_were(tmp_path, optimizer):
    module = tiny_module(nonfinite_loss="skip", optimizer=optimizer)
    module.loss = _PoisonLoss(module, step=1)
    snapshots = {}

    class Snapshot(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            snapshots[trainer.global_step] = {k: v.clone() for k, v in pl_module.net.state_dict().items()}

    trainer = fast_trainer(tmp_path, max_epochs=1, limit_train_batches=3, callbacks=[Snapshot()])
    trainer.fit(module, tiny_datamodule())
    weights = [k for k in snapshots[1] if k.endswith("weight") and "bn" not in k]
    assert all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in weights)  # step 2 (the NaN one) changed nothing
    assert not all(torch.equal(snapshots[2][k], snapshots[3][k]) for k in weights)  # step 3 trained again
