"""The input a network expects (sizes, crop, interpolation, normalisation), read off the network itself.

As timm's `resolve_data_config(model=...)`: the data settings come from the model, explicitly and in one
direction. Ours carry them in their spec row; timm models in their `pretrained_cfg`; torchvision models
carry none, so their data settings must be given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import nn

from lit_effnet.models.efficientnet import EfficientNet


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    train_size: int
    eval_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_interpolation: str
    eval_interpolation: str
    train_crop_scale: tuple[float, float]


@runtime_checkable
class ProvidesDataConfig(Protocol):
    """What a LightningModule offers its data: the input its network expects (LitEfficientNet.data_config)."""

    def data_config(self) -> DataConfig | None: ...


def data_config(net: nn.Module) -> DataConfig | None:
    """The data settings `net` was designed for, or None when it does not say (torchvision, custom)."""
    if isinstance(net, EfficientNet):
        spec = net.spec
        return DataConfig(
            train_size=spec.train_size,
            eval_size=spec.eval_size,
            crop_pct=spec.crop_pct,
            mean=spec.mean,
            std=spec.std,
            train_interpolation=spec.train_interpolation,
            eval_interpolation=spec.eval_interpolation,
            train_crop_scale=spec.train_crop_scale,
        )
    cfg = getattr(net, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "input_size" in cfg:  # a timm model
        crop_pct = float(cfg.get("crop_pct", 0.875))
        if "test_input_size" in cfg:  # timm evaluates larger than it trains, at test_crop_pct when given
            eval_size, crop_pct = cfg["test_input_size"][-1], float(cfg.get("test_crop_pct", crop_pct))
        else:
            eval_size = cfg["input_size"][-1]
        return DataConfig(
            train_size=int(cfg["input_size"][-1]),
            eval_size=int(eval_size),
            crop_pct=crop_pct,
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            train_interpolation=cfg.get("interpolation", "bicubic"),
            eval_interpolation=cfg.get("interpolation", "bicubic"),
            train_crop_scale=(0.08, 1.0),  # timm's train default
        )
    return None
