"""The non-finite-loss guard: stop naming the steps, with no checkpoint written after them, or skip and count."""

import lightning as L
import pytest
import torch

from lit_effnet.callbacks import NonFiniteLossGuard
from lit_effnet.callbacks.checkpoint import LastCheckpoint
from lit_effnet.errors import NonFiniteLossError
from tests.conftest import fast_trainer, tiny_datamodule, tiny_module


class _PoisonLoss:
    """Makes the training loss NaN at one step."""

    def __init__(self, module, step):
        self.module, self.step, self.original = module, step, module.loss

    def __call__(self, logits, targets):
        loss = self.original(logits, targets)
        return loss * float("nan") if self.module.training and self.module.global_step == self.step else loss


def test_a_nan_loss_stops_the_run_naming_its_steps_with_last_ckpt_from_before_it(tmp_path):
    # No checkpoint but the epoch's: the flag is first read at the epoch's end, after steps 3 and 4 trained on.
    module = tiny_module()
    module.loss = _PoisonLoss(module, step=2)
    trainer = fast_trainer(
        tmp_path,
        max_epochs=2,
        limit_train_batches=4,
        callbacks=[LastCheckpoint(str(tmp_path))],
        enable_checkpointing=True,
    )
    with pytest.raises(NonFiniteLossError, match=r"in one of steps 1-4 \(epoch 0\); no checkpoint was written after"):
        trainer.fit(module, tiny_datamodule())
    assert not (tmp_path / "last.ckpt").exists()  # the epoch's checkpoint was refused


def test_a_checkpoint_write_reads_the_flag_first_and_names_the_exact_step(tmp_path):
    module = tiny_module()
    module.loss = _PoisonLoss(module, step=2)  # the loss of the 3rd step (global_step 2 -> 3)
    last = LastCheckpoint(str(tmp_path), every_n_train_steps=1)
    trainer = fast_trainer(tmp_path, max_epochs=2, limit_train_batches=6, callbacks=[last], enable_checkpointing=True)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.fit(module, tiny_datamodule())
    assert str(error.value).startswith(
        f"non-finite training loss in step 3 (epoch 0); no checkpoint was written after it, so "
        f"{tmp_path / 'last.ckpt'} (epoch 0, step 2) holds the weights from before it."
    )
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 2 and all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_stop_mode_reads_the_device_only_at_logging_steps_epoch_ends_and_checkpoints(tmp_path, monkeypatch):
    reads = []
    check = NonFiniteLossGuard.check
    monkeypatch.setattr(
        NonFiniteLossGuard, "check", lambda self, trainer: (reads.append(trainer.global_step), check(self, trainer))
    )
    last = LastCheckpoint(str(tmp_path), every_n_train_steps=5)
    trainer = fast_trainer(
        tmp_path, max_epochs=2, limit_train_batches=6, log_every_n_steps=4, callbacks=[last], enable_checkpointing=True
    )
    trainer.fit(tiny_module(), tiny_datamodule())
    # logging steps 4, 8, 12; step checkpoints 5, 10; epoch ends 6 and 12 (end of epoch, its checkpoint, training)
    assert reads == [4, 5, 6, 6, 8, 10, 12, 12, 12, 12]


def test_skip_mode_skips_each_update_and_counts_them(tmp_path):
    module = tiny_module(nonfinite_loss="skip")
    module.loss = _PoisonLoss(module, step=2)
    module.loss = _PoisonLoss(module, step=4)  # and a second one
    trainer = fast_trainer(tmp_path, max_epochs=1, limit_train_batches=5)
    trainer.fit(module, tiny_datamodule())
    guard = next(c for c in trainer.callbacks if isinstance(c, NonFiniteLossGuard))
    assert guard.skipped_steps == 2 and trainer.callback_metrics["train/skipped_steps"] == 2
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


def test_the_guard_stops_by_default_and_trains_every_clean_step_as_an_unguarded_run_does(tmp_path):
    def trained(callbacks):
        L.seed_everything(0)
        module = tiny_module(nonfinite_loss="ignore")  # no guard of its own: only the one given here
        trainer = fast_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=callbacks)
        trainer.fit(module, tiny_datamodule(seed=0))
        return module.state_dict()

    guard = NonFiniteLossGuard()
    guarded, unguarded = trained([guard]), trained([])
    assert guard.skipped_steps == 0 and all(torch.equal(guarded[k], unguarded[k]) for k in unguarded)
    module = tiny_module(nonfinite_loss="ignore")
    module.loss = _PoisonLoss(module, step=0)
    trainer = fast_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[NonFiniteLossGuard()])
    with pytest.raises(NonFiniteLossError) as error:
        trainer.fit(module, tiny_datamodule())
    assert str(error.value) == (  # without a LastCheckpoint the message cannot name a file
        "non-finite training loss in one of steps 1-2 (epoch 0); no checkpoint was written after it, so the run's "
        "last.ckpt, where there is one, holds the weights from before it. Lower the LR (model.lr_per_256), or set "
        "model.nonfinite_loss=skip"
    )


def test_a_nan_in_any_micro_batch_of_an_accumulated_step_skips_that_step(tmp_path):
    # Two micro-batches per optimizer step; the NaN is in the first of step 2's, the second is clean.
    module = tiny_module(nonfinite_loss="skip")
    original, calls = module.loss, []

    def loss(logits, targets):
        value = original(logits, targets)
        if module.training:
            calls.append(module.global_step)
            return value * float("nan") if len(calls) == 3 else value
        return value

    module.loss = loss
    snapshots = {}

    class Snapshot(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            snapshots[trainer.global_step] = {k: v.clone() for k, v in pl_module.net.state_dict().items()}

    trainer = fast_trainer(
        tmp_path, max_epochs=1, limit_train_batches=6, accumulate_grad_batches=2, callbacks=[Snapshot()]
    )
    trainer.fit(module, tiny_datamodule())
    guard = next(c for c in trainer.callbacks if isinstance(c, NonFiniteLossGuard))
    assert calls == [0, 0, 1, 1, 2, 2] and guard.skipped_steps == 1
    weights = [k for k in snapshots[1] if k.endswith("weight") and "bn" not in k]
    assert all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in weights)  # step 2 changed nothing
    assert not all(torch.equal(snapshots[2][k], snapshots[3][k]) for k in weights)  # step 3 trained
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_with_log_every_n_steps_1_the_flag_is_read_after_every_step(tmp_path):
    module = tiny_module()
    module.loss = _PoisonLoss(module, step=2)
    trainer = fast_trainer(tmp_path, max_epochs=1, limit_train_batches=6, log_every_n_steps=1)
    with pytest.raises(NonFiniteLossError, match=r"^non-finite training loss in step 3 \(epoch 0\)"):
        trainer.fit(module, tiny_datamodule())
