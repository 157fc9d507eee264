"""LitEfficientNet's recipe numbers through its public hooks (facts 4), each expected number worked out by hand:
the LR the optimizer gets, the warmup and decay lengths in optimizer steps, and the label smoothing of the loss."""

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import fast_trainer, tiny_datamodule, tiny_module


class StubTrainer:
    """What `configure_optimizers` reads from its trainer, so any device count can be asked for on one CPU."""

    def __init__(self, *, devices=1, batch_size=32, accumulate=1, batches_per_epoch=10, total_steps=100):
        self.world_size = devices
        self.accumulate_grad_batches = accumulate
        self.num_training_batches = batches_per_epoch
        self.estimated_stepping_batches = total_steps
        self.train_dataloader = SimpleNamespace(batch_size=batch_size)


def configured(module, **trainer):
    module.trainer = StubTrainer(**trainer)
    config = module.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "step"  # stepped per optimizer step, not per epoch
    return config["optimizer"], config["lr_scheduler"]["scheduler"]


def lr_after(scheduler, steps: int) -> float:
    """The LR after `steps` optimizer steps (the same in every param group without backbone_lr_scale)."""
    for _ in range(steps - scheduler.last_epoch):
        scheduler.optimizer.step()
        scheduler.step()
    (lr,) = {group["lr"] for group in scheduler.optimizer.param_groups}
    return lr


@pytest.mark.parametrize(
    ("devices", "batch_size", "accumulate", "expected"),
    [
        (1, 256, 1, 0.016),  # the recipe's own unit
        (3, 8, 2, 0.003),  # 48 images per step: 0.016 * 48 / 256
        (2, 12, 5, 0.0075),  # 120 images per step
        (8, 64, 2, 0.064),  # 1024 images per step
    ],
)
def test_the_optimizer_gets_lr_per_256_times_devices_batch_and_accumulation_over_256(
    devices, batch_size, accumulate, expected
):
    module = tiny_module(lr=None, lr_per_256=0.016, optimizer="rmsprop_tf")
    optimizer, _ = configured(module, devices=devices, batch_size=batch_size, accumulate=accumulate)
    assert optimizer.param_groups and all(g["initial_lr"] == pytest.approx(expected) for g in optimizer.param_groups)
    assert all(g["lr"] == pytest.approx(expected) for g in optimizer.param_groups)  # no warmup


def test_an_absolute_lr_is_not_scaled_and_the_backbone_gets_its_share_of_it():
    module = tiny_module(lr=0.05, backbone_lr_scale=0.1, weight_decay=1e-4)
    optimizer, _ = configured(module, devices=4, batch_size=64, accumulate=2)
    head = {id(p) for p in module.net.classifier.parameters()}
    for group in optimizer.param_groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1  # a group is all head or all backbone
        assert group["lr"] == pytest.approx(0.05 if in_head.pop() else 0.005)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(module.net.parameters()))


def test_weight_decay_reaches_the_weights_and_spares_bn_and_biases():
    module = tiny_module(weight_decay=3e-5)
    optimizer, _ = configured(module)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    for name, param in module.net.named_parameters():
        expected = 0.0 if ".bn." in name or name.endswith("bias") else 3e-5
        assert decay_of[id(param)] == expected, name


def test_warmup_and_the_x097_every_2_4_epochs_decay_are_counted_in_optimizer_steps():
    # 9 batches per epoch, 2 accumulated per step: ceil(9 / 2) = 5 steps per epoch (Lightning also steps on
    # the epoch's odd last batch). 2 warmup epochs = 10 steps, LR (n + 1) / 10 of the base at step n; 2.4 epochs
    # = 12 steps per x0.97, staircase from step 0. Base: 0.016 * (1 x 16 x 2) / 256 = 0.002.
    module = tiny_module(lr=None, lr_per_256=0.016, lr_schedule="exponential", warmup_epochs=2, decay_epochs=2.4)
    _, scheduler = configured(module, batch_size=16, accumulate=2, batches_per_epoch=9)
    expected = {
        0: 0.002 * 1 / 10,
        4: 0.002 * 5 / 10,
        9: 0.002,  # the last warmup step
        10: 0.002,
        11: 0.002,
        12: 0.002 * 0.97,
        23: 0.002 * 0.97,
        24: 0.002 * 0.97**2,
        60: 0.002 * 0.97**5,
    }
    for step, lr in expected.items():
        assert lr_after(scheduler, step) == pytest.approx(lr), step


def test_cosine_falls_from_the_end_of_warmup_to_zero_at_the_runs_last_step():
    # 10 batches per epoch, one warmup epoch (10 steps), 30 steps in all: half the LR at step 20, none at 30.
    module = tiny_module(lr=0.1, lr_schedule="cosine", warmup_epochs=1)
    _, scheduler = configured(module, batches_per_epoch=10, total_steps=30)
    for step, lr in {0: 0.01, 9: 0.1, 10: 0.1, 15: 0.1 * (1 + np.cos(np.pi / 4)) / 2, 20: 0.05, 30: 0.0}.items():
        assert lr_after(scheduler, step) == pytest.approx(lr, abs=1e-12), step


