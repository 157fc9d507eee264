"""Weight import against randomly initialised timm/torchvision models with scrambled BN statistics."""

import dataclasses
import os
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from lit_effnet import create_model
from lit_effnet.errors import CheckpointError, ConfigError, WeightsMismatchError
from lit_effnet.models import VARIANTS
from lit_effnet.models.weights import (
    SPEC_METADATA_KEY,
    detect_library,
    from_timm,
    from_torchvision,
    load_backbone,
    load_pretrained,
    map_state_dict,
    newest_checkpoint,
    read_checkpoint,
    read_state_dict,
    save_weights,
    spec_from_json,
    spec_to_json,
)
from tests.conftest import lit_checkpoint


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
    with pytest.raises(WeightsMismatchError, match=r"b0\.pth: timm efficientnet_b0 .* source='tf_efficientnet_b0'"):
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


def test_a_run_folder_reads_as_its_most_recently_written_last_ckpt_not_the_last_by_name(tmp_path):
    assert newest_checkpoint(tmp_path) is None
    newer, older = tmp_path / "a" / "last.ckpt", tmp_path / "b" / "last.ckpt"
    for when, path in ((2_000_000_000, newer), (1_000_000_000, older)):
        path.parent.mkdir()
        path.write_bytes(b"")
        os.utime(path, (when, when))
    assert newest_checkpoint(tmp_path) == newer
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: no last\.ckpt under this folder"):
        load_pretrained(tmp_path / "empty")


class NotATensor:
    """Pickled code: what a checkpoint from an untrusted source may hold."""


def unsafe_file(path: Path, content: dict) -> str:
    """Saves `content` with a NotATensor in it; returns how torch's weights-only loader refuses it ("Error: ")."""
    torch.save({**content, "callback": NotATensor()}, path)
    assert isinstance(torch.load(path, weights_only=False)["callback"], NotATensor)  # readable when trusted
    with pytest.raises(Exception) as refused:
        torch.load(path, weights_only=True)
    return f"{type(refused.value).__name__}: "


def saved_for_a_missing_gpu(content: dict, path: Path, monkeypatch) -> Path:
    """`content` saved with its tensors tagged as torch.save tags them on a GPU no machine here has."""
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:99")
        torch.save(content, path)
    with pytest.raises(RuntimeError):
        torch.load(path, weights_only=True)  # where the file says
    return path


def test_read_checkpoint_names_a_missing_file_and_refuses_pickled_code_naming_the_unpickler_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.ckpt: no such file"):
        read_checkpoint(tmp_path / "nope.ckpt")
    path = tmp_path / "code.ckpt"
    reason = unsafe_file(path, {"state_dict": {}})
    with pytest.raises(CheckpointError, match=rf"code\.ckpt: not a readable checkpoint \({reason}"):
        read_checkpoint(path)


def test_a_checkpoint_written_on_another_device_reads_onto_the_cpu(tmp_path, monkeypatch):
    path = saved_for_a_missing_gpu({"state_dict": {"w": torch.ones(3)}}, tmp_path / "gpu.ckpt", monkeypatch)
    assert read_checkpoint(path)["state_dict"]["w"].device == torch.device("cpu")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's list of mapped files")
def test_read_checkpoint_maps_the_file_rather_than_copying_it_into_memory(tmp_path):
    path = tmp_path / "big.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1 << 16)}}, path)

    def backing_file(tensor: torch.Tensor) -> str:
        address = tensor.data_ptr()
        for line in Path("/proc/self/maps").read_text().splitlines():
            span, *rest = line.split()
            low, high = (int(x, 16) for x in span.split("-"))
            if low <= address < high:
                return rest[-1] if len(rest) > 4 else ""
        return ""

    assert backing_file(read_checkpoint(path)["state_dict"]["w"]) == str(path)
    assert backing_file(torch.load(path, weights_only=True)["state_dict"]["w"]) != str(path)  # a copy


def test_every_spec_survives_its_json_round_trip_with_or_without_paper_figures():
    for spec in [*VARIANTS.values(), create_model("efficientnet_b0", width=0.5).spec]:
        assert spec_from_json(spec_to_json(spec)) == spec
        bare = dataclasses.replace(spec, paper=None, progressive_paper=None, progressive_official=None)
        assert spec_from_json(spec_to_json(bare)) == bare


def test_save_weights_creates_the_folders_it_writes_into(tmp_path):
    model = create_model("efficientnetv2_b0", num_classes=3, width=0.25, depth=0.25)
    path = save_weights(model, tmp_path / "runs" / "export" / "w.safetensors")
    assert load_pretrained(path).spec == model.spec


def test_a_lightning_checkpoint_without_a_spec_or_with_a_missing_key_is_named(tmp_path):
    model = create_model("efficientnetv2_b0", num_classes=3, width=0.25, depth=0.25)
    assert load_pretrained(lit_checkpoint(tmp_path / "whole.ckpt", model)).spec == model.spec
    with pytest.raises(CheckpointError, match=r"foreign\.ckpt: not a lit-effnet checkpoint of an EfficientNet"):
        load_pretrained(lit_checkpoint(tmp_path / "foreign.ckpt", model, spec=False))
    with pytest.raises(WeightsMismatchError, match=r"cut\.ckpt: missing key stem\.bn\.running_var"):
        load_pretrained(lit_checkpoint(tmp_path / "cut.ckpt", model, drop="stem.bn.running_var"))


