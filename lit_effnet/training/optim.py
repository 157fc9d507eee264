"""The papers' optimisation recipe (facts 4) as small pure functions."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from lit_effnet.errors import ConfigError

OptimizerName = Literal["rmsprop_tf", "sgd", "adamw"]
ScheduleName = Literal["exponential", "cosine", "constant"]
WeightDecayExclude = Literal["bias_and_norm", "norm"]
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def global_batch_size(devices: int, per_device: int, accumulation: int = 1) -> int:
    """Images per optimizer step over all devices."""
    return devices * per_device * accumulation


def scaled_lr(lr_per_256: float, global_batch: int) -> float:
    """Linear scaling: the recipe's LR is per 256 images (V2 code: 0.016 per 256, 0.256 at 4096)."""
    return lr_per_256 * global_batch / 256


def decay_flags(net: nn.Module, exclude: WeightDecayExclude = "bias_and_norm") -> dict[int, bool]:
    """Whether each parameter (by id) is weight-decayed: never normalisation layers' (BN gamma/beta); biases
    not under "bias_and_norm" (the V2 code: weight_decay_exclude '.*(bias|gamma|beta).*'), yes under "norm"
    (the V1 code decays every variable but batch normalisation's), facts 4."""
    flags = {}
    for module in net.modules():
        is_norm = isinstance(module, NORM_LAYERS)
        for param in module.parameters(recurse=False):
            flags[id(param)] = not is_norm and (param.ndim > 1 or exclude == "norm")
    return flags


def param_groups(
    params: Iterable[nn.Parameter], decay: dict[int, bool], weight_decay: float, lr: float | None = None
) -> list[dict]:
    """`params` split into a decayed and an undecayed group by `decay` (from `decay_flags`); empty groups dropped."""
    decayed, undecayed = [], []
    for param in params:
        if param.requires_grad:
            (decayed if decay[id(param)] else undecayed).append(param)
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0}]
    if lr is not None:
        for group in groups:
            group["lr"] = lr
    return [group for group in groups if group["params"]]


def build_optimizer(
    name: OptimizerName, groups: Iterable[dict], lr: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """RMSProp with TF semantics (the papers'), SGD with Nesterov momentum, or AdamW."""
    if name == "rmsprop_tf":
        from timm.optim import RMSpropTF

        # TF: decay 0.9, momentum 0.9, epsilon 1e-3 inside the sqrt, square average initialised to 1.
        return RMSpropTF(groups, lr=lr, alpha=0.9, eps=1e-3, momentum=momentum)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ConfigError(f"unknown optimizer {name!r} (model.optimizer); choose from rmsprop_tf, sgd, adamw")


def lr_multiplier(
    step: int,
    *,
    schedule: ScheduleName,
    warmup_steps: int,
    total_steps: int,
    decay_steps: float = 1.0,
    decay_rate: float = 0.97,
) -> float:
    """Factor on the base LR after `step` optimizer steps.

    Linear warmup, then `exponential`: decay_rate ** floor(step / decay_steps) counted from step 0,
    as TF's staircase exponential_decay (x0.97 every 2.4 epochs); `cosine`: half cosine from the end
    of warmup to zero at total_steps; `constant`: 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "exponential":
        return decay_rate ** math.floor(step / decay_steps)
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "constant":
        return 1.0
    raise ConfigError(f"unknown model.lr_schedule {schedule!r}; choose from exponential, cosine, constant")