class StepLR(L.Callback):
    """The LR of each optimizer step, as the optimizer holds it when it steps."""

    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def test_a_real_run_trains_each_optimizer_step_at_the_scheduled_lr(tmp_path):
    # 5 batches of 8 per epoch, 2 accumulated: steps after batches 2, 4 and 5, so 3 steps per epoch. Base LR
    # 0.016 * 16 / 256 = 0.001; one warmup epoch (3 steps: 1/3, 2/3, 1), then x0.5 every epoch from step 0.
    recorder = StepLR()
    module = tiny_module(
        lr=None, lr_per_256=0.016, lr_schedule="exponential", warmup_epochs=1, decay_epochs=1, decay_rate=0.5
    )
    trainer = fast_trainer(
        tmp_path, max_epochs=3, limit_train_batches=5, accumulate_grad_batches=2, callbacks=[recorder]
    )
    trainer.fit(module, tiny_datamodule(batch_size=8))
    assert trainer.global_step == 9
    assert recorder.lrs == pytest.approx([0.001 * f for f in (1 / 3, 2 / 3, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25)])


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """By hand: the target distribution (1 - s) * targets + s / K against log-softmax, averaged over the batch."""
    k = logits.shape[1]
    if targets.ndim == 1:
        targets = torch.eye(k)[targets]
    return -(((1 - smoothing) * targets + smoothing / k) * logits.log_softmax(1)).sum(1).mean()


@pytest.mark.parametrize(("setting", "smoothing"), [(None, 0.1), (0.0, 0.0), (0.3, 0.3)])  # None: the recipe's 0.1
def test_the_loss_is_cross_entropy_with_the_configured_label_smoothing(setting, smoothing):
    module = tiny_module() if setting is None else tiny_module(label_smoothing=setting)
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 10) * 3, torch.tensor([0, 3, 9, 3, 5, 1])
    torch.testing.assert_close(module.loss(logits, labels), smoothed_cross_entropy(logits, labels, smoothing))
    soft = torch.softmax(torch.randn(6, 10), 1)  # mixed targets: probabilities
    torch.testing.assert_close(module.loss(logits, soft), smoothed_cross_entropy(logits, soft, smoothing))


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.8, None), (None, 1.0), (0.8, 1.0)])
def test_under_mixup_and_cutmix_the_training_loss_smooths_the_mixed_targets_exactly_once(mixup, cutmix):
    torch.manual_seed(0)  # the weights too: what ran before must not decide them
    module = tiny_module(label_smoothing=0.2, mixup_alpha=mixup, cutmix_alpha=cutmix).eval()  # eval: no dropout
    with torch.no_grad():  # logits far from uniform, where smoothing once and twice give different losses
        module.classifier().weight.mul_(500)
    module.log = lambda *args, **kwargs: None
    module.lr_schedulers = lambda: SimpleNamespace(get_last_lr=lambda: [0.0])
    torch.manual_seed(0)
    images, labels = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    np.random.seed(0)
    loss = module.training_step((images, labels), 0)
    np.random.seed(0)  # the same draws again: the batch the step trained on
    mixed, targets = module.mixing(images, labels)
    assert not torch.equal(mixed, images) and torch.allclose(targets.sum(1), torch.ones(8))
    with torch.no_grad():
        logits = module(mixed)
    torch.testing.assert_close(loss.detach(), smoothed_cross_entropy(logits, targets, 0.2))
    twice = smoothed_cross_entropy(logits, 0.8 * targets + 0.2 / 10, 0.2)
    assert (loss.detach() - twice).abs() > 0.01
    unmixed = F.cross_entropy(module(images), labels, label_smoothing=0.2)
    assert (loss.detach() - unmixed.detach()).abs() > 0.01


def test_weight_decay_exclude_momentum_and_the_heads_decay_reach_the_optimizer():
    module = tiny_module(
        optimizer="sgd", lr=0.1, momentum=0.5, weight_decay=2e-5, weight_decay_exclude="norm", backbone_lr_scale=0.1
    )
    optimizer, _ = configured(module)
    assert {g["momentum"] for g in optimizer.param_groups} == {0.5}
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    for name, param in module.net.named_parameters():  # "norm": biases decayed too, BN spared, the head too
        assert decay_of[id(param)] == (0.0 if ".bn." in name else 2e-5), name


def test_one_batch_per_epoch_is_one_step_per_epoch_for_the_warmup():
    module = tiny_module(lr=0.1, lr_schedule="constant", warmup_epochs=2)
    _, scheduler = configured(module, batches_per_epoch=1, total_steps=10)
    assert [lr_after(scheduler, step) for step in (0, 1, 2)] == pytest.approx([0.05, 0.1, 0.1])


@pytest.mark.parametrize(("step", "every", "expected"), [(8, 4, True), (9, 4, False), (9, 0, False)])
def test_the_loss_and_the_lr_are_logged_per_step_at_the_loggers_steps_only(step, every, expected):
    module = tiny_module()
    logged = {}

    def log(name, value, on_step=None, on_epoch=None, **kwargs):
        # Lightning's defaults in on_train_batch_end: on_step True, on_epoch False
        logged[name] = (float(value), True if on_step is None else on_step, False if on_epoch is None else on_epoch)

    module.log = log
    module.lr_schedulers = lambda: SimpleNamespace(get_last_lr=lambda: [0.1])
    module.trainer = SimpleNamespace(global_step=step, log_every_n_steps=every)
    batch = (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    loss = module.training_step(batch, 0)
    assert logged == {}  # nothing from inside the step (callbacks/xla.py says why)
    module.on_train_batch_end({"loss": loss}, batch, 0)
    if expected:
        assert logged == {"train/loss_step": (float(loss), True, False), "train/lr": (0.1, True, False)}
    else:
        assert logged == {}
