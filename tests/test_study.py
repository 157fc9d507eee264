"""python -m lit_effnet.study: matched multiply-adds, tiny studies end to end, and a study resumed after a kill."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from lit_effnet.cli import PROJECT_ROOT
from lit_effnet.models.scaling import ALPHA, BETA, GAMMA
from lit_effnet.study import Base, compound, main, single_dimension

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
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "2"}
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
