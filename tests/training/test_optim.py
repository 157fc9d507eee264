import math

import pytest
import torch
from timm.optim import RMSpropTF

from lit_effnet import create_model
from lit_effnet.errors import ConfigError
from lit_effnet.training.optim import (
    build_optimizer,
    decay_flags,
    global_batch_size,
    lr_multiplier,
    param_groups,
    scaled_lr,
)


def test_lr_scales_linearly_with_the_global_batch():
    # V2 code: 0.016 per 256 images -> 0.256 at batch 4096 (facts 4)
    assert scaled_lr(0.016, global_batch_size(devices=32, per_device=128)) == pytest.approx(0.256)
    assert global_batch_size(devices=8, per_device=64, accumulation=2) == 1024


def test_exponential_decay_is_x097_every_2_4_epochs_stepped_per_step():
    steps_per_epoch = 100
    kw = dict(schedule="exponential", warmup_steps=500, total_steps=35_000, decay_steps=2.4 * steps_per_epoch)
    assert lr_multiplier(0, **kw) == pytest.approx(1 / 500)
    assert lr_multiplier(249, **kw) == pytest.approx(250 / 500)  # linear warmup
    assert lr_multiplier(500, **kw) == pytest.approx(0.97 ** math.floor(500 / 240))
    assert lr_multiplier(1000, **kw) == pytest.approx(0.97**4)  # floor(1000 / 240) = 4
    assert lr_multiplier(35_000 - 1, **kw) == pytest.approx(0.97 ** math.floor(34_999 / 240))


def test_cosine_decays_from_the_end_of_warmup_to_zero():
    kw = dict(schedule="cosine", warmup_steps=10, total_steps=110)
    assert lr_multiplier(10, **kw) == pytest.approx(1.0)
    assert lr_multiplier(60, **kw) == pytest.approx(0.5)
    assert lr_multiplier(110, **kw) == pytest.approx(0.0)


@pytest.mark.parametrize(("exclude", "biases_decayed"), [("bias_and_norm", False), ("norm", True)])
def test_weight_decay_spares_batchnorm_and_biases_as_the_v2_code_or_only_batchnorm_as_v1(exclude, biases_decayed):
    model = create_model("efficientnet_b0", num_classes=3, width=0.25, depth=0.25)
    decay, no_decay = param_groups(model.parameters(), decay_flags(model, exclude), 1e-5)
    assert decay["weight_decay"] == 1e-5 and no_decay["weight_decay"] == 0.0
    no_decay_ids = {id(p) for p in no_decay["params"]}
    for name, param in model.named_parameters():
        spared = ".bn." in name or (name.endswith("bias") and not biases_decayed)
        assert (id(param) in no_decay_ids) == spared, name
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(p.numel() for p in model.parameters())


def test_rmsprop_has_tf_semantics():
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = build_optimizer("rmsprop_tf", [{"params": params}], lr=0.256)
    assert isinstance(optimizer, RMSpropTF)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["alpha"], group["momentum"], group["eps"]) == (0.256, 0.9, 0.9, 1e-3)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.9, True), (0.0, False)])
def test_sgd_gets_the_lr_and_momentum_with_nesterov_whenever_there_is_momentum(momentum, nesterov):
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = build_optimizer("sgd", [{"params": params}], lr=0.3, momentum=momentum)
    assert type(optimizer) is torch.optim.SGD and optimizer.param_groups[0]["params"] == params
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.3, momentum, nesterov)


def test_adamw_gets_the_lr():
    optimizer = build_optimizer("adamw", [{"params": [torch.nn.Parameter(torch.zeros(2))]}], lr=0.004)
    assert type(optimizer) is torch.optim.AdamW and optimizer.param_groups[0]["lr"] == 0.004


def test_the_default_weight_decay_exclusion_is_the_v2_codes_bias_and_norm():
    model = create_model("efficientnet_b0", num_classes=3, width=0.25, depth=0.25)
    assert decay_flags(model) == decay_flags(model, "bias_and_norm") != decay_flags(model, "norm")


def test_unknown_optimizer_names_the_config_key():
    with pytest.raises(ConfigError, match=r"model.optimizer"):
        build_optimizer("adam", [{"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=0.1)


def test_cosine_stays_at_zero_after_the_last_step_and_a_one_step_decay_ends_there():
    assert lr_multiplier(45, schedule="cosine", warmup_steps=0, total_steps=30) == pytest.approx(0.0, abs=1e-12)
    assert lr_multiplier(1, schedule="cosine", warmup_steps=0, total_steps=1) == pytest.approx(0.0, abs=1e-12)


def test_an_unknown_schedule_names_the_config_key():
    with pytest.raises(ConfigError, match=r"model\.lr_schedule 'linear'"):
        lr_multiplier(0, schedule="linear", warmup_steps=0, total_steps=10)
