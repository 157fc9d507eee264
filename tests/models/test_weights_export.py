"""Weights out: our random models (scrambled BN statistics) as timm / torchvision modules with equal logits."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from lit_effnet import create_model
from lit_effnet.models.weights import (
    NoCounterpartError,
    from_timm,
    from_torchvision,
    timm_name,
    to_timm,
    to_torchvision,
    torchvision_name,
)
from tests.models.test_weights import assert_same_logits, scrambled


def _eps(module: nn.Module) -> set[float]:
    return {m.eps for m in module.modules() if isinstance(m, nn.BatchNorm2d)}


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


TIMM_CASES = [
    ("efficientnet_b0", {"padding": "same"}, "tf_efficientnet_b0"),
    ("efficientnet_b0", {"bn_eps": 1e-5}, "efficientnet_b0"),  # timm-trained: symmetric, PyTorch eps
    ("efficientnet_b0", {}, "efficientnet_b0"),  # our default V1: symmetric, TF eps 1e-3 set on timm's BN
    ("efficientnetv2_b0", {"padding": "same"}, "tf_efficientnetv2_b0"),
    ("efficientnetv2_s", {"padding": "same"}, "tf_efficientnetv2_s"),
    ("efficientnetv2_s", {}, "efficientnetv2_s"),  # timm's own V2-S: the TF port's architecture, symmetric
]


@pytest.mark.parametrize(("ours_name", "overrides", "expected"), TIMM_CASES)
def test_to_timm_gives_our_logits_and_comes_back_unchanged(ours_name, overrides, expected):
    ours = scrambled(create_model(ours_name, num_classes=7, **overrides)).to(memory_format=torch.channels_last)
    theirs = to_timm(ours).eval()
    assert theirs.pretrained_cfg["architecture"] == expected
    assert _eps(theirs) == {ours.spec.bn_eps}
    assert tuple(theirs.pretrained_cfg["mean"]) == ours.spec.mean
    assert theirs.pretrained_cfg["input_size"] == (3, ours.spec.eval_size, ours.spec.eval_size)
    assert_same_logits(ours, theirs)
    back = from_timm(theirs)  # the other direction: timm's module back into ours
    for field in ("padding", "bn_eps", "mean", "std"):
        assert getattr(back.spec, field) == getattr(ours.spec, field)
    assert _same_state(back, ours)
    assert_same_logits(ours, back)


@pytest.mark.parametrize("name", ["tf_efficientnet_b0", "efficientnet_b0", "tf_efficientnetv2_s"])
def test_timm_models_go_through_ours_and_back_to_timm(name):
    source = scrambled(timm.create_model(name, num_classes=5))
    again = to_timm(from_timm(source)).eval()
    assert again.pretrained_cfg["architecture"] == name and _eps(again) == _eps(source)
    assert _same_state(again, source)
    assert_same_logits(source, again)


TORCHVISION_CASES = [
    ("efficientnet_b0", {}, "efficientnet_b0"),  # our eps 1e-3 set on torchvision's (1e-5) BN layers
    ("efficientnet_b0", {"bn_eps": 1e-5}, "efficientnet_b0"),
    ("efficientnetv2_s", {}, "efficientnet_v2_s"),  # TF V2 normalisation: said in the notes
]


@pytest.mark.parametrize(("ours_name", "overrides", "expected"), TORCHVISION_CASES)
def test_to_torchvision_gives_our_logits_and_comes_back_unchanged(ours_name, overrides, expected):
    ours = scrambled(create_model(ours_name, num_classes=9, **overrides)).to(memory_format=torch.channels_last)
    theirs = to_torchvision(ours).eval()
    cfg = theirs.lit_effnet_cfg
    assert (cfg["library"], cfg["model"]) == ("torchvision", expected)
    assert (cfg["mean"], cfg["std"]) == (ours.spec.mean, ours.spec.std)
    assert _eps(theirs) == {ours.spec.bn_eps}
    assert_same_logits(ours, theirs)
    back = from_torchvision(theirs)
    assert back.spec.name == ours.spec.name and back.spec.bn_eps == ours.spec.bn_eps
    assert _same_state(back, ours)
    assert_same_logits(ours, back)


def test_torchvision_export_says_when_the_input_normalisation_differs():
    v2 = to_torchvision(create_model("efficientnetv2_s", num_classes=3))
    assert any("mean (0.5, 0.5, 0.5), std (0.5, 0.5, 0.5)" in note for note in v2.lit_effnet_cfg["notes"])
    b0 = to_torchvision(create_model("efficientnet_b0", num_classes=3, bn_eps=1e-5))
    assert b0.lit_effnet_cfg["notes"] == []


@pytest.mark.parametrize(
    ("library", "overrides", "stock"),
    [
        ("timm", {}, lambda: timm.create_model("efficientnet_b0", num_classes=7)),  # eps 1e-3 into 1e-5
        ("timm", {"padding": "same", "bn_eps": 1e-5}, lambda: timm.create_model("tf_efficientnet_b0", num_classes=7)),
        ("torchvision", {}, lambda: torchvision.models.efficientnet_b0(num_classes=7)),
    ],
)
def test_folded_bn_eps_loads_into_the_stock_constructor_with_our_logits(library, overrides, stock):
    ours = scrambled(create_model("efficientnet_b0", num_classes=7, **overrides))
    convert = to_timm if library == "timm" else to_torchvision
    plain = stock().eval()
    plain.load_state_dict(convert(ours).state_dict(), strict=True)  # unfolded: the stock eps is wrong for it
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (plain(x) - ours(x)).abs().max() > 1e-3 * ours(x).abs().max()
    folded = convert(ours, fold_bn_eps=True)
    assert _eps(folded) == _eps(plain)
    plain.load_state_dict(folded.state_dict(), strict=True)
    assert_same_logits(ours, plain)


def test_folding_a_smaller_eps_may_leave_negative_variances_but_exact_logits():
    ours = scrambled(create_model("efficientnet_b0", num_classes=4, padding="same", bn_eps=1e-5))
    with torch.no_grad():
        ours.stem.bn.running_var[:3] = 1e-4  # below tf_efficientnet_b0's eps 1e-3 - 1e-5
    folded = to_timm(ours, fold_bn_eps=True).eval()
    assert (folded.bn1.running_var < 0).sum() == 3
    assert any("3 running_var entries < 0" in note for note in folded.lit_effnet_cfg["notes"])
    assert_same_logits(ours, folded)


def test_a_compound_base_at_phi_0_is_b0():
    with torch.device("meta"):
        spec = create_model("efficientnet", phi=0).spec
    assert (timm_name(spec), torchvision_name(spec)) == ("efficientnet_b0", "efficientnet_b0")


REFUSED = [
    (to_timm, ("efficientnet", {"phi": 2.5}), r"efficientnet_phi2\.5 has no timm counterpart: width=1\.26906, depth="),
    (
        to_timm,
        ("efficientnet_b0", {"width": 0.25, "depth": 0.25}),
        r"width=0\.25, depth=0\.25; efficientnet_b0 has 1, 1",
    ),
    (to_timm, ("efficientnetv2_b0", {}), r"timm builds efficientnetv2_b0 only as tf_efficientnetv2_b0 \('same'"),
    (to_timm, ("efficientnet_b0", {"activation": "relu"}), r"activation 'relu'"),
    (to_torchvision, ("efficientnet_b0", {"padding": "same"}), r"padding='same' has no torchvision counterpart"),
    (to_torchvision, ("efficientnetv2_b0", {}), r"torchvision builds no efficientnetv2_b0"),
    (to_torchvision, ("efficientnet_b8", {}), r"torchvision builds no efficientnet_b8"),
    (to_torchvision, ("efficientnetv2_s", {"depth": 0.5}), r"efficientnetv2_s has no torchvision counterpart"),
]


@pytest.mark.parametrize(("convert", "model", "message"), REFUSED)
def test_a_model_without_counterpart_is_refused_in_one_line(convert, model, message):
    name, overrides = model
    with torch.device("meta"):  # refused from the spec alone, before any weights are touched
        ours = create_model(name, num_classes=3, **overrides)
    with pytest.raises(NoCounterpartError, match=message) as err:
        convert(ours)
    assert "\n" not in str(err.value)
