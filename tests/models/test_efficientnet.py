import math

import pytest
import torch
from torch import nn

from lit_effnet import create_model
from lit_effnet.models.blocks import FusedMBConv, MBConv
from lit_effnet.models.efficientnet import EfficientNet
from lit_effnet.models.factory import resolve_spec
from lit_effnet.models.layers import Conv2dSame

TINY = {"width": 0.25, "depth": 0.34}


def test_tiny_scaled_model_runs_forward_and_backward():
    model = create_model("efficientnetv2_b0", num_classes=5, **TINY)
    x = torch.randn(4, 3, 40, 40)
    logits = model(x)
    assert logits.shape == (4, 5)
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.forward_features(x).shape == (4, model.num_features, 2, 2)


def test_channels_last_gives_the_same_logits():
    model = create_model("efficientnet_b0", num_classes=3, **TINY).eval()
    x = torch.randn(2, 3, 48, 48)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_builds_on_the_meta_device_without_memory():
    with torch.device("meta"):
        model = create_model("efficientnet_l2")
    assert all(p.is_meta for p in model.parameters())


def test_blocks_follow_the_papers_block_kinds():
    v2 = create_model("efficientnetv2_s", num_classes=2)
    assert [type(stage[0]) for stage in v2.stages] == [FusedMBConv] * 3 + [MBConv] * 3
    first = v2.stages[0][0]  # Fused-MBConv expand 1: one conv3x3 -> BN -> act, no projection, residual 24 -> 24
    assert isinstance(first.project, nn.Identity) and first.has_residual
    assert isinstance(v2.stages[1][0].se, nn.Identity)  # fused stages carry no SE
    b0 = create_model("efficientnet_b0", num_classes=2)
    se = b0.stages[1][0].se  # SE width from the block INPUT (16 * 0.25 = 4), not the expanded 96
    assert se.reduce.out_channels == 4 and se.reduce.in_channels == 96
    assert not b0.stages[0][0].has_residual  # 32 -> 16


def test_same_padding_is_asymmetric_only_for_strided_convs():
    model = create_model("efficientnet_b0", num_classes=2, padding="same")
    strided = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert strided and all(isinstance(m, Conv2dSame) for m in strided)
    conv = Conv2dSame(1, 1, 3, 2, bias=False)
    nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 4, 4))
    # TF pads 0 before and 1 after: the top-left window sees 9 ones, the bottom-right 4.
    assert out[0, 0, 0, 0] == 9 and out[0, 0, -1, -1] == 4


def test_weights_start_from_the_official_tf_initialisers():
    # timm's _init_weight_goog, the official code's: conv N(0, sqrt(2 / fan_out)) with fan_out = k * k * out /
    # groups; dense U(-1 / sqrt(out), 1 / sqrt(out)); BN gamma 1 and beta 0; biases 0.
    torch.manual_seed(0)
    model = create_model("efficientnet_b0", num_classes=1000)
    stds = {
        "head 1x1 320 -> 1280": (model.head.conv.weight, math.sqrt(2 / 1280)),
        "stage 6 depthwise 5x5 of 672": (model.stages[5][0].depthwise.conv.weight, math.sqrt(2 / 25)),
        "stage 6 SE expand 28 -> 672": (model.stages[5][0].se.expand.weight, math.sqrt(2 / 672)),
    }
    for what, (weight, std) in stds.items():
        assert weight.mean().item() == pytest.approx(0.0, abs=0.05 * std), what
        assert weight.std().item() == pytest.approx(std, rel=0.03), what
    linear, bound = model.classifier.weight, 1 / math.sqrt(1000)
    assert linear.abs().max().item() <= bound and linear.abs().max().item() == pytest.approx(bound, rel=1e-3)
    assert linear.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.01)  # uniform
    assert not model.classifier.bias.any() and not model.stages[5][0].se.expand.bias.any()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((bn.weight == 1).all()) and not bn.bias.any() for bn in bns)
    reset = create_model("efficientnet_b0", num_classes=10)
    reset.classifier.weight.data.fill_(5.0)
    reset.reset_classifier(500)  # a new head gets the same dense initialiser
    assert reset.classifier.weight.abs().max().item() == pytest.approx(1 / math.sqrt(500), rel=1e-2)
    assert not reset.classifier.bias.any()


def test_set_dropout_and_set_drop_path_change_the_live_module():
    model = create_model("efficientnet_b0", num_classes=2, **TINY)
    model.set_dropout(0.7)
    assert model.dropout.p == 0.7
    model.train()
    features = torch.ones(64, model.num_features)
    dropped = (model.dropout(features) == 0).float().mean().item()
    assert 0.55 < dropped < 0.85
    model.set_drop_path(0.4)
    blocks = [b for stage in model.stages for b in stage]
    assert blocks[0].drop_path.p == 0.0
    assert blocks[-1].drop_path.p == pytest.approx(0.4 * (len(blocks) - 1) / len(blocks))
    assert model.drop_path_rate == 0.4


