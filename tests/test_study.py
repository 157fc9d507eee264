"""python -m lit_effnet.study: matched multiply-adds, tiny studies end to end, and a study resumed after a kill."""

import csv
import signal
import subprocess
import sys
import time

import pytest

from lit_effnet.cli import PROJECT_ROOT
from lit_effnet.models.scaling import ALPHA, BETA, GAMMA
from lit_effnet.study import Base, compound, main, single_dimension
from tests.conftest import child_env

TINY = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
    "--data.batch_size", "16",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def rows(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_single_dimension_models_match_the_compound_models_multiply_adds_within_10_percent():
    base = Base(["--config", "proxy"])
    assert base.resolution == 32  # the proxy's last progressive size
    target = compound(base, 1.0)
    assert (target.depth, target.width, target.resolution) == (ALPHA, BETA, round(32 * GAMMA))
    macs = base.macs(target)
    assert macs > 1.2 * base.macs(base.shape)  # 2^phi before rounding: narrow layers stay at 8-channel multiples
    for dimension in ("depth", "width", "resolution"):
        shape, found = single_dimension(base, dimension, macs)
        assert abs(found / macs - 1) <= 0.10, dimension
        others = {"depth", "width", "resolution"} - {dimension}
        assert all(getattr(shape, d) == getattr(base.shape, d) for d in others)  # only that dimension moved


def test_scaling_study_trains_base_compound_and_each_dimension_and_writes_table_and_figure(tmp_path, capsys):
    assert main(["scaling", "--config", "proxy", "--out", "s", "--", *TINY]) == 0
    table = rows(tmp_path / "s" / "results.csv")
    assert [r["method"] for r in table] == ["base", "compound", "depth", "width", "resolution"]
    assert {"depth", "width", "resolution", "macs", "params", "acc1"} <= set(table[0])
    compound_macs = int(table[1]["macs"])
    assert all(abs(int(r["macs"]) / compound_macs - 1) <= 0.10 for r in table[2:])
    assert all(0.0 <= float(r["acc1"]) <= 1.0 for r in table)
    assert (tmp_path / "s" / "results.md").read_text().startswith("| method |")
    assert (tmp_path / "s" / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "run 5/5" in capsys.readouterr().out


def test_grid_study_ranks_the_grid_and_prints_the_create_model_call(tmp_path, capsys):
    argv = ["grid", "--config", "quickstart", "--out", "g", "--step", "0.5", "--tolerance", "0.15", "--", *TINY]
    assert main(argv) == 0
    table = rows(tmp_path / "g" / "results.csv")
    points = {(float(r["alpha"]), float(r["beta"]), float(r["gamma"])) for r in table}
    # a * b^2 * g^2 within 15% of 2 on the 0.5 grid, and the paper's point beside them
    assert points == {(2.0, 1.0, 1.0), (1.0, 1.5, 1.0), (1.0, 1.0, 1.5), (ALPHA, BETA, GAMMA)}
    accs = [float(r["acc1"]) for r in table]
    assert accs == sorted(accs, reverse=True)  # ranked
    best = table[0]
    assert f'create_model("efficientnetv2", phi=1.0, alpha={float(best["alpha"]):g}' in capsys.readouterr().out


def test_a_killed_progressive_study_started_again_skips_finished_runs_and_completes(tmp_path):
    argv = [sys.executable, "-m", "lit_effnet.study", "progressive", "--config", "quickstart", "--out", "p", "--",
            "--trainer.max_epochs", "3", *TINY[2:]]  # fmt: skip
    env = child_env(PYTHONPATH=str(PROJECT_ROOT), OMP_NUM_THREADS="2")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "p" / "runs").glob("*/result.json")):
        assert process.poll() is None and time.monotonic() < deadline, "no finished run in time"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "run 1/4: fixed_size-seed0 already finished" in result.stdout
    table = rows(tmp_path / "p" / "results.csv")
    assert [r["schedule"] for r in table] == [
        "fixed_size", "progressive_fixed_reg", "progressive_adaptive_reg", "random_resize_adaptive_reg",
    ]  # fmt: skip
    assert all(float(r["train_s"]) > 0 for r in table)
    assert (tmp_path / "p" / "progressive.png").is_file()


def test_a_setting_one_run_refuses_stops_the_study_before_any_run_trains(tmp_path, capsys):
    # 48 -> 56 px in 3 stages of multiples of 8 is 48, 56, 56: fine for stages, refused by the random-resize run
    argv = ["progressive", "--config", "quickstart", "--out", "p", "--", "--progressive.image_size", "[48, 56]", *TINY]
    argv[argv.index("--trainer.max_epochs") + 1] = "3"
    assert main(argv) == 2
    assert "progressive.mode random_resize draws among the stage sizes" in capsys.readouterr().err
    assert not list((tmp_path / "p" / "runs").glob("*/**/*.ckpt"))  # nothing trained


RESNET = ["--config", "proxy", "--model.name", "timm:resnet18", "--model.model_kwargs", '{"width": 0.25}']


