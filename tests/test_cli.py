"""train.py / lit_effnet.cli: config lookup, overrides, resume, and one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lit_effnet.cli import PROJECT_ROOT, CommandError, find_last_checkpoint, main, rewrite_argv

TINY_RUN = [
    "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # checkpoints/ lands in the test's folder; configs/ resolve from the project


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    assert not any("Traceback" in line for line in err)
    return err[-1]


def test_config_names_resolve_with_or_without_yaml_and_fit_is_the_default():
    args, run, version = rewrite_argv(["--config", "quickstart", "--devices", "2", "--accelerator=cpu"])
    assert args == [
        "fit", "--config", str(PROJECT_ROOT / "configs" / "quickstart.yaml"), "--trainer.devices", "2",
        "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    assert (run, version) == ("quickstart", None)
    assert rewrite_argv(["test", "--config", "quickstart.yaml"])[0][:2] == ["test", "--config"]


def test_ckpt_path_last_resumes_the_newest_version_and_auto_also_starts_fresh(tmp_path):
    auto, _, auto_version = rewrite_argv(["--config", "quickstart", "--ckpt_path", "auto"])
    assert "--ckpt_path" not in auto and auto_version is None  # nothing to resume yet: a fresh run
    for version in (0, 1):
        path = tmp_path / "checkpoints" / "quickstart" / f"version_{version}" / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (version, version))
    assert find_last_checkpoint("quickstart", tmp_path / "checkpoints") == (path, 1)
    auto, _, auto_version = rewrite_argv(["--config", "quickstart", "--ckpt_path", "auto"])
    assert auto[-2:] == ["--ckpt_path", str(Path("checkpoints/quickstart/version_1/checkpoints/last.ckpt"))]
    assert auto_version == 1
    with pytest.raises(CommandError, match="no checkpoints/transfer/x/version_"):
        find_last_checkpoint("transfer/x", Path("checkpoints"))


def test_print_config_shows_dotted_overrides(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["--config", "quickstart", "--model.name", "efficientnetv2_s", "--data.batch_size", "48", "--print_config"]
        )
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["name"] == "efficientnetv2_s" and config["data"]["batch_size"] == 48
    assert config["progressive"]["num_stages"] == 3 and config["trainer"]["logger"]["init_args"]["name"] == "quickstart"


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["--config", "quickstart", "--model.bogus", "1"], "--model.bogus"),
        (["--config", "no_such_config"], "no_such_config"),
        (["--config", "quickstart", "--data.batch_size", "abc"], "data.batch_size"),
        (["--config", "quickstart", "--model.name", "efficientnet_b9"], "efficientnet_b9"),
        (["--config", "quickstart", "--data.name", "mnist"], "data.name"),
        (["--config", "quickstart", "--progressive.num_stages", "40"], "progressive.num_stages"),
        (["--config", "quickstart", "--ckpt_path", "last"], "--ckpt_path last"),
        (["--config", "transfer/digits_rotation"], "pretrained: no such file checkpoints/quickstart"),
        (["--config", "quickstart", "--pretrained", "missing.safetensors"], "missing.safetensors"),
    ],
)
def test_bad_input_is_one_line_naming_the_culprit_and_exit_2(capsys, argv, culprit):
    assert main(argv) == 2
    assert culprit in error_line(capsys)


def test_a_missing_dataset_folder_is_named(capsys, tmp_path):
    assert main(["--config", "quickstart", "--data.name", "cifar10", "--data.root", "nowhere", *TINY_RUN]) == 2
    assert "nowhere/cifar-10-batches-py" in error_line(capsys)


def test_quickstart_trains_checkpoints_and_resumes_into_the_same_version(tmp_path):
    assert main(["--config", "quickstart", "--trainer.max_epochs", "3", *TINY_RUN]) == 0
    run = tmp_path / "checkpoints" / "quickstart" / "version_0"
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 2
    assert main(["--config", "quickstart", "--trainer.max_epochs", "4", "--ckpt_path", "last", *TINY_RUN]) == 0
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 3 and last["global_step"] == 8
    assert not (tmp_path / "checkpoints" / "quickstart" / "version_1").exists()


def test_quickstart_learns_far_above_chance_on_a_short_budget(tmp_path, capsys):
    # 6 of the 30 epochs (3 stages of 2): measured 86-92% over seeds 0-2; chance is 10%.
    assert main(["--config", "quickstart", "--trainer.max_epochs", "6", "--trainer.enable_progress_bar", "false"]) == 0
    best = next(Path("checkpoints/quickstart/version_0/checkpoints").glob("best-*.ckpt"))
    score = float(best.stem.split("acc")[-1])
    assert score >= 0.6


def test_train_py_exits_2_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), "--config", "quickstart", "--trainer.max_epochz", "3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "max_epochz" in result.stderr
