"""Parameter and multiply-add counts (the papers' "FLOPs" are multiply-adds, facts 1)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-adds of one forward pass at `image_size`; torch.utils.flop_counter counts 2 FLOPs per MAC.

    Runs on the model's device; on the meta device it costs no memory, so the largest variants count too.
    """
    device = next(model.parameters()).device
    x = torch.empty(1, 3, image_size, image_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
