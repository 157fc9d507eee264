import itertools

import pytest
import torch

from lit_effnet import create_model
from lit_effnet.models.complexity import count_macs
from lit_effnet.models.scaling import (
    compound_grid,
    compound_scale,
    drop_path_rates,
    round_filters,
    round_repeats,
    scaled_resolution,
)


@pytest.mark.parametrize(
    ("channels", "width", "round_limit", "expected"),
    [
        (32, 1.0, 0.9, 32),
        (16, 1.4, 0.9, 24),  # B4 stage 1: 22.4 -> 24
        (40, 1.1, 0.9, 48),  # B2 stage 3: 44 -> 48 (rounds half up)
        (24, 1.1, 0.9, 24),  # 26.4 -> 24, within 10%
        (1280, 4.3, 0.9, 5504),  # L2 head
        (16, 0.1, 0.9, 8),  # never below the divisor
        (12, 1.0, 0.9, 16),  # 12 -> 16 (rounds half up)
        (100, 0.47, 0.9, 48),  # 47 -> 48
        (52, 1.0, 0.9, 56),  # rounds half up
        (20, 1.0, 0.9, 24),
        (36, 1.0, 0.0, 40),
    ],
)
def test_round_filters_follows_the_tf_rule(channels, width, round_limit, expected):
    assert round_filters(channels, width, round_limit=round_limit) == expected


def test_round_filters_bumps_only_with_the_v1_round_limit():
    # 2.2 * 9 = 19.8 -> 16 loses 19% (> 10%): V1 bumps to 24, V2 (no limit) keeps 16.
    assert round_filters(9, 2.2, round_limit=0.9) == 24
    assert round_filters(9, 2.2, round_limit=0.0) == 16
    assert round_filters(9, 2.2) == 24 and round_filters(20, 1.0) == 24  # the default is V1's limit, 0.9


def test_round_filters_bumps_only_when_rounding_loses_more_than_the_limit_not_exactly_the_limit():
    # 16 -> 12 (divisor 12) keeps exactly 0.75 of the channels: no bump at round_limit 0.75 (TF's strict <).
    assert round_filters(16, 1.0, divisor=12, round_limit=0.75) == 12
    assert round_filters(16, 1.0, divisor=12, round_limit=0.76) == 24


@pytest.mark.parametrize(("repeats", "depth", "expected"), [(1, 1.1, 2), (3, 1.1, 4), (4, 3.1, 13), (2, 1.0, 2)])
def test_round_repeats_rounds_up(repeats, depth, expected):
    assert round_repeats(repeats, depth) == expected


def test_compound_scale_at_phi_1_is_the_papers_grid_point_and_doubles_flops():
    scale = compound_scale(1.0)
    assert (scale.phi, scale.depth, scale.width, scale.resolution) == (1.0, 1.2, 1.1, 1.15)
    assert scale.flops_factor == pytest.approx(1.92, abs=0.005)  # alpha * beta^2 * gamma^2 ~= 2 (facts 1)
    assert compound_scale(3.0).flops_factor == pytest.approx(scale.flops_factor**3, rel=1e-9)


@pytest.mark.parametrize("coefficient", ["alpha", "beta", "gamma"])
def test_compound_scale_rejects_coefficients_below_one_and_accepts_one(coefficient):
    with pytest.raises(ValueError, match="must be >= 1"):
        compound_scale(1.0, **{coefficient: 0.9})
    assert compound_scale(2.0, **{coefficient: 1.0}).flops_factor > 1.0  # the constraint is alpha, beta, gamma >= 1


def test_compound_grid_by_default_searches_1_to_2_in_steps_of_0_05_for_2x_flops_within_5_percent():
    grid = compound_grid()  # the paper's step 1: alpha * beta^2 * gamma^2 ~= 2 on a 0.05 grid over [1, 2]
    assert (1.2, 1.1, 1.15) in grid
    assert grid[0] == (2.0, 1.0, 1.0)  # exactly 2x: the top of the range is searched
    assert {v for point in grid for v in point} <= {round(1.0 + 0.05 * i, 10) for i in range(21)}
    for alpha, beta, gamma in grid:
        assert abs(alpha * beta**2 * gamma**2 - 2.0) <= 0.1
    errors = [abs(a * b**2 * g**2 - 2.0) for a, b, g in grid]
    assert errors == sorted(errors)
    # the tolerance is inclusive: with none, only the exact point of {1, 2}^3 is left
    assert compound_grid(2.0, step=1.0, max_value=2.0, tolerance=0.0) == [(2.0, 1.0, 1.0)]


def test_drop_path_rates_rise_linearly_from_zero_over_all_blocks():
    rates = drop_path_rates(16, 0.2)
    assert rates[0] == 0.0
    assert rates[-1] == pytest.approx(0.2 * 15 / 16)
    assert all(b > a for a, b in itertools.pairwise(rates))


def test_scaled_resolution_is_224_gamma_phi():
    assert scaled_resolution(0) == 224
    assert scaled_resolution(1) == round(224 * 1.15)
    assert scaled_resolution(2.5) == round(224 * 1.15**2.5)


def test_compound_model_macs_grow_by_the_flops_factor_per_unit_of_phi():
    # Measured, not assumed: one more unit of phi costs ~ alpha * beta^2 * gamma^2 (~1.92x) MACs. From phi=0 to
    # 1 it is 2.6x, because ceil(1 * 1.2) doubles B0's one-block stages; from phi=2 on rounding matters less.
    macs = {}
    for phi in (2.0, 3.0):
        with torch.device("meta"):
            model = create_model("efficientnet", phi=phi)
        macs[phi] = count_macs(model, model.spec.train_size)
        assert model.spec.train_size == scaled_resolution(phi)
        assert model.spec.width == pytest.approx(1.1**phi) and model.spec.depth == pytest.approx(1.2**phi)
    assert macs[3.0] / macs[2.0] == pytest.approx(compound_scale(1.0).flops_factor, rel=0.10)
