"""Scaling rules as small pure functions (facts 1 and 4)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lit_effnet.errors import ConfigError

# Paper step 1: grid search at phi = 1 on B0 found these (facts 1).
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
BASE_RESOLUTION = 224


def round_filters(channels: int, width: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Scale a channel count by `width` and round it to a multiple of `divisor` (facts 1).

    V1 adds `divisor` when rounding loses more than 10% (round_limit 0.9); V2 does not (round_limit 0).
    """
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < round_limit * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's block count by `depth`, rounding up (facts 1)."""
    return math.ceil(repeats * depth)


def drop_path_rates(total_blocks: int, max_rate: float) -> list[float]:
    """Per-block stochastic-depth rates rising linearly over ALL blocks: block k drops max_rate * k / K."""
    return [max_rate * k / total_blocks for k in range(total_blocks)]


@dataclass(frozen=True, kw_only=True)
class CompoundScale:
    """Depth, width and resolution multipliers for one value of phi."""

    phi: float
    depth: float
    width: float
    resolution: float

    @property
    def flops_factor(self) -> float:
        """FLOPs grow ~ d * w^2 * r^2 (facts 1)."""
        return self.depth * self.width**2 * self.resolution**2


def compound_scale(phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> CompoundScale:
    """d = alpha^phi, w = beta^phi, r = gamma^phi (paper eq. 3)."""
    if min(alpha, beta, gamma) < 1:
        raise ConfigError(f"alpha, beta, gamma must be >= 1, got {alpha}, {beta}, {gamma}")
    return CompoundScale(phi=phi, depth=alpha**phi, width=beta**phi, resolution=gamma**phi)


def scaled_resolution(phi: float, gamma: float = GAMMA, base: int = BASE_RESOLUTION) -> int:
    """Input size for phi: base * gamma^phi, rounded to a whole pixel."""
    return round(base * gamma**phi)


def compound_grid(
    flops_factor: float = 2.0, step: float = 0.05, max_value: float = 2.0, tolerance: float = 0.05
) -> list[tuple[float, float, float]]:
    """The paper's step-1 search space: (alpha, beta, gamma) >= 1 on a grid with alpha*beta^2*gamma^2 ~= factor.

    Returns the grid points whose FLOPs factor is within `tolerance` (relative) of `flops_factor`,
    closest first.
    """
    n = round((max_value - 1.0) / step)
    values = [round(1.0 + i * step, 10) for i in range(n + 1)]
    hits = []
    for alpha in values:
        for beta in values:
            for gamma in values:
                error = abs(alpha * beta**2 * gamma**2 - flops_factor) / flops_factor
                if error <= tolerance:
                    hits.append((error, (alpha, beta, gamma)))
    return [point for _, point in sorted(hits)]
