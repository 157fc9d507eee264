"""LitEfficientNet's speed-related defaults: channels_last, compile once per shape, no per-step host syncs."""

import traceback

import lightning as L
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from lit_effnet.callbacks import EMA, ProgressiveLearning
from tests.conftest import fast_trainer, tiny_datamodule, tiny_module


def test_network_is_channels_last_by_default_and_ema_copies_it_so():
    module = tiny_module()
    conv = module.net.stem.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert tiny_module(channels_last=False).net.stem.conv.weight.is_contiguous()


def _graphs_compiled(tmp_path, batches: int) -> int:
    torch._dynamo.reset()
    counters.clear()
    stages = ProgressiveLearning(num_stages=3, image_size=(16, 32), dropout=(0.0, 0.2), mixup_alpha=None)
    trainer = fast_trainer(tmp_path, max_epochs=6, limit_train_batches=batches, callbacks=[stages])
    # The "eager" backend records dynamo's graphs without inductor's code generation (minutes on a CPU).
    trainer.fit(tiny_module(compile=True, compile_backend="eager"), tiny_datamodule())
    return counters["stats"]["unique_graphs"]


def test_compile_builds_graphs_per_stage_not_per_batch(tmp_path):
    few, many = _graphs_compiled(tmp_path, batches=2), _graphs_compiled(tmp_path, batches=5)
    assert few == many  # more batches: no more graphs
    assert 3 <= few <= 2 * 3  # per stage at most a training graph (its size and dropout) and an eval graph


class _HostSyncCounter(L.Callback):
    """Counts tensor-to-host reads between the start and the end of each training batch."""

    READS = ("item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu")

    def __init__(self):
        self.counting, self.calls = False, []

    def patch(self, monkeypatch):
        for name in self.READS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _name=name, _original=original, **kwargs):
                # DataLoader draws its workers' base seed from a CPU generator per iterator: not a device sync.
                if self.counting and not any("torch/utils/data" in f.filename for f in traceback.extract_stack()):
                    self.calls.append(_name)
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


def test_training_steps_do_not_read_tensors_back_to_the_host(tmp_path, monkeypatch):
    counter = _HostSyncCounter()
    counter.patch(monkeypatch)

    class Window(L.Callback):
        """From each batch's start until validation: the batch, all its hooks (progress bar too), and EMA."""

        def on_train_batch_start(self, *args):
            counter.counting = True

        def on_validation_start(self, *args):
            counter.counting = False

    # EMA, mixup and the NaN guard on; logging only every 50 steps. The paper's RMSpropTF (AdamW reads its step
    # counters with .item(), but those live on the CPU: no device sync).
    module = tiny_module(mixup_alpha=0.2, optimizer="rmsprop_tf")
    trainer = fast_trainer(
        tmp_path, max_epochs=2, limit_train_batches=6, callbacks=[Window(), EMA(decay=0.9)],
        log_every_n_steps=50, enable_progress_bar=True,
    )  # fmt: skip
    trainer.fit(module, tiny_datamodule())
    assert trainer.global_step == 12
    assert counter.calls == []


@pytest.mark.parametrize(("mode", "reads"), [("stop", 3), ("skip", 6)])
def test_the_nan_guard_reads_at_logging_steps_or_in_skip_mode_at_every_step(tmp_path, monkeypatch, mode, reads):
    counter = _HostSyncCounter()
    counter.patch(monkeypatch)

    class Window(L.Callback):
        """From the first batch until validation: every batch with all its hooks (the guard's come after these)."""

        def on_train_batch_start(self, *args):
            counter.counting = True

        def on_validation_start(self, *args):
            counter.counting = False

    trainer = fast_trainer(tmp_path, max_epochs=1, limit_train_batches=6, log_every_n_steps=2, callbacks=[Window()])
    trainer.fit(tiny_module(optimizer="rmsprop_tf", nonfinite_loss=mode), tiny_datamodule())
    # The guard reads its flag with bool(): at logging steps 2, 4, 6, or at every step in skip mode. (Lightning's
    # own reads of the logged values at logging steps are .item().)
    assert [call for call in counter.calls if call == "__bool__"] == ["__bool__"] * reads


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_and_nchw_give_the_same_logits(channels_last):
    module = tiny_module(channels_last=channels_last).eval()
    reference = tiny_module(channels_last=not channels_last).eval()
    reference.load_state_dict(module.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(module(x), reference(x), rtol=1e-4, atol=1e-5)


def test_train_loss_epoch_is_the_mean_of_that_epochs_step_losses(tmp_path):
    class Losses(L.Callback):
        """Each step's loss, and what train/loss_epoch says once an epoch's hooks are done."""

        def __init__(self):
            self.steps, self.logged = [], []

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch > 0:
                self.logged.append(float(trainer.callback_metrics["train/loss_epoch"]))
            self.steps.append([])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.steps[-1].append(float(outputs["loss"]))

        def on_train_end(self, trainer, pl_module):
            self.logged.append(float(trainer.callback_metrics["train/loss_epoch"]))

    losses = Losses()
    trainer = fast_trainer(tmp_path, max_epochs=2, limit_train_batches=3, callbacks=[losses])
    trainer.fit(tiny_module(), tiny_datamodule())
    assert losses.logged == pytest.approx([sum(epoch) / 3 for epoch in losses.steps], rel=1e-6)
    assert losses.logged[0] != pytest.approx(losses.logged[1])
