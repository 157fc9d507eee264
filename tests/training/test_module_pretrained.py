"""LitEfficientNet(pretrained=...): what it loads, what it refuses, the LR split, and that it helps."""

import lightning as L
import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from lit_effnet.callbacks import EMA
from lit_effnet.callbacks.checkpoint import LastCheckpoint
from lit_effnet.data import ImageDataModule
from lit_effnet.errors import CheckpointError, ConfigError, WeightsMismatchError
from lit_effnet.training import LitEfficientNet
from tests.conftest import TINY_NET, fast_trainer, tiny_datamodule, tiny_module


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """A tiny digits model trained 2 epochs with EMA: its last.ckpt holds EMA and raw weights."""
    folder = tmp_path_factory.mktemp("pretrain")
    trainer = fast_trainer(
        folder, max_epochs=2, limit_train_batches=3, callbacks=[EMA(decay=0.9), LastCheckpoint(str(folder))],
        enable_checkpointing=True,
    )  # fmt: skip
    trainer.fit(tiny_module(), tiny_datamodule())
    return folder / "last.ckpt"


def _backbone(state, prefix=""):
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix) and "classifier" not in k}


def test_checkpoint_gives_its_ema_weights_by_default_and_raw_ones_on_request(digits_checkpoint):
    saved = torch.load(digits_checkpoint, weights_only=False)
    for weights, key in (("ema", "state_dict"), ("raw", "current_model_state")):
        module = LitEfficientNet(pretrained=str(digits_checkpoint), num_classes=4, pretrained_weights=weights)
        expected = _backbone(saved[key], "net.")
        got = _backbone(module.net.state_dict())
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in got)
    assert not torch.equal(
        saved["state_dict"]["net.stem.conv.weight"], saved["current_model_state"]["net.stem.conv.weight"]
    )


def test_classifier_is_new_and_the_finetuned_checkpoint_needs_no_pretrained_file(digits_checkpoint, tmp_path):
    module = LitEfficientNet(pretrained=str(digits_checkpoint), num_classes=4, lr=0.01)
    assert module.net.classifier.out_features == 4 and module.net.spec.width == TINY_NET["width"]
    assert module.hparams.pretrained is None and module.hparams.name == "efficientnetv2_b0"
    trainer = fast_trainer(tmp_path, max_epochs=1, callbacks=[LastCheckpoint(str(tmp_path))], enable_checkpointing=True)
    trainer.fit(module, tiny_datamodule(name="digits_rotation"))
    moved = tmp_path / "elsewhere.ckpt"
    (tmp_path / "last.ckpt").rename(moved)
    reloaded = LitEfficientNet.load_from_checkpoint(moved)  # the digits checkpoint is not read again
    assert reloaded.net.classifier.out_features == 4
    assert torch.equal(reloaded.net.stem.conv.weight, module.net.stem.conv.weight)


def test_a_run_folder_means_its_newest_last_ckpt(digits_checkpoint):
    module = LitEfficientNet(pretrained=str(digits_checkpoint.parent), num_classes=3)
    assert module.net.classifier.out_features == 3


def test_timm_weights_bring_their_padding_and_normalisation(tmp_path):
    source = timm.create_model("tf_efficientnetv2_b0", num_classes=1000)
    path = tmp_path / "v2b0.safetensors"
    save_file(source.state_dict(), path)
    module = LitEfficientNet(pretrained=str(path), num_classes=7)
    spec = module.net.spec
    assert (spec.padding, spec.bn_eps, spec.mean) == ("same", 1e-3, tuple(source.pretrained_cfg["mean"]))
    theirs = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier")}
    ours = _backbone(module.net.state_dict())
    assert sum(v.numel() for v in ours.values()) == sum(v.numel() for v in theirs.values())
    assert torch.equal(module.net.stem.conv.weight, source.conv_stem.weight)


def test_another_architecture_is_refused_naming_the_file(digits_checkpoint):
    with pytest.raises(ConfigError, match=r"last\.ckpt holds efficientnetv2_b0, model.name is efficientnet_b0"):
        LitEfficientNet(name="efficientnet_b0", pretrained=str(digits_checkpoint), num_classes=4)


def test_a_shape_mismatch_names_the_file_and_first_key(digits_checkpoint):
    wider = {**TINY_NET, "width": 0.5}
    with pytest.raises(WeightsMismatchError, match=r"last\.ckpt: stem\.conv\.weight has shape"):
        LitEfficientNet(name="efficientnetv2_b0", pretrained=str(digits_checkpoint), num_classes=4, model_kwargs=wider)


