"""train.py / lit_effnet.cli: config lookup, overrides, run folders, resume, predict, and one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from argparse import ArgumentError
from datetime import timedelta
from pathlib import Path

import pytest
import timm
import torch
import yaml

from lit_effnet import cli, create_model
from lit_effnet.callbacks.checkpoint import LastCheckpoint
from lit_effnet.callbacks.report import ErrorReport
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
from lit_effnet.models.weights import save_weights
from tests.conftest import child_env, lit_checkpoint
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


def test_ckpt_path_last_resumes_the_newest_version_of_the_run():
    assert find_last_checkpoint(Path("checkpoints"), "quickstart") is None
    fake_run(0, when=0)
    newest = fake_run(1, when=1)
    assert find_last_checkpoint(Path("checkpoints"), "quickstart") == (newest, 1)


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


def test_the_schedule_of_a_library_network_and_of_pretrained_weights_is_theirs(tmp_path, capsys):
    (baseline,) = printed_schedule(
        capsys, "--config", "quickstart", "--progressive", "null", "--model.name", "timm:resnet18",
        "--model.model_kwargs", '{"dropout": 0.3, "drop_path_rate": 0.05}',
    )  # fmt: skip
    assert (baseline["image_size"], baseline["dropout"], baseline["drop_path_rate"]) == (224, 0.3, 0.05)
    weights = tmp_path / "b0.pth"  # timm's V1 names both TF ports and its own weights: the source says which
    torch.save(timm.create_model("tf_efficientnet_b0", num_classes=10).state_dict(), weights)
    (pretrained,) = printed_schedule(
        capsys, "--config", "quickstart", "--progressive", "null", "--model.name", "efficientnet_b0",
        "--pretrained", str(weights), "--model.pretrained_source", "tf_efficientnet_b0",
    )  # fmt: skip
    assert (pretrained["image_size"], pretrained["dropout"]) == (224, 0.2)  # B0's, not quickstart's V2-B0's 192


def test_configured_builds_without_running_seeds_0_and_keeps_plain_hyperparameters(tmp_path, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")  # where Lightning takes a seed from when none is given
    bare = tmp_path / "bare.yaml"  # no seed_everything of its own (the shipped configs set 0)
    bare.write_text("model: {name: efficientnetv2_b0, model_kwargs: {width: 0.25}}\ndata: {name: digits}\n")
    built = configured(["--config", str(bare)])
    assert built.config.seed_everything == 0 and built.trainer.global_step == 0
    assert (built.trainer.default_root_dir, built.trainer.logger.name) == (str(Path("checkpoints/bare")), "bare")
    assert "_instantiator" not in built.model.hparams  # what a checkpoint saves: load_from_checkpoint needs no CLI
    with pytest.raises(ArgumentError, match=r"--model\.bogus"):  # an error to catch, not a SystemExit
        configured(["--config", "quickstart", "--model.bogus", "1"])


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
    env = child_env(OMP_NUM_THREADS="2")
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
        capture_output=True, text=True, timeout=120, env=child_env(),
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
    for mixed in ("bf16-mixed", "16-mixed", "bf16", "16"):
        said.clear()
        assert xla_precision(mixed) == "32-true"
        assert said == [
            f"precision {mixed}: XLA has no autocast in Lightning; training in 32-true (float32 weights and state; on "
            "TPUs the matrix units multiply in bfloat16 by default). --precision bf16-true stores the weights in "
            "bfloat16 instead"
        ]
    said.clear()
    assert [xla_precision(p) for p in ("32-true", "bf16-true", "16-true")] == ["32-true", "bf16-true", "16-true"]
    assert said == []


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


def test_export_finds_the_configs_newest_run_and_exports_its_ema_weights_at_its_eval_size(tmp_path, capsys):
    raw = create_model("efficientnetv2_b0", num_classes=3, width=0.25, depth=0.25).eval()
    ema = create_model("efficientnetv2_b0", num_classes=3, width=0.25, depth=0.25).eval()
    old = lit_checkpoint(Path("checkpoints/quickstart/version_0/checkpoints/last.ckpt"), raw, raw)
    new = lit_checkpoint(Path("checkpoints/quickstart/version_1/checkpoints/last.ckpt"), ema, raw, eval_size=40)
    os.utime(old, (1_000_000_000, 1_000_000_000))
    export = ["export", "--config", "quickstart", "--format", "torch_export"]  # runs under checkpoints/
    assert main([*export, "--ckpt_path", "last"]) == 0
    out = new.with_name("model-torch_export.pt2")  # beside the checkpoint, named by the format
    assert capsys.readouterr().out.startswith(f"exported efficientnetv2_b0 to {out} (torch.export")
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(str(out)).module()(x), ema(x), rtol=1e-4, atol=1e-5)
    assert main([*export, "--ckpt_path", str(new.parents[1]), "--weights", "raw", "--out", "raw.pt2"]) == 0
    assert " at 40px; " in capsys.readouterr().out  # the run's eval size, read from its checkpoint
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load("raw.pt2").module()(x), raw(x), rtol=1e-4, atol=1e-5)
    assert main([*export, "--ckpt_path", str(old), "--out", "old.pt2"]) == 0
    assert " at 224px; " in capsys.readouterr().out  # no eval size in the run: V2-B0's own
    assert main([*export, "--ckpt_path", str(new), "--size", "48", "--out", "48.pt2"]) == 0
    assert " at 48px; " in capsys.readouterr().out
    assert main([*export, "--root", str(tmp_path / "none"), "--ckpt_path", "last"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --ckpt_path last: no {tmp_path / 'none'}/quickstart/version_*/checkpoints/last.ckpt to export"
    )


@pytest.mark.parametrize("left_out", ["--config", "--ckpt_path", "--format"])
def test_export_needs_a_config_a_checkpoint_and_a_format(capsys, left_out):
    given = {"--config": "quickstart", "--ckpt_path": "last", "--format": "onnx"}
    with pytest.raises(SystemExit) as exit_info:
        main(["export", *(x for key, value in given.items() if key != left_out for x in (key, value))])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: the following arguments are required: {left_out}")


def test_export_help_says_what_each_option_does(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for line in (
        "usage: python train.py export",
        "`train.py export --config NAME --ckpt_path PATH|last --format F [--out FILE] [--weights ema|raw]`.",
        "--config CONFIG the run's config (its name finds --ckpt_path last)",
        "--ckpt_path CKPT_PATH a .ckpt, a run folder, or last (the config's newest)",
        "--format {onnx,timm,torch_export,torchvision}",
        "--out OUT the file to write; default: next to the checkpoint, model.<suffix>",
        "--weights {ema,raw} from a .ckpt (default: EMA)",
        "--size SIZE input size of the graph (default: the run's eval size)",
        "--root ROOT the runs' folder (trainer.default_root_dir)",
    ):
        assert line in text, line


def fake_run(version: int, name: str = "last.ckpt", when: int = 0, readable: bool = True) -> Path:
    """checkpoints/quickstart/version_N/checkpoints/NAME holding what a resume checks for (or garbage)."""
    path = Path("checkpoints/quickstart") / f"version_{version}" / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if readable:
        torch.save({"state_dict": {}, "hyper_parameters": {}, "epoch": version}, path)
    else:
        path.write_bytes(b"PK\x03\x04 cut short")
    os.utime(path, (1_000_000_000 + when, 1_000_000_000 + when))
    return path


@pytest.fixture
def fits(monkeypatch) -> list[tuple]:
    """What each Trainer.fit call would have run with (trainer, ckpt_path), without training."""
    from lightning.pytorch import Trainer

    calls: list[tuple] = []

    def fit(self, model, datamodule=None, ckpt_path=None):
        calls.append((self, ckpt_path))

    monkeypatch.setattr(Trainer, "fit", fit)
    return calls


def test_a_resume_takes_the_newest_runs_checkpoint_and_logs_on_into_its_version(fits):
    fake_run(0, when=2)
    newest = fake_run(3, when=5)
    assert main(["--config", "quickstart", "--ckpt_path", "last"]) == 0
    trainer, ckpt_path = fits[-1]
    assert ckpt_path == str(newest)
    logger = trainer.logger
    assert (logger.save_dir, logger.name, logger.version) == ("checkpoints", "quickstart", 3)
    assert trainer.default_root_dir == str(Path("checkpoints/quickstart"))
    assert main(["--config", "quickstart", "--ckpt_path", "auto", "--trainer.default_root_dir", "elsewhere"]) == 0
    trainer, ckpt_path = fits[-1]
    assert ckpt_path is None  # auto: nothing to resume under elsewhere/, so a new run there
    assert trainer.logger.log_dir == str(Path("elsewhere/quickstart/version_0"))


def test_an_unreadable_last_ckpt_resumes_from_the_one_before_it_saying_so(fits, capsys):
    broken = fake_run(0, readable=False, when=5)
    previous = fake_run(0, "last.prev.ckpt", when=4)
    assert main(["--config", "quickstart", "--ckpt_path", "last"]) == 0
    assert fits[-1][1] == str(previous)
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith(f"warning: --ckpt_path {broken}: not a readable checkpoint (")
    assert warning.endswith(f"; resuming from the one before it, {previous}")
    fake_run(0, "last.prev.ckpt", readable=False)
    assert main(["--config", "quickstart", "--ckpt_path", "last"]) == 2  # no readable one left: named, not guessed
    assert capsys.readouterr().err.startswith(f"error: --ckpt_path {previous}: not a readable checkpoint")


def test_a_run_killed_between_the_writers_renames_resumes_from_its_last_prev_ckpt():
    fake_run(0, when=1)
    orphan = fake_run(1, "last.prev.ckpt", when=3)  # version_1's last.ckpt was gone at the kill
    assert find_last_checkpoint(Path("checkpoints"), "quickstart") == (orphan, 1)
    fake_run(1, when=2)  # once a last.ckpt is beside it, the previous one is history
    assert find_last_checkpoint(Path("checkpoints"), "quickstart") == (fake_run(1, when=2), 1)


def test_a_batch_limit_of_1_from_a_config_or_the_command_line_is_one_batch_and_a_float_a_fraction(tmp_path):
    config = tmp_path / "limits.yaml"
    config.write_text("trainer:\n  limit_val_batches: 1\n  limit_test_batches: 0.25\n")
    built = configured(["--config", "quickstart", "--config", str(config), "--trainer.limit_train_batches", "1"])
    limits = [built.trainer.limit_train_batches, built.trainer.limit_val_batches, built.trainer.limit_test_batches]
    assert limits == [1, 1, 0.25] and [type(x) for x in limits] == [int, int, float]
    again = configured(["--config", "quickstart", "--config", str(config), "--trainer.limit_val_batches", "0.5"])
    assert again.trainer.limit_val_batches == 0.5  # the last one given wins


def test_after_fit_names_the_best_checkpoint_with_its_score_and_the_last_one(capsys):
    built = configured(["--config", "quickstart"])
    best = built.trainer.checkpoint_callback
    built.after_fit()
    assert capsys.readouterr().out == ""  # no best checkpoint yet: nothing to name
    best.best_model_path, best.best_model_score = "run/checkpoints/best-epoch=3.ckpt", torch.tensor(0.912345)
    built.after_fit()
    assert capsys.readouterr().out.splitlines() == [
        "best val/acc1 0.9123: run/checkpoints/best-epoch=3.ckpt",
        "last: run/checkpoints/last.ckpt (resume with --ckpt_path last)",
    ]
    best.best_model_score = None  # ddp_spawn hands back the path without the score
    built.after_fit()
    assert capsys.readouterr().out.splitlines()[0] == "best val/acc1: run/checkpoints/best-epoch=3.ckpt"
    built.before_test()
    assert isinstance(built.trainer.callbacks[-1], ErrorReport)  # train.py test leaves the errors' report


def test_a_run_is_seeded_with_0_unless_told_otherwise(capsys):
    assert printed_config(capsys, ["--config", "quickstart"])["seed_everything"] == 0
    assert printed_config(capsys, ["--config", "quickstart", "--seed_everything", "5"])["seed_everything"] == 5


def test_files_takes_every_value_up_to_the_next_option_and_the_others_one():
    args, run = rewrite_argv(["predict", "--config=quickstart", "--files", "a.jpg", "b dir", "--ckpt_path", "last"])
    assert args[0] == "predict" and run == "quickstart"
    at = args.index("--data.predict_files")
    assert json.loads(args[at + 1]) == ["a.jpg", "b dir"] and args[at + 2 :] == ["--ckpt_path", "last"]
    args, _ = rewrite_argv(["--files=c.png", "--devices", "2", "extra"])
    assert args == ["fit", "--data.predict_files", '["c.png"]', "--trainer.devices", "2", "extra"]
    with pytest.raises(ConfigError, match=r"^--files needs a value$"):
        rewrite_argv(["predict", "--files", "--ckpt_path", "last"])


@pytest.mark.parametrize(
    ("knob", "ramp", "pin", "key", "value"),
    [
        ("image_size", [], ["--data.image_size", "32"], "data.image_size", "32"),
        ("randaug_magnitude", [], ["--data.randaug_magnitude", "5"], "data.randaug_magnitude", "5.0"),
        ("dropout", [], ["--model.model_kwargs", '{"dropout": 0.3}'], "model.model_kwargs.dropout", "0.3"),
        ("drop_path_rate", ["--progressive.drop_path_rate", "[0, 0.1]"],
         ["--model.model_kwargs", '{"drop_path_rate": 0.2}'], "model.model_kwargs.drop_path_rate", "0.2"),
        ("mixup_alpha", ["--progressive.mixup_alpha", "[0, 0.2]"], ["--model.mixup_alpha", "0.3"],
         "model.mixup_alpha", "0.3"),
        ("cutmix_alpha", ["--progressive.cutmix_alpha", "[0, 0.5]"], ["--model.cutmix_alpha", "1.0"],
         "model.cutmix_alpha", "1.0"),
    ],
)  # fmt: skip
def test_print_schedule_refuses_a_knob_both_scheduled_and_pinned_naming_both(capsys, knob, ramp, pin, key, value):
    assert main(["--config", "quickstart", *ramp, *pin, "--print_schedule"]) == 2
    assert error_line(capsys) == (
        f"error: progressive.{knob} is scheduled and {key} is set ({value}): set one of them (a fixed value: "
        f"progressive.{knob} [{value}, {value}])"
    )


def test_a_schedule_without_stages_shows_the_runs_own_size_mixing_and_epochs(tmp_path, capsys):
    (single,) = printed_schedule(
        capsys, "--config", "quickstart", "--progressive", "null", "--data.image_size", "40",
        "--model.mixup_alpha", "0.2", "--model.cutmix_alpha", "1.0", "--trainer.max_epochs", "1",
    )  # fmt: skip
    assert (single["epochs"], single["image_size"], single["mixup_alpha"], single["cutmix_alpha"]) == (
        [0, 0], 40, 0.2, 1.0,
    )  # fmt: skip
    (evaluated,) = printed_schedule(capsys, "--config", "quickstart", "--progressive", "null", "--data.image_size",
                                    "eval")  # fmt: skip
    assert evaluated["image_size"] == 224  # V2-B0's eval size
    weights = save_weights(create_model("efficientnet_b2", num_classes=10, width=0.5), tmp_path / "b2.safetensors")
    (pretrained,) = printed_schedule(
        capsys, "--config", "quickstart", "--progressive", "null", "--model.name", "efficientnet_b2",
        "--pretrained", str(weights), "--model.model_kwargs", '{"dropout": 0.35}',
    )  # fmt: skip
    assert (pretrained["image_size"], pretrained["dropout"]) == (260, 0.35)  # B2's size, the run's own dropout
