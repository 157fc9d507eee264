import copy
import itertools

import lightning as L
import pytest
import torch

from lit_effnet.callbacks import EMA, ema_decay
from lit_effnet.callbacks.checkpoint import LastCheckpoint
from lit_effnet.errors import ConfigError
from tests.conftest import fast_trainer, tiny_datamodule, tiny_module

WATCHED = ("net.stem.conv.weight", "net.head.bn.running_mean")  # a parameter and a BN buffer


def test_decay_warms_up_as_in_tf():
    assert ema_decay(0, 0.9999) == pytest.approx(0.1)
    assert ema_decay(90, 0.9999) == pytest.approx(91 / 100)
    assert ema_decay(10**7, 0.9999) == 0.9999
    assert ema_decay(0, 0.9999, warmup=False) == 0.9999


class LiveWeights(L.Callback):
    """The live weights before training and after every optimizer step."""

    def __init__(self):
        self.after_step = []

    def on_train_start(self, trainer, pl_module):
        self.initial = {k: pl_module.state_dict()[k].clone() for k in WATCHED}

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step > len(self.after_step):
            self.after_step.append({k: pl_module.state_dict()[k].clone() for k in WATCHED})


@pytest.mark.parametrize(("warmup", "every"), [(True, 1), (False, 1), (True, 2), (True, 3)])
def test_each_optimizer_step_moves_the_average_by_the_tf_formula_also_with_accumulation(tmp_path, warmup, every):
    # TF's ExponentialMovingAverage: average = d * average + (1 - d) * live after each optimizer step, with
    # d = min(decay, (1 + n) / (10 + n)) at global step n, starting from the initial weights. With 2 batches
    # accumulated per step, 6 batches are 3 updates; updating every 2nd step, the steps 1 and 3.
    decay, live = 0.8, LiveWeights()
    ema = EMA(decay=decay, warmup=warmup, update_every_n_steps=every)
    trainer = fast_trainer(
        tmp_path, max_epochs=1, limit_train_batches=6, accumulate_grad_batches=2, callbacks=[ema, live]
    )
    trainer.fit(tiny_module(lr=0.05), tiny_datamodule())
    assert trainer.global_step == 3 and len(live.after_step) == 3
    updates = [n for n in (1, 2, 3) if (n - 1) % every == 0]
    for key in WATCHED:
        expected = live.initial[key].clone()
        for n in updates:
            d = min(decay, (1 + n) / (10 + n)) if warmup else decay
            expected = d * expected + (1 - d) * live.after_step[n - 1][key]
        averaged = ema._average_model.module.state_dict()[key]
        torch.testing.assert_close(averaged, expected, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(averaged, live.after_step[-1][key])  # an average, not the live weights
    assert int(ema._average_model.n_averaged) == len(updates)  # what the checkpoint's averaging state counts
    # BN's batch counter is copied, not averaged: the training batches (2 per step) up to the last update
    assert int(ema._average_model.module.state_dict()["net.head.bn.num_batches_tracked"]) == 2 * updates[-1]


def _fit(tmp_path, ema, max_epochs=2, ckpt_path=None, dirpath="ckpt"):
    checkpoint = LastCheckpoint(str(tmp_path / dirpath))
    trainer = fast_trainer(
        tmp_path, max_epochs=max_epochs, limit_train_batches=4, callbacks=[ema, checkpoint], enable_checkpointing=True
    )
    module = tiny_module()
    trainer.fit(module, tiny_datamodule(), ckpt_path=ckpt_path)
    return trainer, module


def _flat(state):
    return torch.cat([v.flatten().float() for k, v in state.items() if "num_batches_tracked" not in k])


def test_checkpoints_hold_ema_and_raw_weights_and_both_accuracies_are_logged(tmp_path):
    trainer, _ = _fit(tmp_path, EMA(decay=0.9))
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    ema_state, raw_state = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert ema_state.keys() == raw_state.keys()
    assert not torch.allclose(_flat(ema_state), _flat(raw_state))
    assert {"val/acc1", "val/acc1_raw", "val/acc5_raw", "val/acc1_per_class_raw"} <= set(trainer.callback_metrics)


def _top1(net: torch.nn.Module, datamodule, batches: int | None = None) -> float:
    """Plain top-1 of `net` over the (first) val batches, normalised as the datamodule does on the device."""
    net.eval()
    right = total = 0
    with torch.no_grad():
        for batch in itertools.islice(datamodule.val_dataloader(), batches):
            images, targets = datamodule.on_after_batch_transfer(batch, 0)
            right += int((net(images).argmax(1) == targets).sum())
            total += len(targets)
    return right / total


class LastWeights(L.Callback):
    """The live and the EMA weights after the last training batch, i.e. those the last validation scores."""

    def __init__(self, ema: EMA):
        self.ema = ema

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.raw = copy.deepcopy(pl_module.state_dict())
        self.average = copy.deepcopy(self.ema._average_model.module.state_dict())


def test_val_acc1_is_the_ema_models_accuracy_and_val_acc1_raw_the_live_models(tmp_path):
    L.seed_everything(0)  # the weights and batches, not what the tests run before left in the generators
    ema = EMA(decay=0.9, warmup=False)  # lags the live weights enough to score differently
    probe = LastWeights(ema)
    trainer = fast_trainer(tmp_path, max_epochs=2, limit_train_batches=6, limit_val_batches=1.0, callbacks=[ema, probe])
    module, datamodule = tiny_module(lr=0.01), tiny_datamodule()  # at 0.05 both often sit at chance
    trainer.fit(module, datamodule)
    metrics = trainer.callback_metrics
    by_hand = {}
    for name, state in (("raw", probe.raw), ("ema", probe.average)):
        module.load_state_dict(state)
        by_hand[name] = _top1(module, datamodule)
    assert float(metrics["val/acc1_raw"]) == pytest.approx(by_hand["raw"])
    assert float(metrics["val/acc1"]) == pytest.approx(by_hand["ema"])
    assert by_hand["raw"] != by_hand["ema"]  # the two are told apart


def test_the_defaults_are_the_official_decay_0_9999_with_warmup_on_every_step():
    ema = EMA()
    assert (ema.decay, ema.warmup, ema.update_every_n_steps, ema.validate_raw) == (0.9999, True, 1, True)


def test_ema_state_survives_save_and_resume(tmp_path):
    first = EMA(decay=0.95)
    _fit(tmp_path, first, max_epochs=1)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    averaged_at_save = _flat(first._average_model.module.state_dict())
    resumed = EMA(decay=0.95)
    trainer = fast_trainer(
        tmp_path, max_epochs=1, limit_train_batches=4, callbacks=[resumed], enable_checkpointing=False
    )
    module = tiny_module()
    trainer.fit(
        module, tiny_datamodule(), ckpt_path=tmp_path / "ckpt" / "last.ckpt"
    )  # max_epochs reached: restore only
    torch.testing.assert_close(_flat(resumed._average_model.module.state_dict()), averaged_at_save)
    # The live module holds the raw weights again, not the EMA ones.
    torch.testing.assert_close(_flat(module.state_dict()), _flat(saved["current_model_state"]))
    assert resumed._latest_update_step == saved["callbacks"]["EMA"]["latest_update_step"]


@pytest.mark.parametrize("decay", [1.0, -0.01])
def test_a_decay_outside_0_1_names_the_key(decay):
    with pytest.raises(ConfigError, match=r"ema\.decay"):
        EMA(decay=decay)
    assert EMA(decay=0.0).decay == 0.0  # 0 is allowed: the live weights themselves


def test_validate_raw_false_scores_only_the_ema_model():
    trainer = fast_trainer(None, max_epochs=1, callbacks=[EMA(decay=0.9, validate_raw=False)])
    trainer.fit(tiny_module(), tiny_datamodule())
    assert "val/acc1" in trainer.callback_metrics
    assert not any(key.endswith("_raw") for key in trainer.callback_metrics)


def test_an_interruption_before_the_first_validation_leaves_the_live_weights_in_the_module(tmp_path):
    class StopAtStepTwo(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            if trainer.global_step == 2:
                self.raw = {k: v.clone() for k, v in pl_module.state_dict().items()}
                raise RuntimeError("stopped by the test")

    ema, probe = EMA(decay=0.5), StopAtStepTwo()
    trainer = fast_trainer(tmp_path, max_epochs=1, limit_train_batches=4, callbacks=[ema, probe])
    module = tiny_module()
    with pytest.raises(RuntimeError, match="stopped by the test"):
        trainer.fit(module, tiny_datamodule())
    assert all(torch.equal(module.state_dict()[k], v) for k, v in probe.raw.items())  # nothing swapped in
    average = ema._average_model.module.state_dict()
    assert not all(torch.equal(average[k], v) for k, v in probe.raw.items())  # a swap would have shown
