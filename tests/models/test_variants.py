"""Every named variant against docs/facts.md (paper figures, timm counts) and timm built locally."""

import pytest
import timm
import torch

from lit_effnet import create_model, list_models
from lit_effnet.models.complexity import count_macs, count_params

# facts 2, "Reference counts measured with timm 1.0 (tf_* models ...)", 1000 classes: params, MACs (G).
FACTS_COUNTS = {
    "efficientnet_b0": (5_288_548, 0.386),
    "efficientnet_b1": (7_794_184, 0.687),
    "efficientnet_b2": (9_109_994, 0.994),
    "efficientnet_b3": (12_233_232, 1.827),
    "efficientnet_b4": (19_341_616, 4.394),
    "efficientnet_b5": (30_389_784, 10.27),
    "efficientnet_b6": (43_040_704, 19.07),
    "efficientnet_b7": (66_347_960, 37.75),
    "efficientnetv2_b0": (7_139_704, 0.718),
    "efficientnetv2_b1": (8_141_052, 1.197),
    "efficientnetv2_b2": (10_096_086, 1.698),
    "efficientnetv2_b3": (14_358_406, 3.011),
    "efficientnetv2_s": (21_458_488, 8.37),
    "efficientnetv2_m": (54_139_356, 24.58),
    "efficientnetv2_l": (118_515_272, 56.08),
    "efficientnetv2_xl": (208_119_808, 93.35),
}


def _timm_name(name: str) -> str:
    return "tf_" + name


def test_list_models_names_every_variant_of_both_papers():
    expected = {f"efficientnet_b{i}" for i in range(9)} | {"efficientnet_l2"}
    expected |= {f"efficientnetv2_b{i}" for i in range(4)} | {f"efficientnetv2_{s}" for s in ("s", "m", "l", "xl")}
    assert set(list_models()) == expected


@pytest.mark.parametrize("name", list(FACTS_COUNTS))
def test_params_equal_the_facts_file_and_macs_are_within_10_percent_of_the_paper(name):
    with torch.device("meta"):
        model = create_model(name)
    params, macs = count_params(model), count_macs(model, model.spec.eval_size)
    assert params == FACTS_COUNTS[name][0]
    assert macs / 1e9 == pytest.approx(FACTS_COUNTS[name][1], rel=0.005)
    assert macs / 1e9 == pytest.approx(model.spec.paper.macs_g, rel=0.10)
    assert params / 1e6 == pytest.approx(model.spec.paper.params_m, rel=0.05)


@pytest.mark.parametrize("name", list_models())
def test_params_equal_timms_tf_counterpart_built_locally(name):
    with torch.device("meta"):
        ours = count_params(create_model(name, num_classes=17))
        theirs = count_params(timm.create_model(_timm_name(name), num_classes=17))
    assert ours == theirs


def test_variant_recipe_sizes_and_normalisation_follow_the_tables():
    s = create_model("efficientnetv2_s", num_classes=2).spec
    assert (s.train_size, s.eval_size, s.dropout, s.mean, s.std) == (300, 384, 0.2, (0.5,) * 3, (0.5,) * 3)
    b3 = create_model("efficientnet_b3", num_classes=2).spec
    assert (b3.train_size, b3.eval_size, b3.dropout, b3.mean) == (300, 300, 0.3, (0.485, 0.456, 0.406))
    assert b3.crop_pct == pytest.approx(0.904)  # TF: resize to 332, crop 300


@pytest.mark.parametrize("name", [*list_models(), "efficientnet", "efficientnetv2"])
def test_every_variant_builds_its_batchnorms_with_the_papers_momentum_and_eps_by_default(name):
    # facts 4: V1 TF momentum 0.99, i.e. PyTorch 0.01; the V2 code TF 0.9, i.e. PyTorch 0.1; eps 1e-3 for both.
    with torch.device("meta"):
        model = create_model(name)
    expected = (0.01, 1e-3) if model.spec.family == "efficientnet" else (0.1, 1e-3)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) > 20 and {(bn.momentum, bn.eps) for bn in bns} == {expected}


@pytest.mark.parametrize("name", list_models())
def test_every_variants_blocks_drop_paths_at_the_rates_of_timms_tf_counterpart(name):
    # timm's tf_* builders spread drop_path_rate * k / K over the K blocks; ours must match block for block.
    with torch.device("meta"):
        ours = create_model(name)
        theirs = timm.create_model(_timm_name(name), drop_path_rate=ours.spec.drop_path_rate)
    rates = [block.drop_path.p for stage in ours.stages for block in stage]
    expected = [getattr(block.drop_path, "drop_prob", 0.0) for stage in theirs.blocks for block in stage]
    assert rates == pytest.approx(expected) and ours.spec.drop_path_rate == 0.2  # facts 4: survival 0.8
