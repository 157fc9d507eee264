"""What a study computes from its coefficients (lit_effnet/study.py), without training: the scaled shapes, the
models' kwargs and overrides each run gets, the grid's points and the tables written from the results."""

import json
import math

import pytest

from lit_effnet.models.scaling import ALPHA, BETA, GAMMA
from lit_effnet.study import Base, Shape, compound, grid_runs, write_table


@pytest.fixture(scope="module")
def base() -> Base:
    return Base(["--config", "quickstart"])  # V2-B0 at width 0.5, depth 0.5, trained up to 64 px


def test_the_base_is_the_configs_model_at_the_last_stages_size(base):
    assert (base.name, base.resolution, base.shape) == ("efficientnetv2_b0", 64, Shape(width=1, depth=1, resolution=64))
    assert base.kwargs(base.shape) == {"width": 0.5, "depth": 0.5, "bn_momentum": 0.1, "drop_path_rate": 0.0}


def test_compound_scales_depth_width_and_resolution_by_alpha_beta_gamma_to_the_power_phi(base):
    shape = compound(base, 2.0)
    assert shape == Shape(width=pytest.approx(1.1**2), depth=pytest.approx(1.2**2), resolution=85)  # 64 x 1.3225
    assert compound(base, 1.0, 1.3, 1.05, 1.2) == Shape(width=1.05, depth=1.3, resolution=77)  # round(76.8)
    kwargs = base.kwargs(shape)  # the multipliers apply to the config's own width and depth
    assert kwargs["width"] == pytest.approx(0.5 * 1.21) and kwargs["depth"] == pytest.approx(0.5 * 1.44)
    overrides = base.overrides(shape)
    assert json.loads(overrides[1]) == kwargs and overrides[0] == "--model.model_kwargs"
    assert overrides[2:] == ["--data.image_size", "85", "--data.eval_size", "85", "--progressive", "null"]
    # The multiply-adds are counted on the scaled model at the scaled size: 74 px, width 0.55, depth 0.6 here
    # (about 2.9x the base's at this small width, where rounding to 8 channels weighs more than 1.92).
    assert base.macs(compound(base, 1.0)) == base.macs(Shape(width=1.1, depth=1.2, resolution=74))
    assert base.macs(compound(base, 1.0)) > 2 * base.macs(base.shape)


def test_the_grid_holds_the_points_whose_flops_factor_is_two_and_the_papers_point_each_once_per_seed(base):
    runs = grid_runs(base, step=0.5, tolerance=0.05, seeds=[0, 3])  # a coarse grid: (2, 1, 1) alone on it
    points = [(r.fields["alpha"], r.fields["beta"], r.fields["gamma"]) for r in runs]
    assert all(abs(a * b**2 * g**2 / 2 - 1) <= 0.05 or (a, b, g) == (ALPHA, BETA, GAMMA) for a, b, g in points)
    assert points.count((ALPHA, BETA, GAMMA)) == 2 and len(set(points)) * 2 == len(runs)
    assert [r.fields["seed"] for r in runs] == [0, 3] * (len(runs) // 2)
    assert sorted(set(points)) == [(1.2, 1.1, 1.15), (2.0, 1.0, 1.0)]
    for run in runs:
        a, b, g = run.fields["alpha"], run.fields["beta"], run.fields["gamma"]
        shape = compound(base, 1.0, a, b, g)
        assert run.fields["macs"] == base.macs(shape) and run.fields["params"] == base.params(shape)
        assert run.overrides == [*base.overrides(shape), "--seed_everything", str(run.fields["seed"])]
        assert run.name == f"a{a:g}-b{b:g}-g{g:g}-seed{run.fields['seed']}"
    assert not math.isclose(runs[0].fields["macs"], runs[-1].fields["macs"])


def test_the_tables_hold_one_row_per_run_in_the_columns_asked_for(tmp_path):
    results = [
        {"method": "compound", "macs": 1234567, "acc1": 0.912345, "curve": [1, 2]},
        {"method": "depth", "macs": 1200000, "acc1": 0.9},
        {"method": "width", "acc1": 0.8},  # a column missing from a result is an empty cell in both tables
    ]
    write_table(tmp_path, results, ["method", "macs", "acc1"])
    assert (tmp_path / "results.csv").read_text().splitlines() == [
        "method,macs,acc1", "compound,1234567,0.912345", "depth,1200000,0.9", "width,,0.8",
    ]  # fmt: skip
    assert (tmp_path / "results.md").read_text().splitlines() == [
        "| method | macs | acc1 |", "|---|---|---|", "| compound | 1,234,567 | 0.9123 |", "| depth | 1,200,000 | 0.9 |",
        "| width |  | 0.8 |",
    ]  # fmt: skip
