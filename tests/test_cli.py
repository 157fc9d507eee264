"""train.py / lit_effnet.cli: config lookup, overrides, run folders, resume, predict, and one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import yaml

from lit_effnet import cli
from lit_effnet.callbacks.checkpoint import LastCheckpoint
from lit_effnet.cli import (
    PROJECT_ROOT,
    configured,
    find_last_checkpoint,
    main,
    resume_command,
    rewrite_argv,
    xla_precision,
)
from lit_effnet.errors import ConfigError
from tests.data.fixtures import write_imagefolder

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


def printed_schedule(capsys, *argv: str) -> list[dict]:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_schedule"])
    assert exit_info.value.code == 0
    return json.loads(capsys.readouterr().out)


def test_config_names_resolve_with_or_without_yaml_and_fit_is_the_default():
    args, run = rewrite_argv(["--config", "quickstart", "--devices", "2", "--accelerator=cpu"])
    assert args == [
        "fit", "--config", str(PROJECT_ROOT / "configs" / "quickstart.yaml"), "--trainer.devices", "2",
        "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    assert run == "quickstart"
    assert rewrite_argv(["test", "--config", "quickstart.yaml"])[0][:2] == ["test", "--config"]


def test_a_thin_config_applies_the_recipe_it_extends_first(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("model:\n  lr_per_256: 0.5\n  optimizer: sgd\n")
    (tmp_path / "configs" / "thin.yaml").write_text("extends: base\nmodel:\n  optimizer: adamw\n")
    args, run = rewrite_argv(["--config", "thin"])
    assert run == "thin" and args[1:3] == ["--config", str(tmp_path / "configs" / "base.yaml")]
    assert yaml.safe_load(args[4]) == {"model": {"optimizer": "adamw"}}  # the thin file, without `extends`


def test_ckpt_path_last_resumes_the_newest_version_of_the_run(tmp_path):
    assert find_last_checkpoint(tmp_path / "checkpoints", "quickstart") is None
    for version in (0, 1):
        path = tmp_path / "checkpoints" / "quickstart" / f"version_{version}" / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (version, version))
    assert find_last_checkpoint(tmp_path / "checkpoints", "quickstart") == (path, 1)


def test_print_config_shows_dotted_overrides(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["--config", "quickstart", "--model.name", "efficientnetv2_s", "--data.batch_size", "48", "--print_config"]
        )
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["name"] == "efficientnetv2_s" and config["data"]["batch_size"] == 48
    assert config["progressive"]["init_args"]["num_stages"] == 3


def test_print_schedule_prints_one_json_object_per_stage_and_one_without_stages(capsys):
    stages = printed_schedule(capsys, "--config", "quickstart")
    assert [s["epochs"] for s in stages] == [[0, 9], [10, 19], [20, 29]]
    assert [s["image_size"] for s in stages] == [48, 56, 64] and [s["dropout"] for s in stages] == [0.0, 0.05, 0.1]
    assert set(stages[0]) >= {"epochs", "image_size", "dropout", "randaug_magnitude", "mixup_alpha", "cutmix_alpha"}
    # Without progressive learning the unset data.image_size is the network's own: V2-B0 trains at 192 px.
    (single,) = printed_schedule(capsys, "--config", "quickstart", "--progressive", "null")
    assert single["epochs"] == [0, 29] and single["image_size"] == 192 and single["dropout"] == 0.2


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
        (["--config", "transfer/digits_rotation"], "model.pretrained checkpoints/quickstart: no such file or folder"),
        (["--config", "quickstart", "--pretrained", "missing.safetensors"], "missing.safetensors"),
        (["--config", "quickstart", "--data.image_size", "32"], "data.image_size is set"),
        (["--config", "quickstart", "--progressive.mode", "random_resize", "--progressive.image_size", "[64, 64]"],
         "random_resize"),
        # hardware this machine (and CI) lacks: no torch_xla in the project's venv, no GPU
        (["--config", "quickstart", "--accelerator", "tpu", "--devices", "8"],
         "trainer.accelerator tpu: torch_xla is not installed"),
        (["--config", "quickstart", "--accelerator", "gpu"], "trainer.accelerator gpu: no GPU on this machine"),
        (["--config", "quickstart", "--accelerator", "cuda"], "trainer.accelerator cuda: no GPU on this machine"),
        (["--config", "quickstart", "--devices", "3", "--strategy", "fsdp2_nonsense"], "trainer: "),
        (["--config", "quickstart", "--checkpoint.every_n_train_steps", "-5"], "checkpoint.every_n_train_steps"),
        (["--config", "quickstart", "--collective_timeout", "0"], "collective_timeout must be > 0"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_culprit_and_exit_2(capsys, argv, culprit):
    assert main(argv) == 2
    assert culprit in error_line(capsys)


def test_a_missing_dataset_folder_is_named(capsys):
    assert main(["--config", "quickstart", "--data.name", "cifar10", "--data.root", "nowhere", *TINY_RUN]) == 2
    assert "nowhere/cifar-10-batches-py" in error_line(capsys)


def test_an_internal_error_keeps_its_traceback(monkeypatch):
    # A bug that raises a ValueError is not a user mistake: it must not be turned into a tidy line.
    def broken(self, *args, **kwargs):
        raise ValueError("a bug in the data pipeline")

    monkeypatch.setattr("lit_effnet.data.datamodule.ImageDataModule.train_dataloader", broken)
    with pytest.raises(ValueError, match="a bug in the data pipeline"):
        main(["--config", "quickstart", "--trainer.max_epochs", "3", *TINY_RUN])


def test_quickstart_trains_checkpoints_and_resumes_into_the_same_version(tmp_path):
    assert main(["--config", "quickstart", "--trainer.max_epochs", "3", *TINY_RUN]) == 0
    run = tmp_path / "checkpoints" / "quickstart" / "version_0"
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 2
    assert main(["--config", "quickstart", "--trainer.max_epochs", "4", "--ckpt_path", "last", *TINY_RUN]) == 0
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 3 and last["global_step"] == 8
    assert not (tmp_path / "checkpoints" / "quickstart" / "version_1").exists()
    # train.py test evaluates it and leaves the errors' report in the same run folder.
    assert main(["test", "--config", "quickstart", "--ckpt_path", "last", "--trainer.limit_test_batches", "2"]) == 0
    rows = (run / "per_class.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(d) for d in range(10)] and (run / "confusion.png").is_file()


def test_a_batch_limit_of_1_means_one_batch_not_all_of_them():
    # jsonargparse reads Lightning's `int | float` limit as 1.0, which Lightning takes as 100% of the batches.
    argv = ["--config", "quickstart", "--trainer.max_epochs", "3", *TINY_RUN, "--trainer.limit_train_batches", "1"]
    assert main(argv) == 0
    last = torch.load("checkpoints/quickstart/version_0/checkpoints/last.ckpt", weights_only=False)
    assert last["global_step"] == 3


def test_default_root_dir_holds_the_runs_and_a_sigkilled_run_resumes_there(tmp_path):
    argv = [
        sys.executable, str(PROJECT_ROOT / "train.py"), "--config", "quickstart", "--trainer.default_root_dir", "runs",
        "--progressive", "null", "--trainer.max_epochs", "30", *TINY_RUN,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    last = tmp_path / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 180
    while not last.exists():
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "checkpoints").exists()  # nothing went to the default folder
    epoch = torch.load(last, weights_only=False)["epoch"]
    resume = [
        "--config",
        "quickstart",
        "--trainer.default_root_dir",
        "runs",
        "--progressive",
        "null",
        "--ckpt_path",
        "last",
    ]
    assert main([*resume, "--trainer.max_epochs", str(epoch + 2), *TINY_RUN]) == 0
    assert torch.load(last, weights_only=False)["epoch"] == epoch + 1
    assert not (tmp_path / "runs" / "quickstart" / "version_1").exists()


def test_quickstart_learns_far_above_chance_on_a_short_budget(tmp_path):
    # 6 of the 30 epochs (3 stages of 2): chance is 10%.
    assert main(["--config", "quickstart", "--trainer.max_epochs", "6", "--trainer.enable_progress_bar", "false"]) == 0
    best = next(Path("checkpoints/quickstart/version_0/checkpoints").glob("best-*.ckpt"))
    assert float(best.stem.split("acc")[-1]) >= 0.6


def test_test_writes_per_class_accuracy_and_the_confusion_matrix_into_the_run(tmp_path, capsys):
    write_imagefolder(tmp_path / "imgs", per_class=6)
    config = ["--config", "quickstart", "--data.name", "imagefolder", "--data.root", str(tmp_path / "imgs")]
    run = [*config, "--data.batch_size", "4", "--trainer.max_epochs", "3", *TINY_RUN]
    assert main(run) == 0
    assert main(["test", *config, "--data.batch_size", "4", "--ckpt_path", "last"]) == 0
    folder = tmp_path / "checkpoints" / "quickstart" / "version_0"
    rows = (folder / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,images,top1,confused_with" and [r.split(",")[:2] for r in rows[1:]] == [
        ["cat", "2"], ["dog", "2"], ["eel", "2"],
    ]  # fmt: skip
    assert (folder / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_prints_the_top_classes_of_each_file(tmp_path, capsys):
    write_imagefolder(tmp_path / "imgs", per_class=6)
    config = ["--config", "quickstart", "--data.name", "imagefolder", "--data.root", str(tmp_path / "imgs")]
    assert main([*config, "--data.batch_size", "4", "--trainer.max_epochs", "3", *TINY_RUN]) == 0
    capsys.readouterr()
    files = [str(tmp_path / "imgs" / "val" / "dog" / "0.jpg"), str(tmp_path / "imgs" / "val" / "eel")]
    assert (
        main(["predict", *config, "--ckpt_path", "last", "--trainer.enable_progress_bar", "false", "--files", *files])
        == 0
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if ".jpg: " in line]
    assert [line.split(":")[0] for line in lines] == [files[0], f"{files[1]}/0.jpg", f"{files[1]}/1.jpg"]
    for line in lines:  # three classes: three "name (p)" entries summing to 1
        entries = line.split(": ", 1)[1].split(", ")
        assert {e.split(" ")[0] for e in entries} == {"cat", "dog", "eel"}
        assert sum(float(e.split("(")[1].rstrip(")")) for e in entries) == pytest.approx(1.0, abs=2e-3)


def test_train_py_exits_2_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), "--config", "quickstart", "--trainer.max_epochz", "3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "max_epochz" in result.stderr


def test_config_errors_from_the_command_line_helpers_are_config_errors():
    with pytest.raises(ConfigError, match="--config needs a value"):
        rewrite_argv(["--config"])


def test_the_resume_command_is_the_runs_own_with_ckpt_path_last():
    assert resume_command(["--config", "v2_l", "--devices", "8", "--ckpt_path", "x.ckpt"]) == (
        "python train.py --config v2_l --devices 8 --ckpt_path last"
    )
    assert resume_command(["--config=quickstart", "--ckpt_path=auto", "--data.root", "my data"]) == (
        "python train.py --config=quickstart --data.root 'my data' --ckpt_path last"
    )


def test_the_checkpoint_group_and_the_collective_timeout_reach_the_trainer():
    cli = configured(
        ["--config", "quickstart", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
         "--checkpoint.every_n_train_steps", "7", "--checkpoint.train_time_interval", "2.5",
         "--collective_timeout", "3"]
    )  # fmt: skip
    trainer = cli.trainer
    last = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
    assert len(last) == 1 and (last[0].save_every_n_steps, last[0].save_every_s) == (7, 150.0)
    assert trainer.checkpoint_callback.monitor == "val/acc1"  # best_checkpoint() stays the first: ckpt_path="best"
    assert trainer.strategy._timeout == timedelta(minutes=3)


def test_xla_trains_bf16_mixed_configs_in_32_true_and_keeps_what_it_supports(monkeypatch):
    # Lightning's logger stops propagating when it is imported before pytest's handlers exist, so caplog
    # cannot be relied on: the line is caught where the CLI prints it.
    said: list[str] = []
    monkeypatch.setattr(cli, "rank_zero_info", said.append)
    assert xla_precision("bf16-mixed") == "32-true"
    assert any("precision bf16-mixed: XLA has no autocast in Lightning; training in 32-true" in s for s in said)
    assert [xla_precision(p) for p in ("32-true", "bf16-true", "16-true")] == ["32-true", "bf16-true", "16-true"]


def printed_config(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_stacked_configs_and_overrides_win_in_order_recipe_thin_file_overlay_command_line(tmp_path, capsys):
    # quickstart <- base <- thin (extends chain), then an overlay, then the command line, each setting a key or two.
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(
        "extends: quickstart\nmodel:\n  lr_per_256: 0.5\n  label_smoothing: 0.2\ndata:\n  batch_size: 16\n"
    )
    (tmp_path / "configs" / "thin.yaml").write_text(
        "extends: base\nmodel:\n  lr_per_256: 0.25\ndata:\n  batch_size: 24\n"
    )
    (tmp_path / "configs" / "overlay.yaml").write_text("data:\n  batch_size: 40\ntrainer:\n  max_epochs: 5\n")
    argv = ["--config", "thin", "--config", "overlay", "--trainer.max_epochs", "7", "--model.weight_decay", "0.5"]
    config = printed_config(capsys, argv)
    model, data, trainer = config["model"], config["data"], config["trainer"]
    assert model["weight_decay"] == 0.5 and trainer["max_epochs"] == 7  # the command line over everything
    assert data["batch_size"] == 40  # the overlay over the thin file
    assert model["lr_per_256"] == 0.25  # the thin file over its recipe
    assert model["label_smoothing"] == 0.2  # the recipe over the recipe it extends
    assert model["optimizer"] == "adamw" and data["eval_size"] == 64  # quickstart where nothing else says
    assert rewrite_argv(argv)[1] == "thin+overlay"
    # Order on the command line decides, not kind: a config given after an override wins over it.
    later = printed_config(capsys, ["--config", "thin", "--trainer.max_epochs", "7", "--config", "overlay"])
    assert later["trainer"]["max_epochs"] == 5
