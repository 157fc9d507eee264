import pytest
import torch

from lit_effnet.callbacks import EMA, ema_decay
from lit_effnet.callbacks.checkpoint import last_checkpoint
from tests.conftest import fast_trainer, tiny_datamodule, tiny_module


def test_decay_warms_up_as_in_tf():
    assert ema_decay(0, 0.9999) == pytest.approx(0.1)
    assert ema_decay(90, 0.9999) == pytest.approx(91 / 100)
    assert ema_decay(10**7, 0.9999) == 0.9999
    assert ema_decay(0, 0.9999, warmup=False) == 0.9999


def _fit(tmp_path, ema, max_epochs=2, ckpt_path=None, dirpath="ckpt"):
    checkpoint = last_checkpoint(str(tmp_path / dirpath))
    trainer = fast_trainer(
        tmp_path, max_epochs=max_epochs, limit_train_batches=4, callbacks=[ema, checkpoint], enable_checkpointing=True
    )
    module = tiny_module()
    trainer.fit(module, tiny_datamodule(), ckpt_path=ckpt_path)
    return trainer, module


def _flat(state):
    return torch.cat([v.flatten().float() for k, v in state.items() if "num_batches_tracked" not in k])


def test_ema_weights_differ_from_raw_and_follow_the_warmup_formula(tmp_path):
    ema = EMA(decay=0.9)
    trainer, _module = _fit(tmp_path, ema)
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    ema_state, raw_state = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert ema_state.keys() == raw_state.keys()
    assert not torch.allclose(_flat(ema_state), _flat(raw_state))
    assert ema._decay_now == ema_decay(trainer.global_step, 0.9)
    assert {"val/acc1", "val/acc1_raw", "val/acc5_raw"} <= set(trainer.callback_metrics)


def test_ema_state_survives_save_and_resume(tmp_path):
    first = EMA(decay=0.95)
    _fit(tmp_path, first, max_epochs=1)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    averaged_at_save = _flat({k: v for k, v in first._average_model.module.state_dict().items()})

    resumed = EMA(decay=0.95)

    trainer = fast_trainer(
        tmp_path, max_epochs=1, limit_train_batches=4, callbacks=[resumed], enable_checkpointing=False
    )
    module = tiny_module()
    trainer.fit(
        module, tiny_datamodule(), ckpt_path=tmp_path / "ckpt" / "last.ckpt"
    )  # max_epochs reached: restore only
    restored_average = _flat(resumed._average_model.module.state_dict())
    torch.testing.assert_close(restored_average, averaged_at_save)
    # The live module holds the raw weights again, not the EMA ones.
    torch.testing.assert_close(_flat(module.state_dict()), _flat(saved["current_model_state"]))
    assert resumed._latest_update_step == saved["callbacks"]["EMA"]["latest_update_step"]
