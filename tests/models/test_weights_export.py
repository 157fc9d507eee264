"""Weights out: our random models (scrambled BN statistics) as timm / torchvision modules with equal logits."""

import dataclasses

import pytest
import timm
import torch
import torchvision
from torch import nn

from lit_effnet import create_model
from lit_effnet.errors import WeightsMismatchError
from lit_effnet.models import VARIANTS
from lit_effnet.models.specs import IMAGENET_MEAN, IMAGENET_STD
from lit_effnet.models.weights import (
    NoCounterpartError,
    _batch_norms,
    from_timm,
    from_torchvision,
    map_state_dict,
    named_architecture,
    our_name_for_timm,
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
        ours.stem.bn.running_var[3] = 1e-3 - 1e-5  # folds to exactly 0: not negative
    folded = to_timm(ours, fold_bn_eps=True).eval()
    assert (folded.bn1.running_var < 0).sum() == 3 and folded.bn1.running_var[3] == 0
    assert "3 running_var entries < 0 after folding (eval is exact)" in folded.lit_effnet_cfg["notes"]
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
    (
        to_timm,
        ("efficientnet_b0", {"activation": "relu"}),
        r"^efficientnet_b0 has no timm counterpart: activation 'relu' \(the library's EfficientNets use SiLU\)$",
    ),
    (to_torchvision, ("efficientnet_b0", {"padding": "same"}), r"padding='same' has no torchvision counterpart"),
    (
        to_torchvision,
        ("efficientnetv2_b0", {}),
        r"^efficientnetv2_b0 has no torchvision counterpart: torchvision builds no efficientnetv2_b0 \(only "
        r"efficientnet_b0, efficientnet_b1, efficientnet_b2, efficientnet_b3, efficientnet_b4, efficientnet_b5, "
        r"efficientnet_b6, efficientnet_b7, efficientnet_v2_s, efficientnet_v2_m, efficientnet_v2_l\)$",
    ),
    (
        to_torchvision,
        ("efficientnet_b0", {"activation": "relu"}),
        r"^efficientnet_b0 has no torchvision counterpart: activation 'relu' \(the library's EfficientNets use SiLU\)$",
    ),
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


def test_torchvision_takes_any_classifier_down_to_one_class_but_not_none():
    assert to_torchvision(create_model("efficientnet_b0", num_classes=1)).classifier[1].out_features == 1
    with torch.device("meta"):
        headless = create_model("efficientnet_b0", num_classes=0)
    headless_refused = r"^efficientnet_b0 without a classifier has no torchvision counterpart$"
    with pytest.raises(NoCounterpartError, match=headless_refused):
        to_torchvision(headless)


def test_folding_into_torchvision_says_how_many_variances_went_negative_and_which_eps_the_module_has():
    # torchvision's V2 has eps 1e-3 (the folded logits are pinned on B0 above: an untrained V2-S overflows float32)
    ours = create_model("efficientnetv2_s", num_classes=4, bn_eps=1e-5).eval()
    with torch.no_grad():
        ours.stem.bn.running_var[:2] = 1e-4
    folded = to_torchvision(ours, fold_bn_eps=True).eval()
    assert folded.lit_effnet_cfg["bn_eps"] == 1e-3 and _eps(folded) == {1e-3}
    assert "2 running_var entries < 0 after folding (eval is exact)" in folded.lit_effnet_cfg["notes"]
    assert to_torchvision(ours).lit_effnet_cfg["bn_eps"] == 1e-5  # unfolded: our eps, set on its layers


OWN_INPUT = dict(eval_size=240, crop_pct=0.9, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_an_exported_module_says_what_its_receiver_needs_besides_the_tensors():
    ours = create_model("efficientnet_b0", num_classes=7, **OWN_INPUT)  # B0: BN eps 1e-3, momentum 0.01
    common = dict(num_classes=7, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), eval_size=240, crop_pct=0.9)
    normalise = "normalise with mean (0.5, 0.5, 0.5), std (0.25, 0.25, 0.25)"
    timm_module = to_timm(ours)
    assert timm_module.lit_effnet_cfg == {
        "library": "timm", "model": "efficientnet_b0", **common, "bn_eps": 1e-3, "bn_momentum": 0.01,
        "source": "efficientnet_b0", "notes": [
            "BN eps set to 0.001 (timm builds 1e-05)",
            f"input normalisation differs from timm's default for efficientnet_b0: {normalise}",
        ],
    }  # fmt: skip
    cfg = timm_module.pretrained_cfg  # what timm's own data config reads
    assert (cfg["mean"], cfg["std"], cfg["input_size"], cfg["crop_pct"], cfg["num_classes"]) == (
        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (3, 240, 240), 0.9, 7,
    )  # fmt: skip
    assert {(bn.eps, bn.momentum) for _, bn in _batch_norms(timm_module)} == {(1e-3, 0.01)}
    assert to_timm(ours, fold_bn_eps=True).lit_effnet_cfg == {
        "library": "timm", "model": "efficientnet_b0", **common, "bn_eps": 1e-5, "bn_momentum": 0.1,
        "source": "efficientnet_b0", "notes": [
            "BN eps 0.001 folded into running_var for timm's eps 1e-05",
            f"input normalisation differs from timm's default for efficientnet_b0: {normalise}",
        ],
    }  # fmt: skip
    assert to_torchvision(ours).lit_effnet_cfg == {
        "library": "torchvision", "model": "efficientnet_b0", **common, "bn_eps": 1e-3, "bn_momentum": 0.01,
        "source": "efficientnet_b0", "notes": [
            "BN eps set to 0.001 (torchvision builds 1e-05)",
            f"input normalisation differs from torchvision's ImageNet mean/std: {normalise}",
        ],
    }  # fmt: skip
    same = create_model("efficientnet_b0", num_classes=7, bn_eps=1e-5, bn_momentum=0.1)  # torchvision's own
    for fold in (False, True):
        assert to_torchvision(same, fold_bn_eps=fold).lit_effnet_cfg["notes"] == []  # nothing to say


def test_a_spec_without_counterpart_is_told_against_its_own_variant_or_its_stage_table():
    b3 = VARIANTS["efficientnet_b3"]
    with pytest.raises(NoCounterpartError) as narrow:
        named_architecture(dataclasses.replace(b3, width=0.5))
    assert str(narrow.value) == (
        "efficientnet_b3 has no timm/torchvision counterpart: width=0.5; efficientnet_b3 has 1.2; timm/torchvision "
        "builds only the named variants"
    )
    b0 = VARIANTS["efficientnet_b0"]
    with pytest.raises(NoCounterpartError) as staged:
        named_architecture(dataclasses.replace(b0, stages=b0.stages[:-1]), "torchvision")
    assert str(staged.value) == (
        "efficientnet_b0 has no torchvision counterpart: its stage table; torchvision builds only the named variants"
    )


def test_timm_names_map_to_ours_with_or_without_a_weights_tag_and_others_are_refused():
    assert our_name_for_timm("tf_efficientnet_b0.ns_jft_in1k") == "efficientnet_b0"
    assert our_name_for_timm("efficientnetv2_s") == "efficientnetv2_s"
    with pytest.raises(WeightsMismatchError) as other:
        our_name_for_timm("resnet50")
    assert str(other.value) == f"timm model 'resnet50' has no lit_effnet counterpart (have {list(VARIANTS)})"


def test_a_module_timm_did_not_build_or_whose_layers_were_changed_is_named():
    with pytest.raises(WeightsMismatchError) as plain:
        from_timm(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
    assert str(plain.value) == "timm module has no pretrained_cfg['architecture']; build it with timm.create_model"
    edited = timm.create_model("tf_efficientnet_b0", num_classes=3)
    edited.conv_stem = nn.Conv2d(3, 16, 3, stride=2, bias=False)
    with pytest.raises(WeightsMismatchError, match=r"^timm tf_efficientnet_b0: conv_stem\.weight \(16, 3, 3, 3\) "):
        from_timm(edited)
    bare = timm.create_model("efficientnet_b0", num_classes=3)
    bare.pretrained_cfg = {"architecture": "efficientnet_b0"}  # no mean/std: ImageNet's, as timm's default
    assert (from_timm(bare).spec.mean, from_timm(bare).spec.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_a_torchvision_module_of_another_architecture_is_named_and_an_efficientnet_gets_imagenets_input():
    with pytest.raises(WeightsMismatchError, match=r"^torchvision module: not a torchvision EfficientNet of \["):
        from_torchvision(torchvision.models.mobilenet_v2(num_classes=3))
    ours = from_torchvision(torchvision.models.efficientnet_b0(num_classes=3))
    assert (ours.spec.mean, ours.spec.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_a_state_dict_with_a_tensor_too_many_or_too_few_names_the_first_one_past_the_end():
    target = create_model("efficientnet_b0", num_classes=3)
    state = timm.create_model("efficientnet_b0", num_classes=3).state_dict()
    more = {**state, "head.extra": torch.ones(1)}
    n = len(state)
    with pytest.raises(WeightsMismatchError) as extra:
        map_state_dict(more, target, "w.pth")
    assert str(extra.value) == f"w.pth: extra key head.extra ({n + 1} tensors, expected {n})"
    fewer = dict(list(state.items())[:-1])
    with pytest.raises(WeightsMismatchError) as missing:
        map_state_dict(fewer, target, "w.pth")
    assert str(missing.value) == f"w.pth: missing key classifier.bias ({n - 1} tensors, expected {n})"


def test_imported_weights_keep_the_input_normalisation_they_were_trained_with():
    source = timm.create_model("tf_efficientnetv2_b0", num_classes=3)
    source.pretrained_cfg = {**source.pretrained_cfg, "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)}
    assert (from_timm(source).spec.mean, from_timm(source).spec.std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    v2 = from_torchvision(torchvision.models.efficientnet_v2_s(num_classes=3))  # ours defaults to 0.5s for V2
    assert (v2.spec.mean, v2.spec.std) == (IMAGENET_MEAN, IMAGENET_STD)
