"""MBConv (V1, V2 stages 4+) and Fused-MBConv (V2 stages 1-3), facts 1 and 2."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from lit_effnet.models.layers import ConvBNAct, LayerOptions, SqueezeExcite


class _ResidualBlock(nn.Module):
    """Adds the input back, through stochastic depth, when stride 1 and in == out channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, drop_path_rate: float) -> None:
        super().__init__()
        self.has_residual = stride == 1 and in_channels == out_channels
        self.drop_path = StochasticDepth(drop_path_rate, "row")

    def residual(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.drop_path(out) + x if self.has_residual else out


class MBConv(_ResidualBlock):
    """[expand 1x1] -> depthwise kxk -> SE -> project 1x1 (no activation)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int,
        expand: int,
        se_ratio: float,
        drop_path_rate: float,
        options: LayerOptions,
    ) -> None:
        super().__init__(in_channels, out_channels, stride, drop_path_rate)
        mid = in_channels * expand
        self.expand = ConvBNAct(in_channels, mid, 1, options) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, kernel, options, stride=stride, groups=mid)
        # SE width comes from the block's INPUT channels (facts 1).
        reduced = max(1, int(in_channels * se_ratio))
        self.se = SqueezeExcite(mid, reduced, options.activation) if se_ratio > 0 else nn.Identity()
        self.project = ConvBNAct(mid, out_channels, 1, options, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return self.residual(x, out)


class FusedMBConv(_ResidualBlock):
    """expand 1x1 + depthwise kxk fused into one regular kxk conv; with expand 1 that conv is the block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int,
        expand: int,
        se_ratio: float,
        drop_path_rate: float,
        options: LayerOptions,
    ) -> None:
        super().__init__(in_channels, out_channels, stride, drop_path_rate)
        # With expand 1 the kxk conv is the whole block: conv -> BN -> act, no projection (facts 2).
        mid = out_channels if expand == 1 else in_channels * expand
        self.fused = ConvBNAct(in_channels, mid, kernel, options, stride=stride)
        reduced = max(1, int(in_channels * se_ratio))
        self.se = SqueezeExcite(mid, reduced, options.activation) if se_ratio > 0 else nn.Identity()
        self.project = ConvBNAct(mid, out_channels, 1, options, act=False) if expand != 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.fused(x)))
        return self.residual(x, out)


BLOCKS: dict[str, type[MBConv] | type[FusedMBConv]] = {"mbconv": MBConv, "fused_mbconv": FusedMBConv}