def test_a_missing_or_corrupt_pretrained_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"model\.pretrained .*nope\.ckpt: no such file"):
        LitEfficientNet(pretrained=str(tmp_path / "nope.ckpt"), num_classes=4)
    corrupt = tmp_path / "cut.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"cut\.ckpt: not a readable checkpoint"):
        LitEfficientNet(pretrained=str(corrupt), num_classes=4)


def test_backbone_lr_is_scaled_relative_to_the_head(tmp_path):
    module = tiny_module(backbone_lr_scale=0.1, lr=0.01, optimizer="sgd")
    trainer = fast_trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    trainer.fit(module, tiny_datamodule())
    head_ids = {id(p) for p in module.net.classifier.parameters()}
    for group in trainer.optimizers[0].param_groups:
        is_head = {id(p) for p in group["params"]} <= head_ids
        assert group["initial_lr"] == pytest.approx(0.01 if is_head else 0.001)


def _finetune_accuracy(pretrained, seed: int) -> float:
    L.seed_everything(seed, verbose=False)
    kwargs = {"pretrained": pretrained} if pretrained else {"name": "efficientnetv2_b0", "model_kwargs": NET}
    module = LitEfficientNet(
        num_classes=4, optimizer="adamw", lr=0.002, lr_schedule="cosine", warmup_epochs=0, weight_decay=0.0, **kwargs
    )
    trainer = L.Trainer(
        max_epochs=8, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, _digits_data("digits_rotation", train_subset=200))
    return float(trainer.callback_metrics["val/acc1"])


NET = {"width": 0.5, "depth": 0.5, "bn_momentum": 0.1, "drop_path_rate": 0.0}


def _digits_data(name, train_subset=None):
    return ImageDataModule(
        name, batch_size=32, num_workers=0, image_size=32, eval_size=32, crop_pct=1.0, crop_scale=(0.6, 1.0),
        hflip=False, train_subset=train_subset,
    )  # fmt: skip


def test_pretrained_on_digits_beats_scratch_on_digit_rotation_with_the_same_budget(tmp_path):
    # Data efficiency: 200 rotation images, 8 epochs, from a digits model trained 4 epochs. Measured over seeds
    # 0-4: pretrained 54.5 / 57.1 / 61.5 / 53.8 / 49.9%, scratch 43.9 / 45.7 / 38.2 / 45.8 / 44.0% (chance 25%).
    L.seed_everything(0, verbose=False)
    pretrain = LitEfficientNet(
        "efficientnetv2_b0", 10, model_kwargs=NET, optimizer="adamw", lr=0.005, lr_schedule="cosine", warmup_epochs=0
    )
    trainer = L.Trainer(
        max_epochs=4, accelerator="cpu", logger=False, callbacks=[LastCheckpoint(str(tmp_path))],
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(pretrain, _digits_data("digits"))
    assert trainer.callback_metrics["val/acc1"] > 0.7  # the source task was learnt
    pretrained, scratch = _finetune_accuracy(str(tmp_path / "last.ckpt"), 0), _finetune_accuracy(None, 0)
    assert pretrained >= scratch + 0.03, (pretrained, scratch)


class _HeadlessNet(torch.nn.Module):
    """A network whose head was emptied (features only), beside an `fc` that is not its head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(3, 4, 3)
        self.classifier = torch.nn.Sequential()
        self.fc = torch.nn.Linear(4, 4)


@pytest.mark.parametrize(
    ("net", "head"),
    [
        (lambda: timm.create_model("resnet18", num_classes=4), lambda net: net.fc),  # get_classifier()
        (lambda: torchvision.models.efficientnet_b0(num_classes=4), lambda net: net.classifier),
        (lambda: torchvision.models.resnet18(num_classes=4), lambda net: net.fc),
        (_HeadlessNet, lambda net: net.classifier),  # empty, so falsy: still the head, not `fc`
    ],
    ids=["timm", "torchvision-classifier", "torchvision-fc", "empty-classifier"],
)
def test_classifier_is_the_networks_own_head(net, head):
    module = LitEfficientNet(net=net(), num_classes=4, channels_last=False)
    assert module.classifier() is head(module.net)


def test_a_network_without_a_head_is_refused_naming_its_class():
    with pytest.raises(ConfigError, match=r"^Conv2d has no `classifier`, `fc` or `get_classifier\(\)` to tell"):
        LitEfficientNet(net=torch.nn.Conv2d(3, 4, 3), num_classes=4, channels_last=False).classifier()