def test_a_resnets_compound_model_scales_its_blocks_and_channels_per_stage():
    base = Base(RESNET)
    net = base.model(compound(base, 1.0))
    assert [len(s) for s in (net.layer1, net.layer2, net.layer3, net.layer4)] == [3, 3, 3, 3]  # ceil(2 x 1.2)
    # 64..512 planes x 0.25 x 1.1, to multiples of 8 (the narrow first stages round back down)
    assert [s[0].conv2.out_channels for s in (net.layer1, net.layer2, net.layer3, net.layer4)] == [16, 32, 72, 144]


@pytest.mark.slow  # ~60 ResNets counted on the meta device: 40 s on 2 busy cores
def test_a_resnets_single_dimension_models_match_the_compound_models_multiply_adds_within_10_percent():
    base = Base(RESNET)
    macs = base.macs(compound(base, 1.0))
    for dimension in ("depth", "width", "resolution"):
        shape, found = single_dimension(base, dimension, macs)
        assert abs(found / macs - 1) <= 0.10, dimension
        assert all(getattr(shape, d) == getattr(base.shape, d) for d in {"depth", "width", "resolution"} - {dimension})
    deep, _ = single_dimension(base, "depth", macs)
    assert len(base.model(deep).layer1) > 3  # depth alone needs more blocks than the compound model's


@pytest.mark.parametrize("study", ["scaling", "grid"])
def test_a_network_whose_width_cannot_scale_is_refused_in_one_line_before_anything_trains(tmp_path, capsys, study):
    assert main([study, "--net", "torchvision:resnet18", "--out", "s", "--", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"error: study {study} --net torchvision:resnet18: cannot scale its width") and "\n" not in err
    )
    assert "BasicBlock" in err and not list((tmp_path / "s" / "runs").glob("*"))


def test_a_progressive_study_whose_network_cannot_receive_the_ramped_dropout_is_refused_before_training(
    tmp_path, capsys
):
    assert main(["progressive", "--net", "torchvision:resnet18", "--out", "p", "--", "--trainer.max_epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "progressive.dropout (torchvision:resnet18) is scheduled, but ResNet has no classifier dropout" in err
    assert not list((tmp_path / "p" / "runs").glob("*"))


@pytest.mark.slow  # 5 tiny runs (~40 s on 2 cores)
def test_scaling_study_of_a_timm_resnet_trains_each_method_at_matched_macs_and_writes_table_and_figure(tmp_path):
    argv = ["scaling", "--net", "timm:resnet18", "--out", "s", "--", "--model.model_kwargs", '{"width": 0.25}', *TINY]
    assert main(argv) == 0
    table = rows(tmp_path / "s" / "results.csv")
    assert [r["method"] for r in table] == ["base", "compound", "depth", "width", "resolution"]
    compound_macs = int(table[1]["macs"])
    assert all(abs(int(r["macs"]) / compound_macs - 1) <= 0.10 for r in table[2:])
    assert (tmp_path / "s" / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    config = (tmp_path / "s" / "runs" / table[2]["method"]).parent  # every run trained the ResNet, not the config's
    hparams = next(config.glob("depth-*/proxy/version_0/hparams.yaml")).read_text()
    assert "name: timm:resnet18" in hparams and "depth: 4.05" in hparams


@pytest.mark.slow  # 4 tiny runs
def test_grid_study_of_a_timm_resnet_prints_the_winners_settings(tmp_path, capsys):
    argv = ["grid", "--net", "timm:resnet18", "--out", "g", "--step", "0.5", "--tolerance", "0.15", "--",
            "--model.model_kwargs", '{"width": 0.25}', *TINY]  # fmt: skip
    assert main(argv) == 0
    assert len(rows(tmp_path / "g" / "results.csv")) == 4
    assert "[study] best: --model.name timm:resnet18 --model.model_kwargs" in capsys.readouterr().out


@pytest.mark.slow  # 4 tiny runs
def test_progressive_study_of_a_timm_resnet_ramps_its_dropout_and_times_each_schedule(tmp_path):
    argv = ["progressive", "--net", "timm:resnet18", "--out", "p", "--", "--model.model_kwargs", '{"width": 0.25}',
            *TINY]  # fmt: skip
    argv[argv.index("--trainer.max_epochs") + 1] = "3"
    assert main(argv) == 0
    table = rows(tmp_path / "p" / "results.csv")
    assert [r["schedule"] for r in table] == [
        "fixed_size", "progressive_fixed_reg", "progressive_adaptive_reg", "random_resize_adaptive_reg",
    ]  # fmt: skip
    assert all(float(r["train_s"]) > 0 for r in table)
    curve = (tmp_path / "p" / "runs" / "progressive_adaptive_reg-seed0" / "curve.jsonl").read_text()
    assert curve  # and the dropout the network applied per epoch, logged by the callback:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(
        str(next((tmp_path / "p" / "runs" / "progressive_adaptive_reg-seed0").rglob("version_0")))
    )
    events.Reload()
    assert [round(e.value, 3) for e in events.Scalars("train/dropout")] == [0.0, 0.1, 0.2]
