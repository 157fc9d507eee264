"""The shipped configs: every variant gets its own recipe values from its spec row, and the recipes reach the run."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
import torch

from lit_effnet.callbacks.checkpoint import LastCheckpoint
from lit_effnet.cli import PROJECT_ROOT, configured, main
from lit_effnet.models import VARIANTS
from tests.conftest import child_env
from tests.data.fixtures import write_imagefolder

V1 = [name for name, spec in VARIANTS.items() if spec.family == "efficientnet"]
V2 = [name for name, spec in VARIANTS.items() if spec.family == "efficientnetv2"]
THIN = {f"b{i}": f"efficientnet_b{i}" for i in range(8)} | {f"v2_{s}": f"efficientnetv2_{s}" for s in "sml"}
THIN["v2_xl"] = "efficientnetv2_xl"


def schedule(capsys, *argv: str) -> list[dict]:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_schedule"])
    assert exit_info.value.code == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", V1)
def test_the_v1_recipe_trains_every_v1_variant_at_its_own_size_and_dropout(capsys, name):
    spec = VARIANTS[name]
    (stage,) = schedule(capsys, "--config", "recipes/v1_imagenet", "--model.name", name)
    assert (stage["image_size"], stage["dropout"], stage["drop_path_rate"]) == (
        spec.train_size, spec.dropout, spec.drop_path_rate,
    )  # fmt: skip


@pytest.mark.parametrize("name", V2)
def test_the_v2_recipe_gives_every_v2_variant_its_own_progressive_ranges(capsys, name):
    spec = VARIANTS[name]
    stages = schedule(capsys, "--config", "recipes/v2_imagenet", "--model.name", name)
    ranges = spec.progressive_ranges("paper")  # Table 6 for S/M/L, the official code's for the others
    assert len(stages) == 4
    for knob in ("image_size", "randaug_magnitude", "mixup_alpha", "dropout"):
        pair = getattr(ranges, knob)
        if pair is None:  # not scheduled: the variant's own value (V2 B rows: dropout; no RandAugment range)
            own = {"dropout": spec.dropout, "randaug_magnitude": 0.0}[knob]
            assert {s[knob] for s in stages} == {own}, knob
        else:
            assert (stages[0][knob], stages[-1][knob]) == pytest.approx(pair), knob
    assert stages[-1]["image_size"] <= spec.eval_size


@pytest.mark.parametrize(("config", "name"), list(THIN.items()))
def test_each_per_variant_config_names_its_variant_and_inherits_its_familys_recipe(capsys, config, name):
    family = "recipes/v1_imagenet" if VARIANTS[name].family == "efficientnet" else "recipes/v2_imagenet"
    assert schedule(capsys, "--config", config) == schedule(capsys, "--config", family, "--model.name", name)


def test_a_second_model_on_a_variants_config_trains_at_that_models_size(tmp_path):
    # The README's example: B0's config with B1 trains at B1's 240 px (measured on the batches).
    write_imagefolder(tmp_path / "imagenet")
    probe = json.dumps({"class_path": "tests.ddp_probe.RankProbe", "init_args": {"out": str(tmp_path / "probe")}})
    argv = [
        sys.executable, str(PROJECT_ROOT / "train.py"), "--config", "b0", "--model.name", "efficientnet_b1",
        "--data.root", "imagenet", "--accelerator", "cpu", "--devices", "1", "--precision", "32-true",
        "--trainer.max_epochs", "1", "--data.batch_size", "2", "--data.num_workers", "0",
        "--model.model_kwargs", '{"width": 0.1, "depth": 0.1}', "--data.eval_size", "32",
        "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar",
        "false", f"--trainer.callbacks+={probe}",
    ]  # fmt: skip
    env = child_env(PYTHONPATH=str(PROJECT_ROOT), OMP_NUM_THREADS="2")
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (epoch,) = json.loads((tmp_path / "probe" / "rank0.json").read_text())
    assert epoch["image_size"] == VARIANTS["efficientnet_b1"].train_size == 240


def test_v2_s_config_runs_end_to_end_and_its_recipe_reaches_the_optimizer(tmp_path, monkeypatch):
    # The real config (RMSProp, exponential decay, 4 progressive stages, EMA) on a 3-class ImageFolder tree,
    # with a narrow network and 4-image batches so it runs on a CPU in seconds.
    write_imagefolder(tmp_path / "imagenet")
    monkeypatch.chdir(tmp_path)
    argv = [
        "--config", "v2_s", "--data.root", "imagenet", "--accelerator", "cpu", "--devices", "1",
        "--precision", "32-true", "--trainer.max_epochs", "4", "--data.batch_size", "4", "--data.num_workers", "0",
        "--model.model_kwargs", '{"width": 0.25, "depth": 0.1}', "--data.eval_size", "64",
        "--progressive.image_size", "[32, 56]", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    assert main(argv) == 0
    last = torch.load(tmp_path / "checkpoints/v2_s/version_0/checkpoints/last.ckpt", weights_only=False)
    assert last["epoch"] == 3 and last["hyper_parameters"]["num_classes"] == 3
    groups = last["optimizer_states"][0]["param_groups"]
    assert {(g["alpha"], g["eps"], g["momentum"]) for g in groups} == {(0.9, 1e-3, 0.9)}  # RMSpropTF, facts 4
    assert {g["weight_decay"] for g in groups} == {0.0, 1e-5}  # backbone and head, each decayed and not
    # 0.016 per 256 images at a global batch of 4; 3 steps per epoch (12 images / 4), so 5 warmup epochs are 15
    # steps and the run's 12 steps are still warming up: the LR of step 12 is base * (12 + 1) / 15.
    assert [g["initial_lr"] for g in groups] == pytest.approx([0.016 * 4 / 256] * len(groups))
    assert groups[0]["lr"] == pytest.approx(0.016 * 4 / 256 * 13 / 15)


TRANSFER = ["cifar10", "cifar100", "flowers102", "stanford_cars", "oxford_pets", "fgvc_aircraft", "food101", "birdsnap"]


@pytest.mark.parametrize("name", TRANSFER)
def test_transfer_configs_train_on_their_dataset_at_the_models_size_without_stages(capsys, name):
    (stage,) = schedule(capsys, "--config", f"transfer/{name}")
    assert stage["image_size"] == VARIANTS["efficientnetv2_s"].train_size
    assert stage["epochs"] == [0, None]  # step-based: 10,000 steps


@pytest.mark.parametrize(
    ("name", "classes"), [("oxford_pets", 37), ("fgvc_aircraft", 100), ("food101", 101), ("birdsnap", 3)]
)
def test_v1s_other_transfer_configs_reach_their_dataset_class_count_and_the_transfer_recipe(tmp_path, name, classes):
    from tests.data.fixtures import write_birdsnap

    write_birdsnap(tmp_path)  # Birdsnap's class count is its species folders' (3 here); the others' are fixed
    cli = configured(["--config", f"transfer/{name}", "--data.root", str(tmp_path), "--accelerator", "cpu"])
    assert cli.datamodule.hparams.name == name and cli.model.num_classes == classes
    assert cli.model.net.classifier.out_features == classes
    h = cli.model.hparams
    assert (h.optimizer, h.lr_per_256, h.weight_decay, h.lr_schedule) == ("sgd", 0.0005, 0.0, "cosine")
    assert cli.trainer.max_steps == 10000 and cli.trainer.accumulate_grad_batches == 8


def test_the_official_overlay_trains_at_the_eval_size(capsys):
    (stage,) = schedule(capsys, "--config", "transfer/cifar10", "--config", "transfer/official")
    assert stage["image_size"] == VARIANTS["efficientnetv2_s"].eval_size and stage["dropout"] == 0.0


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
    # The paper's transfer LR: 0.001 at 512 images, i.e. 0.0005 per 256, here at a global batch of 4; its cosine
    # reaches zero at the last of the (here 3) steps.
    group = last["optimizer_states"][0]["param_groups"][0]
    assert group["initial_lr"] == pytest.approx(0.001 * 4 / 512)
    schedule = last["lr_schedulers"][0]
    assert schedule["last_epoch"] == 3 and schedule["_last_lr"][0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("config", ["b0", "v2_s"])
def test_the_imagenet_configs_checkpoint_every_5_minutes_and_wait_10_for_a_peer(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_imagefolder(tmp_path / "data" / "imagenet", per_class=2)
    cli = configured(["--config", config, "--accelerator", "cpu", "--devices", "2", "--precision", "32-true"])
    last = [c for c in cli.trainer.callbacks if isinstance(c, LastCheckpoint)]
    assert [(c.save_every_n_steps, c.save_every_s) for c in last] == [(0, 300.0)]
    assert cli.trainer.strategy._timeout == timedelta(minutes=10)