def test_a_weights_file_is_named_when_missing_unsafe_or_of_no_known_layout_and_unwrapped_from_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pth: no such file"):
        read_state_dict(tmp_path / "nope.pth")
    code = tmp_path / "code.pth"
    reason = unsafe_file(code, {"w": torch.ones(1)})
    with pytest.raises(CheckpointError, match=rf"code\.pth: not a readable weights file \({reason}"):
        read_state_dict(code)
    resnet = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.ones(2, 3), "fc.bias": torch.ones(2)}, resnet)
    unknown = r"resnet\.pth: unrecognised EfficientNet layout \(first key 'fc\.weight'\)"  # the file's first
    with pytest.raises(WeightsMismatchError, match=unknown):
        load_pretrained(resnet)
    model = scrambled(torchvision.models.efficientnet_b0(num_classes=3))
    wrapped = tmp_path / "wrapped.pth"  # as training scripts often publish them
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, wrapped)
    assert_same_logits(model, load_pretrained(wrapped))


def test_a_weights_file_written_on_another_device_reads_onto_the_cpu(tmp_path, monkeypatch):
    path = saved_for_a_missing_gpu({"w": torch.ones(3)}, tmp_path / "gpu.pth", monkeypatch)
    assert read_state_dict(path)[0]["w"].device == torch.device("cpu")


def test_each_layout_is_told_by_its_first_layer():
    layouts = {
        "timm": timm.create_model("efficientnet_b0", pretrained=False),
        "torchvision": torchvision.models.efficientnet_b0(),
        "lit_effnet": create_model("efficientnet_b0"),
    }
    assert {name: detect_library(m.state_dict(), name) for name, m in layouts.items()} == {n: n for n in layouts}


def test_an_unnamed_file_that_fits_no_variant_asks_for_the_model_name(tmp_path):
    state = create_model("efficientnetv2_b0", num_classes=4).state_dict()
    state["stem.conv.weight"] = torch.zeros(8, 3, 3, 3)  # as many tensors as V2-B0's, one of another shape
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError, match=r"odd\.pth: matches no lit_effnet variant; pass the model name"):
        load_pretrained(path)


def test_load_backbone_names_the_first_missing_and_the_first_unexpected_key():
    net = create_model("efficientnetv2_b0", num_classes=4, width=0.25, depth=0.25)
    state = net.state_dict()
    missing = {k: v for k, v in state.items() if k != "stem.bn.running_mean"}
    with pytest.raises(WeightsMismatchError, match=r"^w\.pth: missing key stem\.bn\.running_mean$"):
        load_backbone(net, missing, "w.pth")
    extra = {**state, "zz.extra": torch.ones(1), "aa.extra": torch.ones(1)}
    with pytest.raises(WeightsMismatchError, match=r"^w\.pth: unexpected key aa\.extra$"):
        load_backbone(net, extra, "w.pth")


def test_a_lit_effnet_file_with_a_key_too_many_or_too_few_is_named(tmp_path):
    model = create_model("efficientnetv2_b0", num_classes=3, width=0.25, depth=0.25)
    spec = {SPEC_METADATA_KEY: spec_to_json(model.spec)}
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file({**state, "zz.extra": torch.ones(1), "aa.extra": torch.ones(1)}, tmp_path / "more.safetensors", spec)
    with pytest.raises(WeightsMismatchError, match=r"more\.safetensors: unexpected key aa\.extra \(2 unexpected\)$"):
        load_pretrained(tmp_path / "more.safetensors")
    fewer = {k: v for k, v in state.items() if k != "head.bn.weight"}
    save_file(fewer, tmp_path / "fewer.safetensors", spec)
    with pytest.raises(WeightsMismatchError, match=r"fewer\.safetensors: missing key head\.bn\.weight \(1 missing\)$"):
        load_pretrained(tmp_path / "fewer.safetensors")


def test_a_torchvision_file_of_no_torchvision_model_is_named(tmp_path):
    state = torchvision.models.efficientnet_b0(num_classes=3).state_dict()
    state["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, tmp_path / "tv.pth")
    with pytest.raises(WeightsMismatchError, match=r"tv\.pth: not a torchvision EfficientNet of \['efficientnet_b0'"):
        load_pretrained(tmp_path / "tv.pth")


def test_only_ema_or_raw_weights_can_be_asked_for(tmp_path):
    with pytest.raises(ConfigError, match=r"^weights='EMA': 'ema' \(a checkpoint's EMA weights\) or 'raw'$"):
        load_pretrained(tmp_path, weights="EMA")


def test_a_weights_file_of_anything_but_tensors_is_named(tmp_path):
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    torch.save({"w": torch.ones(1), "epoch": 3}, tmp_path / "mixed.pth")
    for name in ("list.pth", "mixed.pth"):
        with pytest.raises(CheckpointError) as refused:
            read_state_dict(tmp_path / name)
        assert str(refused.value) == f"{tmp_path / name}: does not hold a state_dict of tensors"


def test_a_timm_file_that_fits_no_variant_or_misses_a_key_and_an_empty_file_are_named(tmp_path):
    state = timm.create_model("tf_efficientnetv2_b0", num_classes=3).state_dict()
    odd = {**state, "conv_stem.weight": torch.zeros(8, 3, 3, 3)}
    torch.save(odd, tmp_path / "odd.pth")
    with pytest.raises(WeightsMismatchError, match=r"^\S*odd\.pth: matches no lit_effnet variant"):
        load_pretrained(tmp_path / "odd.pth")
    torch.save({k: v for k, v in state.items() if k != "bn2.running_var"}, tmp_path / "cut.pth")
    with pytest.raises(WeightsMismatchError, match=r"^\S*cut\.pth: missing key bn2\.running_var \(1 missing\)$"):
        load_pretrained(tmp_path / "cut.pth", source="tf_efficientnetv2_b0")
    torch.save({}, tmp_path / "empty.pth")
    with pytest.raises(WeightsMismatchError, match=r"empty\.pth: unrecognised EfficientNet layout \(first key None\)"):
        load_pretrained(tmp_path / "empty.pth")
