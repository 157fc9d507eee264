"""The shipped configs carry the papers' recipes (facts 1-4) and run."""

import pytest
import torch
import yaml

from lit_effnet.cli import PROJECT_ROOT, main
from lit_effnet.models import resolve_spec
from tests.data.fixtures import write_imagefolder

IMAGENET = [f"b{i}" for i in range(8)] + ["v2_s", "v2_m", "v2_l", "v2_xl"]
TABLE_6 = {  # size, RandAugment, mixup, dropout: first -> last stage (facts 3)
    "v2_s": ([128, 300], [5, 10], [0, 0], [0.1, 0.3]),
    "v2_m": ([128, 380], [5, 15], [0, 0.2], [0.1, 0.4]),
    "v2_l": ([128, 380], [5, 20], [0, 0.5], [0.1, 0.5]),
}


def printed_config(capsys, name: str) -> dict:
    with pytest.raises(SystemExit):
        main(["--config", name, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_configs_use_the_papers_recipe(capsys, name):
    config = printed_config(capsys, name)
    model, data, progressive = config["model"], config["data"], config["progressive"]
    assert (model["optimizer"], model["lr_per_256"], model["weight_decay"]) == ("rmsprop_tf", 0.016, 1e-5)
    assert (model["lr_schedule"], model["decay_epochs"], model["decay_rate"]) == ("exponential", 2.4, 0.97)
    assert (model["warmup_epochs"], model["label_smoothing"], config["ema"]["init_args"]["decay"]) == (5, 0.1, 0.9999)
    assert config["trainer"]["max_epochs"] == 350
    assert (data["name"], data["root"]) == ("imagefolder", "data/imagenet")
    spec = resolve_spec(model["name"])
    if name in TABLE_6:
        size, randaug, mixup, dropout = TABLE_6[name]
        assert progressive["num_stages"] == 4
        assert (progressive["image_size"], progressive["randaug_magnitude"]) == (size, randaug)
        assert (progressive["mixup_alpha"], progressive["dropout"]) == (mixup, dropout)
    elif name.startswith("b"):
        assert progressive["num_stages"] == 1
        assert progressive["image_size"] == [spec.train_size] * 2 and progressive["dropout"] == [spec.dropout] * 2


def test_v2_s_config_runs_end_to_end_on_imagefolder_data(tmp_path, monkeypatch):
    # The real config (RMSProp, exponential decay, 4 progressive stages, EMA) on a 3-class ImageFolder tree,
    # with a narrow network and 2-image batches so it runs on a CPU in seconds.
    write_imagefolder(tmp_path / "imagenet")
    monkeypatch.chdir(tmp_path)
    argv = [
        "--config", str(PROJECT_ROOT / "configs" / "v2_s.yaml"), "--data.root", "imagenet", "--accelerator", "cpu",
        "--devices", "1", "--precision", "32-true", "--trainer.max_epochs", "4", "--data.batch_size", "4",
        "--data.num_workers", "0", "--model.model_kwargs", '{"width": 0.25, "depth": 0.1}', "--data.eval_size", "64",
        "--progressive.image_size", "[32, 56]", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    assert main(argv) == 0
    last = torch.load(tmp_path / "checkpoints/v2_s/version_0/checkpoints/last.ckpt", weights_only=False)
    assert last["epoch"] == 3 and last["hyper_parameters"]["num_classes"] == 3
    assert last["optimizer_states"][0]["param_groups"][0]["alpha"] == 0.9  # RMSpropTF


TRANSFER = ["cifar10", "cifar100", "flowers102", "stanford_cars"]


@pytest.mark.parametrize("name", TRANSFER)
def test_transfer_configs_use_the_v2_papers_recipe(capsys, name):
    config = printed_config(capsys, f"transfer/{name}")
    trainer, model, data = config["trainer"], config["model"], config["data"]
    global_batch = data["batch_size"] * trainer["accumulate_grad_batches"]  # on one device
    assert global_batch == 512 and model["lr_per_256"] * global_batch / 256 == pytest.approx(0.001)
    assert (model["lr_schedule"], model["weight_decay"], trainer["max_steps"]) == ("cosine", 0.0, 10_000)
    assert data["name"] == name and data["cutout"] > 0 and data["image_size"] is None  # the model's size
    assert config["progressive"]["num_stages"] == 1 and config["ema"] is None


def test_official_overlay_switches_to_rmsprop_constant_lr_and_ema(capsys):
    with pytest.raises(SystemExit):
        main(["--config", "transfer/cifar10", "--config", "transfer/official", "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    model = config["model"]
    assert (model["optimizer"], model["lr_schedule"], model["warmup_epochs"]) == ("rmsprop_tf", "constant", 1)
    assert model["lr_per_256"] * 512 / 256 == pytest.approx(0.0005)
    assert config["ema"]["init_args"]["decay"] == 0.9996
    assert config["trainer"]["logger"]["init_args"]["name"] == "transfer/cifar10+official"


def test_cifar10_transfer_config_fine_tunes_timm_weights_from_the_command_line(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file

    from tests.data.fixtures import write_cifar10

    write_cifar10(tmp_path / "data")
    save_file(timm.create_model("tf_efficientnetv2_b0").state_dict(), tmp_path / "v2b0.safetensors")
    monkeypatch.chdir(tmp_path)
    argv = [
        "--config", "transfer/cifar10", "--pretrained", "v2b0.safetensors", "--model.name", "efficientnetv2_b0",
        "--accelerator", "cpu", "--devices", "1", "--precision", "32-true", "--trainer.max_steps", "3",
        "--trainer.accumulate_grad_batches", "1", "--data.batch_size", "4", "--data.num_workers", "0",
        "--data.image_size", "32", "--data.eval_size", "32", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    assert main(argv) == 0
    last = torch.load("checkpoints/transfer/cifar10/version_0/checkpoints/last.ckpt", weights_only=False)
    hparams = last["hyper_parameters"]
    assert last["global_step"] == 3 and hparams["num_classes"] == 10 and hparams["pretrained"] is None
    assert hparams["model_kwargs"]["padding"] == "same"  # TF weights keep TF padding
