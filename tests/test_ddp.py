"""`python train.py --config quickstart --accelerator cpu --devices 2`: DDP over gloo on one machine."""

import json
import shlex
import subprocess
import sys
import time

import torch

from lit_effnet.cli import PROJECT_ROOT
from tests.conftest import child_env


def two_ranks(tmp_path, *options: str) -> list[list[dict]]:
    """train.py on the quickstart over 2 CPU processes with `options`; what tests/ddp_probe.py saw on each rank."""
    probe = json.dumps({"class_path": "tests.ddp_probe.RankProbe", "init_args": {"out": str(tmp_path / "probe")}})
    argv = [
        sys.executable, str(PROJECT_ROOT / "train.py"), "--config", "quickstart", "--accelerator", "cpu",
        "--devices", "2", *options, "--trainer.enable_progress_bar", "false", f"--trainer.callbacks+={probe}",
    ]  # fmt: skip
    env = child_env(PYTHONPATH=str(PROJECT_ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((tmp_path / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_two_process_ddp_rebuilds_stages_on_every_rank_with_disjoint_samples_and_synced_metrics(tmp_path):
    ranks = two_ranks(
        tmp_path, "--trainer.max_epochs", "4", "--progressive.num_stages", "2",
        "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
    )  # fmt: skip
    assert [e["epoch"] for e in ranks[0]] == [e["epoch"] for e in ranks[1]] == [0, 1, 2, 3]
    for epoch0, epoch1 in zip(*ranks):
        assert epoch0["world_size"] == epoch1["world_size"] == 2
        assert epoch0["image_size"] == epoch1["image_size"] == (48 if epoch0["epoch"] < 2 else 64)
        first, second = set(epoch0["indices"]), set(epoch1["indices"])
        assert not first & second  # each rank sees its own half
        assert len(first) + len(second) == epoch0["dataset_size"] // 2 * 2
        assert epoch0["val_acc1"] == epoch1["val_acc1"]  # metrics reduced over both ranks
    assert ranks[0][0]["indices"] != ranks[0][1]["indices"]  # reshuffled per epoch
    assert (tmp_path / "checkpoints/quickstart/version_0/checkpoints/last.ckpt").is_file()


def test_a_spawning_launcher_carries_the_callbacks_to_its_processes_and_reports_the_best_checkpoint(tmp_path):
    # ddp_spawn pickles the trainer with its callbacks into the processes it starts, as XLA's launcher does for
    # several TPU devices; the parent then holds the best checkpoint's path but not its score.
    ranks = two_ranks(
        tmp_path, "--strategy", "ddp_spawn", "--trainer.max_epochs", "2", "--progressive.num_stages", "2",
        "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
    )  # fmt: skip
    for rank in ranks:
        assert [(e["epoch"], e["world_size"], e["image_size"]) for e in rank] == [(0, 2, 48), (1, 2, 64)]
    assert not set(ranks[0][0]["indices"]) & set(ranks[1][0]["indices"])
    assert (tmp_path / "checkpoints/quickstart/version_0/checkpoints/last.ckpt").is_file()


def test_a_nan_loss_on_one_rank_skips_that_step_on_every_rank(tmp_path):
    # DDP averages the gradients, so rank 1's NaN reaches rank 0's too: both must drop the step, or both turn NaN.
    nan = json.dumps({"class_path": "tests.ddp_probe.NanInputOnRank", "init_args": {"step": 2, "rank": 1}})
    ranks = two_ranks(
        tmp_path, "--model.nonfinite_loss", "skip", "--trainer.max_epochs", "1", "--progressive.num_stages", "1",
        "--trainer.limit_train_batches", "4",
        "--trainer.limit_val_batches", "1", f"--trainer.callbacks+={nan}",
    )  # fmt: skip
    assert [(r[-1]["skipped_steps"], r[-1]["finite_weights"]) for r in ranks] == [(1, True), (1, True)]


def test_random_resize_draws_the_same_size_on_every_rank_at_every_step(tmp_path):
    ranks = two_ranks(
        tmp_path, "--trainer.max_epochs", "2", "--progressive.mode", "random_resize",
        "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "1",
    )  # fmt: skip
    sizes = [[size for epoch in rank for size in epoch["sizes"]] for rank in ranks]
    assert sizes[0] == sizes[1] and len(sizes[0]) == 12  # the same draw at each of the 12 steps
    assert set(sizes[0]) <= {48, 56, 64} and len(set(sizes[0])) > 1


def test_sync_batchnorm_on_cpu_is_a_one_line_error(tmp_path):
    # torch's SyncBatchNorm has no CPU kernel; on GPUs --trainer.sync_batchnorm true converts every BN.
    argv = [
        sys.executable, str(PROJECT_ROOT / "train.py"), "--config", "quickstart", "--accelerator", "cpu",
        "--devices", "2", "--trainer.sync_batchnorm", "true", "--trainer.max_epochs", "3",
    ]  # fmt: skip
    env = child_env(OMP_NUM_THREADS="1")
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "error: trainer.sync_batchnorm: SyncBatchNorm layers only work with GPU modules" in result.stderr


def test_a_dead_rank_ends_the_run_in_one_line_naming_it_the_last_checkpoint_and_the_resume_command(tmp_path):
    # Rank 1 is SIGKILLed when step 5 starts, after the step-4 checkpoint; rank 0 would wait in the next gradient
    # all-reduce (gloo: a traceback some seconds later; NCCL: torch's 30 minutes).
    stamp = tmp_path / "killed_at"
    killer = json.dumps(
        {"class_path": "tests.kill_probe.SigkillAt", "init_args": {"step": 4, "rank": 1, "stamp": str(stamp)}}
    )
    options = [
        "--config", "quickstart", "--accelerator", "cpu", "--devices", "2", "--trainer.max_epochs", "3",
        "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1", "--checkpoint.every_n_train_steps",
        "2", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    argv = [sys.executable, str(PROJECT_ROOT / "train.py"), *options, f"--trainer.callbacks+={killer}"]
    env = child_env(PYTHONPATH=str(PROJECT_ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    stopped = time.time()
    assert result.returncode == 3, result.stderr[-3000:]
    assert stopped - float(stamp.read_text()) < 60
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    last = "checkpoints/quickstart/version_0/checkpoints/last.ckpt"
    assert errors == [
        f"error: rank 1 (pid {errors[0].split('pid ')[1].split(')')[0]}) was killed by SIGKILL: the run stopped on "
        f"every rank; last checkpoint {last} (epoch 1, step 4); resume: python train.py {' '.join(options)} "
        f"{shlex.quote(f'--trainer.callbacks+={killer}')} --ckpt_path last"
    ], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert torch.load(tmp_path / last, weights_only=False)["global_step"] == 4  # whole, and not rewritten after
    assert [p.name for p in (tmp_path / last).parent.iterdir() if p.name.startswith(".")] == []
