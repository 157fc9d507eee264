"""timm and torchvision networks built by `model.name: timm:NAME / torchvision:NAME`, width and depth on their knobs."""

import pytest
import torch
from torch import nn

from lit_effnet.errors import ConfigError
from lit_effnet.models.baselines import MOBILENETV2_STAGES, baseline_spec, create_baseline, unscalable
from lit_effnet.models.scaling import round_filters


def stages(net: nn.Module) -> list[nn.Sequential]:
    return [net.layer1, net.layer2, net.layer3, net.layer4]


def test_a_timm_resnet_scales_its_blocks_per_stage_by_depth_and_its_channels_per_stage_by_width():
    net = create_baseline("timm:resnet18", num_classes=7, depth=1.5, width=0.5)
    assert [len(stage) for stage in stages(net)] == [3, 3, 3, 3]  # ceil(2 x 1.5)
    assert [stage[0].conv2.out_channels for stage in stages(net)] == [32, 64, 128, 256]
    assert net.conv1.out_channels == 64 and net.fc.out_features == 7  # timm's 7x7 stem stays 64 wide
    wide = create_baseline("timm:resnet50", num_classes=10, depth=1.2, width=1.1)
    assert [len(stage) for stage in stages(wide)] == [4, 5, 8, 4]  # ceil of (3, 4, 6, 3) x 1.2
    planes = [round_filters(c, 1.1) for c in (64, 128, 256, 512)]  # 72, 144, 280, 560: multiples of 8
    assert [stage[0].conv3.out_channels for stage in stages(wide)] == [4 * p for p in planes]  # bottleneck x4


def test_timm_mobilenets_take_width_as_a_channel_multiplier_on_their_own_and_depth_per_stage():
    base, scaled = create_baseline("timm:mobilenetv2_050"), create_baseline("timm:mobilenetv2_050", width=2, depth=2)
    assert base.conv_stem.out_channels == 16 and scaled.conv_stem.out_channels == 32  # 32 x 0.5, 32 x 0.5 x 2
    assert [len(s) for s in base.blocks] == [n for _, _, n, _ in MOBILENETV2_STAGES]
    assert [len(s) for s in scaled.blocks] == [2 * n for _, _, n, _ in MOBILENETV2_STAGES]
    v1 = create_baseline("timm:mobilenetv1_100", width=0.25)
    assert v1.conv_stem.out_channels == 8 and v1.blocks[-1][-1].conv_pw.out_channels == 256  # 1024 x 0.25


def test_torchvision_mobilenet_v2_and_bottleneck_resnets_scale_on_their_own_knobs():
    mobile = create_baseline("torchvision:mobilenet_v2", num_classes=5, depth=2, width=0.5)
    from torchvision.models.mobilenetv2 import InvertedResidual

    blocks = [m for m in mobile.features if isinstance(m, InvertedResidual)]
    assert len(blocks) == 2 * sum(n for _, _, n, _ in MOBILENETV2_STAGES)
    assert mobile.features[0][0].out_channels == 16  # 32 x 0.5
    resnet = create_baseline("torchvision:resnet50", depth=2, width=1.5)
    assert [len(stage) for stage in stages(resnet)] == [6, 8, 12, 6]
    # the bottlenecks' 3x3 widths grow (torchvision's wide-ResNet knob), their outputs stay 256..2048
    assert resnet.layer1[0].conv2.out_channels == 96 and resnet.layer1[0].conv3.out_channels == 256


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("torchvision:resnet18", {"width": 1.2}, "BasicBlock takes no width_per_group; use timm:resnet18"),
        ("timm:vit_tiny_patch16_224", {"depth": 2.0}, "has no blocks-per-stage or channels-per-stage table"),
        ("torchvision:resnet18", {"dropout": 0.2}, "torchvision:resnet18 has no classifier dropout"),
        ("torchvision:mobilenet_v2", {"drop_path_rate": 0.2}, "has no stochastic depth"),
        ("timm:resnet18", {"layers": [1, 1, 1, 1]}, "set width and depth instead"),
        ("timm:resnet18", {"bn_momentum": 0.1}, "model.model_kwargs for timm:resnet18"),
        ("timm:resnet_no_such", {}, "timm has no such model"),
        ("torchvision:no_such", {}, "torchvision.models has no such"),
    ],
)
def test_what_a_library_network_cannot_take_stops_in_one_line_naming_it(name, kwargs, message):
    with pytest.raises(ConfigError, match=message) as err, torch.device("meta"):
        create_baseline(name, **kwargs)
    assert "\n" not in str(err.value)


def test_a_network_outside_the_tables_builds_unscaled_and_says_both_dimensions_are_missing():
    with torch.device("meta"):
        net = create_baseline("timm:vit_tiny_patch16_224", num_classes=3)
    assert net.head.out_features == 3
    assert set(unscalable("timm:vit_tiny_patch16_224")) == {"depth", "width"}
    assert set(unscalable("torchvision:resnet18")) == {"width"} and unscalable("timm:resnet18") == {}


def test_dropout_and_drop_path_reach_timm_under_its_names():
    net = create_baseline("timm:resnet18", dropout=0.3, drop_path_rate=0.1)
    assert net.drop_rate == 0.3 and max(m.drop_prob for m in net.modules() if hasattr(m, "drop_prob")) > 0
    assert baseline_spec("timm:resnet18", dropout=0.3).dropout == 0.3
    assert baseline_spec("torchvision:mobilenet_v2").dropout == 0.2  # torchvision's own default


def test_a_scheduled_dropout_reaches_a_timm_resnets_classifier_through_the_lightning_module():
    from lit_effnet.training import LitEfficientNet

    module = LitEfficientNet("timm:resnet18", num_classes=10, model_kwargs={"width": 0.25})
    assert module.apply_stage({"dropout": 0.9}) == {"dropout": 0.9} and module.net.drop_rate == 0.9
    module.train()
    features = torch.ones(4, module.net.num_features)
    torch.manual_seed(0)
    dropped = module.net.forward_head(features.view(4, -1, 1, 1))
    module.apply_stage({"dropout": 0.0})
    kept = module.net.forward_head(features.view(4, -1, 1, 1))
    assert not torch.allclose(dropped, kept)  # the forward pass reads the value the stage set
