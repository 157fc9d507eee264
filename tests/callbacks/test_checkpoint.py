import torch

from lit_effnet.callbacks.checkpoint import LastCheckpoint, best_checkpoint
from tests.conftest import TINY_NET, fast_trainer, tiny_datamodule, tiny_module


def test_last_ckpt_holds_the_final_epoch_even_when_the_best_stopped_improving(tmp_path):
    # lr 0 and frozen BN statistics: val/acc1 is the same every epoch, so the best stays at epoch 0, and
    # Lightning's own save_last would leave last.ckpt there too.
    best, last = best_checkpoint(str(tmp_path)), LastCheckpoint(str(tmp_path))
    trainer = fast_trainer(tmp_path, max_epochs=3, callbacks=[best, last], enable_checkpointing=True)
    trainer.fit(tiny_module(lr=0.0, model_kwargs={**TINY_NET, "bn_momentum": 0.0}), tiny_datamodule())
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 2
    assert torch.load(best.best_model_path, weights_only=False)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == [
        "best-epoch000-acc" + f"{float(best.best_model_score):.4f}.ckpt",
        "last.ckpt",
    ]
