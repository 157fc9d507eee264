"""Weight import against randomly initialised timm/torchvision models with scrambled BN statistics."""

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from lit_effnet import create_model
from lit_effnet.errors import CheckpointError, WeightsMismatchError
from lit_effnet.models.weights import (
    from_timm,
    from_torchvision,
    load_pretrained,
    map_state_dict,
    save_weights,
)


def scrambled(model: nn.Module) -> nn.Module:
    """Random BN affine parameters and running statistics, so BN eps/momentum mistakes show in the logits."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.45 + 0.05)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) * 0.4 + 0.2)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def assert_same_logits(source: nn.Module, ours: nn.Module, size=(65, 58)) -> None:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))  # odd and even: both SAME cases
    with torch.no_grad():
        expected, got = source(x), ours.eval()(x)
    assert expected.isfinite().all()
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize(
    ("timm_name", "padding", "eps"),
    [
        ("tf_efficientnet_b0", "same", 1e-3),
        ("efficientnet_b0", "symmetric", 1e-5),
        ("tf_efficientnetv2_s", "same", 1e-3),
        ("tf_efficientnetv2_b1", "same", 1e-3),
    ],
)
def test_from_timm_reproduces_timms_logits(timm_name, padding, eps):
    source = scrambled(timm.create_model(timm_name, num_classes=11))
    ours = from_timm(source)
    assert (ours.spec.padding, ours.spec.bn_eps, ours.num_classes) == (padding, eps, 11)
    assert ours.spec.mean == tuple(source.pretrained_cfg["mean"])
    assert_same_logits(source, ours)


@pytest.mark.parametrize(
    ("tv_name", "ours_name"), [("efficientnet_b0", "efficientnet_b0"), ("efficientnet_v2_s", "efficientnetv2_s")]
)
def test_from_torchvision_reproduces_torchvisions_logits(tv_name, ours_name):
    source = scrambled(torchvision.models.get_model(tv_name, num_classes=9))
    ours = from_torchvision(source)
    assert ours.spec.name == ours_name and ours.spec.padding == "symmetric"
    assert ours.spec.bn_eps == next(m for m in source.modules() if isinstance(m, nn.BatchNorm2d)).eps
    assert_same_logits(source, ours)


def test_wrong_padding_would_change_the_logits():
    # The negative control for the tests above: TF weights in a symmetric-padding model give other logits.
    source = scrambled(timm.create_model("tf_efficientnet_b0", num_classes=5))
    wrong = create_model("efficientnet_b0", num_classes=5, padding="symmetric")
    wrong.load_state_dict(map_state_dict(source.state_dict(), wrong, "test"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (wrong.eval()(x) - source(x)).abs().max() > 1e-2 * source(x).abs().max()


def test_wrong_bn_eps_would_change_the_logits():
    source = scrambled(timm.create_model("efficientnet_b0", num_classes=5))  # PyTorch-trained: eps 1e-5
    wrong = create_model("efficientnet_b0", num_classes=5, bn_eps=1e-3)
    wrong.load_state_dict(map_state_dict(source.state_dict(), wrong, "test"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (wrong.eval()(x) - source(x)).abs().max() > 1e-3 * source(x).abs().max()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_pretrained_reads_timm_and_torchvision_files(tmp_path, suffix):
    def write(state, name):
        path = tmp_path / (name + suffix)
        save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
        return path

    timm_model = scrambled(timm.create_model("tf_efficientnetv2_b0", num_classes=4))
    assert_same_logits(timm_model, load_pretrained(write(timm_model.state_dict(), "timm")))

    tv_model = scrambled(torchvision.models.efficientnet_b1(num_classes=6))
    loaded = load_pretrained(write(tv_model.state_dict(), "tv"))
    assert loaded.spec.name == "efficientnet_b1"
    assert_same_logits(tv_model, loaded)


def test_timm_v1_file_needs_its_source_named(tmp_path):
    model = scrambled(timm.create_model("tf_efficientnet_b0", num_classes=3))
    path = tmp_path / "b0.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(WeightsMismatchError, match="source='tf_efficientnet_b0'"):
        load_pretrained(path)
    assert_same_logits(model, load_pretrained(path, source="tf_efficientnet_b0"))


def test_exported_weights_carry_their_spec(tmp_path):
    model = create_model("efficientnetv2_b0", num_classes=3, width=0.5, padding="same")
    path = save_weights(scrambled(model), tmp_path / "w.safetensors")
    loaded = load_pretrained(path)
    assert loaded.spec == model.spec
    assert_same_logits(model, loaded)


def test_mismatching_architecture_names_the_first_bad_key():
    source = timm.create_model("tf_efficientnet_b0").state_dict()
    with pytest.raises(WeightsMismatchError, match=r"b0\.pth: .*conv_pw\.weight .* does not fit stages\.0\.1"):
        map_state_dict(source, create_model("efficientnet_b1"), "b0.pth")


def test_a_file_with_missing_keys_names_the_first_missing_key(tmp_path):
    state = torchvision.models.efficientnet_b0().state_dict()
    state.pop("features.3.0.block.1.1.running_var")
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(
        WeightsMismatchError, match=r"broken\.pth: missing key features\.3\.0\.block\.1\.1\.running_var"
    ):
        load_pretrained(path, source="efficientnet_b0")


def test_an_unreadable_file_gets_its_own_error_naming_it(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth: not a readable weights file"):
        load_pretrained(path)
    with pytest.raises(CheckpointError, match=r"missing\.safetensors: no such file"):
        load_pretrained(tmp_path / "missing.safetensors")