@pytest.mark.parametrize(("name", "kwargs", "blocks"), [
    ("efficientnet_b0", {}, 16),  # 1 + 2 + 2 + 3 + 3 + 4 + 1 blocks (facts 1)
    ("efficientnetv2_s", {}, 40),  # 2 + 4 + 4 + 6 + 9 + 15 (facts 2)
    ("efficientnet_b0", {"depth": 1.1, "drop_path_rate": 0.3}, 23),  # ceil(1.1 r): 2 + 3 + 3 + 4 + 4 + 5 + 2
])  # fmt: skip
def test_a_fresh_model_drops_block_k_of_k_at_rate_max_times_k_over_k(name, kwargs, blocks):
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    rate = kwargs.get("drop_path_rate", 0.2)  # facts 4: survival probability 0.8 by default
    assert [b.drop_path.p for stage in model.stages for b in stage] == pytest.approx(
        [rate * k / blocks for k in range(blocks)]
    )
    assert model.drop_path_rate == rate


def test_stochastic_depth_drops_whole_residual_branches_in_training_only():
    model = create_model("efficientnetv2_b0", num_classes=2, **TINY)
    block = next(b for stage in model.stages for b in stage if b.has_residual)
    block.drop_path.p = 1.0
    x = torch.randn(2, block.fused.conv.in_channels if hasattr(block, "fused") else block.expand.conv.in_channels, 8, 8)
    block.train()
    torch.testing.assert_close(block(x), x)  # the branch is always dropped
    block.eval()
    assert not torch.allclose(block(x), x)


def test_forward_head_with_pre_logits_gives_the_pooled_features_without_dropout_or_classifier():
    model = create_model("efficientnet_b0", num_classes=4, **TINY).eval()
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    pooled = model.forward_head(features, pre_logits=True)
    torch.testing.assert_close(pooled, features.mean((2, 3)))
    torch.testing.assert_close(model.forward_head(features), model.classifier(pooled))


def test_a_model_has_1000_classes_by_default_and_one_class_is_a_single_logit():
    # ImageNet's 1000 classes, as torchvision and timm build by default; one class is a valid (binary) head.
    for default in (create_model("efficientnet_b0", **TINY), EfficientNet(resolve_spec("efficientnet_b0", **TINY))):
        assert default.num_classes == 1000 and default.classifier.out_features == 1000
    single = create_model("efficientnet_b0", num_classes=1, **TINY)
    assert single.num_classes == 1 and single(torch.randn(2, 3, 32, 32)).shape == (2, 1)


def test_reset_classifier_replaces_the_head():
    model = create_model("efficientnet_b0", num_classes=1000, **TINY).eval()
    model.reset_classifier(7)
    assert model.num_classes == 7 and model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, model.num_features)
    with torch.device("meta"):
        elsewhere = create_model("efficientnet_b0", num_classes=3, **TINY)
    elsewhere.reset_classifier(5)  # built on the default device, moved to the model's
    assert elsewhere.classifier.weight.is_meta


def test_overrides_reach_every_layer():
    model = create_model("efficientnet_b0", num_classes=2, bn_momentum=0.1, bn_eps=1e-5, activation="relu", dropout=0.0)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(b.momentum, b.eps) for b in bns} == {(0.1, 1e-5)}
    assert not any(isinstance(m, nn.SiLU) for m in model.modules())
    assert model.dropout.p == 0.0


def test_v2_stem_and_head_round_without_v1s_ten_percent_bump():
    # width 0.4: 24 channels -> 9.6 -> 8 (automl V2's round_filters); V1's rule loses > 10% there and bumps to 16.
    with torch.device("meta"):
        v2 = create_model("efficientnetv2_s", width=0.4, head_channels=24)
        v1_rounding = create_model("efficientnetv2_s", width=0.4, head_channels=24, round_limit=0.9)
    assert (v2.stem.conv.out_channels, v2.head.conv.out_channels) == (8, 8)
    assert (v1_rounding.stem.conv.out_channels, v1_rounding.head.conv.out_channels) == (16, 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "efficientnet_b9"}, "unknown model 'efficientnet_b9'; did you mean"),
        ({"name": "efficientnet_b0", "widht": 2.0}, "unknown model option 'widht'"),
        ({"name": "efficientnet_b0", "phi": 1.0}, "apply to the compound bases"),
        ({"name": "efficientnet_b0", "padding": "valid"}, "padding must be 'symmetric' or 'same'"),
        ({"name": "efficientnet_b0", "activation": "tanhh"}, "unknown activation 'tanhh'"),
    ],
)
def test_bad_model_arguments_name_the_culprit(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        create_model(name, **kwargs)
