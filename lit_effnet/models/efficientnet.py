"""The EfficientNet / EfficientNetV2 network, built from a `VariantSpec`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lit_effnet.models.blocks import BLOCKS
from lit_effnet.models.layers import ConvBNAct, LayerOptions
from lit_effnet.models.scaling import drop_path_rates, round_filters, round_repeats
from lit_effnet.models.specs import BlockKind, VariantSpec


@dataclass(frozen=True, kw_only=True)
class ScaledStage:
    """A stage after width and depth scaling: what is actually built."""

    block: BlockKind
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int
    repeats: int
    se_ratio: float


def scaled_stem_channels(spec: VariantSpec) -> int:
    return round_filters(spec.stem_channels, spec.width, round_limit=spec.round_limit)


def scaled_head_channels(spec: VariantSpec) -> int:
    return round_filters(spec.head_channels, spec.width, round_limit=spec.round_limit)


def scaled_stages(spec: VariantSpec) -> list[ScaledStage]:
    """Apply the width (channels) and depth (repeats) multipliers to every stage of the table."""
    stages, in_channels = [], scaled_stem_channels(spec)
    for stage in spec.stages:
        out_channels = round_filters(stage.out_channels, spec.width, round_limit=spec.round_limit)
        stages.append(
            ScaledStage(
                block=stage.block,
                kernel=stage.kernel,
                stride=stage.stride,
                expand=stage.expand,
                in_channels=in_channels,
                out_channels=out_channels,
                repeats=round_repeats(stage.repeats, spec.depth),
                se_ratio=stage.se_ratio,
            )
        )
        in_channels = out_channels
    return stages


class EfficientNet(nn.Module):
    """stem conv3x3/2 -> stages of (Fused-)MBConv blocks -> head conv1x1 -> pool -> dropout -> linear."""

    def __init__(self, spec: VariantSpec, num_classes: int = 1000) -> None:
        super().__init__()
        self.spec = spec
        options = LayerOptions(
            padding=spec.padding, bn_momentum=spec.bn_momentum, bn_eps=spec.bn_eps, activation=spec.activation
        )
        stages = scaled_stages(spec)
        total_blocks = sum(s.repeats for s in stages)
        rates = iter(drop_path_rates(total_blocks, spec.drop_path_rate))
        self.drop_path_rate = spec.drop_path_rate

        self.stem = ConvBNAct(3, scaled_stem_channels(spec), 3, options, stride=2)
        self.stages = nn.Sequential()
        for stage in stages:
            block_cls = BLOCKS[stage.block]
            blocks = [
                block_cls(
                    stage.in_channels if i == 0 else stage.out_channels,
                    stage.out_channels,
                    kernel=stage.kernel,
                    stride=stage.stride if i == 0 else 1,  # only the first block strides
                    expand=stage.expand,
                    se_ratio=stage.se_ratio,
                    drop_path_rate=next(rates),
                    options=options,
                )
                for i in range(stage.repeats)
            ]
            self.stages.append(nn.Sequential(*blocks))
        self.num_features = scaled_head_channels(spec)
        self.head = ConvBNAct(stages[-1].out_channels, self.num_features, 1, options)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout)
        self.num_classes = num_classes
        self.classifier = self._new_classifier(num_classes)
        self.apply(_init_weights_tf)

    def _new_classifier(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        classifier = nn.Linear(self.num_features, num_classes)
        _init_weights_tf(classifier)
        return classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the head conv, (N, num_features, H/32, W/32)."""
        return self.head(self.stages(self.stem(x)))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(features).flatten(1)
        return x if pre_logits else self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one (0 classes: return pooled features)."""
        device = self.head.conv.weight.device
        self.num_classes = num_classes
        self.classifier = self._new_classifier(num_classes).to(device)

    def set_dropout(self, p: float) -> None:
        """Change the classifier dropout on the live module (progressive learning changes it per stage)."""
        self.dropout.p = float(p)

    def set_drop_path(self, max_rate: float) -> None:
        """Re-spread stochastic depth linearly over all blocks with a new maximum rate."""
        blocks = [block for stage in self.stages for block in stage]
        for block, rate in zip(blocks, drop_path_rates(len(blocks), max_rate)):
            block.drop_path.p = rate
        self.drop_path_rate = float(max_rate)

    @property
    def dropout_rate(self) -> float:
        return self.dropout.p


def _init_weights_tf(module: nn.Module) -> None:
    """The official TF initialisers (timm's `_init_weight_goog`): fan-out normal convs, uniform dense."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        bound = 1.0 / math.sqrt(module.weight.size(0))
        nn.init.uniform_(module.weight, -bound, bound)
        nn.init.zeros_(module.bias)
