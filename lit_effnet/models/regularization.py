"""Dropout and drop path of a live network, for ours, timm's and torchvision's classifiers alike.

Progressive learning changes both per stage. Each library keeps them differently: ours has
`set_dropout`/`set_drop_path`; timm applies `drop_rate` functionally in `forward_head` and keeps a
`DropPath(drop_prob)` per block; torchvision has an `nn.Dropout` in its `classifier` and
`StochasticDepth(p)` per block. `Regularizer` finds the receivers once and refuses a knob that has
none, instead of setting an attribute that nothing reads.
"""

from __future__ import annotations

from torch import nn
from torchvision.ops import StochasticDepth

from lit_effnet.errors import ConfigError
from lit_effnet.models.efficientnet import EfficientNet
from lit_effnet.models.scaling import drop_path_rates


def _drop_path_modules(net: nn.Module) -> list[nn.Module]:
    """Per-block stochastic-depth layers in registration order (torchvision's and timm's)."""
    from timm.layers import DropPath

    return [m for m in net.modules() if isinstance(m, (StochasticDepth, DropPath))]


def _is_timm(net: nn.Module) -> bool:
    # timm models carry their pretrained_cfg; their classifier dropout is the `drop_rate` attribute.
    return hasattr(net, "pretrained_cfg") and isinstance(getattr(net, "drop_rate", None), (int, float))


class Regularizer:
    """Sets the classifier dropout and the maximum drop-path rate of `net` on the live modules."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.name = type(net).__name__
        if isinstance(net, EfficientNet):
            self._dropouts: list[nn.Dropout] = [net.dropout]
        elif _is_timm(net):
            self._dropouts = []
        else:
            head = getattr(net, "classifier", None)
            self._dropouts = [m for m in head.modules() if isinstance(m, nn.Dropout)] if head is not None else []
        self._drop_paths = _drop_path_modules(net)

    def can_set(self, knob: str) -> bool:
        """Whether the network has something that `knob` ("dropout" or "drop_path_rate") acts on."""
        return bool(self._drop_paths) if knob == "drop_path_rate" else bool(self._dropouts) or _is_timm(self.net)

    def require(self, knob: str, key: str) -> None:
        """Stop with one line when `knob` (configured as `key`) has nothing to act on in this network."""
        if self.can_set(knob):
            return
        what = {"dropout": "classifier dropout", "drop_path_rate": "drop-path (stochastic depth) layers"}[knob]
        hint = " (timm: build it with drop_path_rate > 0)" if knob == "drop_path_rate" and _is_timm(self.net) else ""
        raise ConfigError(f"{key} is scheduled, but {self.name} has no {what} to receive it{hint}")

    @property
    def dropout(self) -> float:
        """The classifier dropout the network applies now."""
        if _is_timm(self.net):
            return float(self.net.drop_rate)
        return float(self._dropouts[0].p)

    def set_dropout(self, p: float) -> None:
        if _is_timm(self.net):
            self.net.drop_rate = float(p)
        for module in self._dropouts:
            module.p = float(p)

    def set_drop_path(self, max_rate: float) -> None:
        """Rates rising linearly over the blocks, block k of K at max_rate * k / K (facts 4)."""
        for module, rate in zip(self._drop_paths, drop_path_rates(len(self._drop_paths), max_rate)):
            if isinstance(module, StochasticDepth):
                module.p = rate
            else:
                module.drop_prob = rate
