"""The TPU path on torch_xla's CPU device (`make test-xla`; skipped where torch_xla is not installed).

A short quickstart variant (3 stages x 2 epochs of 5 steps, EMA, last.ckpt every 3 steps) trains, checkpoints
and resumes through `train.py --accelerator tpu`, and stays within the graph and host-read bounds of
docs/running-long-jobs.md ("TPU"), measured by tests/xla_harness.py from torch_xla's debug metrics.
"""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("torch_xla")
pytestmark = pytest.mark.xla

from lit_effnet.cli import PROJECT_ROOT  # noqa: E402
from tests.conftest import child_env  # noqa: E402
from tests.xla_harness import XLA_ENV  # noqa: E402

STEPS, LOG_EVERY, CKPT_EVERY = 5, 4, 3
VARIANT = [
    "--config", "quickstart", "--accelerator", "tpu", "--devices", "1", "--trainer.max_epochs", "6",
    "--trainer.limit_train_batches", str(STEPS), "--trainer.log_every_n_steps", str(LOG_EVERY),
    "--checkpoint.every_n_train_steps", str(CKPT_EVERY), "--model.model_kwargs.depth", "0.25",
    "--trainer.enable_progress_bar", "false",
]  # fmt: skip
LAST = Path("checkpoints/quickstart/version_0/checkpoints/last.ckpt")


def on_xla(tmp_path: Path, name: str, *options: str, killed: bool = False) -> dict:
    """train.py under the harness in tmp_path; its report (tests/xla_harness.py), or the run's steps if killed."""
    # Compiling at XLA's lowest CPU optimization level: the same graphs, compiled several times faster.
    env = child_env(**XLA_ENV, PYTHONPATH=str(PROJECT_ROOT), XLA_FLAGS="--xla_backend_optimization_level=0")
    out = tmp_path / f"{name}.json"
    argv = [sys.executable, "-m", "tests.xla_harness", str(out), "--", *VARIANT, *options]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    (tmp_path / f"{name}.log").write_text(result.stderr)
    if killed:
        assert result.returncode == -9, result.stderr[-3000:]
        return {"steps": [json.loads(line[7:]) for line in result.stderr.splitlines() if line.startswith("[step] ")]}
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    print(f"\n{name}: {summary(report)}")
    return report


def training_graphs(report: dict) -> Counter:
    """Training-step graphs compiled, per image size."""
    graphs = Counter()
    for graph in report["graphs"]:
        if graph["kind"] == "train":
            graphs[graph["size"]] += graph["compiles"]
    return +graphs


def evaluation_graphs(report: dict) -> Counter:
    """Evaluation-batch graphs compiled (each ended after its batch by XlaGraphBoundaries), per epoch."""
    graphs = Counter()
    for graph in report["graphs"]:
        if graph["kind"] == "end_graph" and graph.get("window") == "eval" and graph["by"] != "_end_graph":
            graphs[graph["epoch"]] += graph["compiles"]
    return +graphs


def epoch_end_graphs(report: dict) -> Counter:
    """Graphs compiled between an epoch's validation and the next epoch's first step (logged values, checkpoints),
    per epoch."""
    graphs = Counter()
    for window in report["windows"]:
        if window["window"] == "epoch_end":
            graphs[window["epoch"]] += window["compiles"]
    for graph in report["graphs"]:  # the module's validation-epoch-end graph, in the last evaluation batch's window
        if graph["kind"] == "end_graph" and graph.get("window") == "eval" and graph["by"] == "_end_graph":
            graphs[graph["epoch"]] += graph["compiles"]
    return graphs


def summary(report: dict) -> str:
    steps = [w for w in report["windows"] if w["window"] == "step"]
    total = report["total"]
    return (
        f"{total['compiles']} compiles ({total['compile_s']:.0f} s of {report['wall_s']:.0f} s); training graphs per "
        f"size {dict(training_graphs(report))}; evaluation graphs per epoch {dict(evaluation_graphs(report))}; "
        f"epoch-end graphs per epoch {dict(epoch_end_graphs(report))}; "
        f"reads inside {len(steps)} steps: {sum(w['reads'] for w in steps)}"
    )


def expected_reads_after(step: int, steps_per_epoch: int = STEPS) -> int:
    """Device reads between a step's end and the next batch: Lightning's 2 logged values and the NaN guard at a
    logging step, the guard before a checkpoint, and 2 at an epoch's last step (the guard and the epoch's loss)."""
    logging, last_of_epoch = step % LOG_EVERY == 0, step % steps_per_epoch == 0
    checkpoint = step % CKPT_EVERY == 0 and not last_of_epoch
    return 3 * logging + checkpoint + 2 * last_of_epoch


def test_the_quickstart_trains_on_xla_within_its_graph_and_host_read_bounds(tmp_path):
    report = on_xla(tmp_path, "adamw")
    windows = report["windows"]
    # No host read inside any training step; between steps, only where Lightning reads anyway.
    assert [w for w in windows if w["window"] == "step" and w["reads"]] == []
    after = [w for w in windows if w["window"] == "after_step"]
    assert len(after) == 30
    assert all(w["reads"] <= expected_reads_after(w["step"]) for w in after), after
    assert all(w["reads"] == 0 for w in after if expected_reads_after(w["step"]) == 0)
    # One training graph per image size, and at the first size one more while AdamW's state first appears; AdamW
    # multiplies the weights by 1 - lr x weight_decay, which rounds to 1.0 in float32 at this recipe's learning
    # rates, and torch_xla bakes an exact 1.0 into the graph: one more graph per size where that happens.
    graphs = training_graphs(report)
    assert graphs[48] <= 3 and graphs[56] <= 2 and graphs[64] <= 2
    # Evaluation (every epoch, at 64 px, 6 batches of which the last is shorter) compiles in the first one only:
    # the first batch, the others, the shorter last one.
    assert list(evaluation_graphs(report)) == [0] and evaluation_graphs(report)[0] <= 3
    # Epoch ends (logged values, checkpoints): the first two of a process warm up; then nothing, but one graph at a
    # stage's first epoch end (its new logged values) and two at the end of training.
    ends = epoch_end_graphs(report)
    assert ends[2] <= 1 and ends[3] == 0 and ends[4] <= 1 and ends[5] <= 2, ends
    saved = torch.load(tmp_path / LAST, weights_only=False, map_location="cpu")
    assert (saved["epoch"], saved["global_step"]) == (5, 30)
    assert (tmp_path / LAST).with_name("last.prev.ckpt").is_file()  # the atomic writer around XLA's


def test_the_papers_optimizer_under_random_resize_compiles_each_size_once_and_resumes_on_xla(tmp_path):
    options = ["--model.optimizer", "rmsprop_tf", "--progressive.mode", "random_resize"]
    # SIGKILLed as step 15 starts: last.ckpt is step 12's, in the middle of epoch 2 (random resize rebuilds no
    # loader at an epoch's start, so the loader's place comes back through the datamodule's state).
    killer = json.dumps({"class_path": "tests.kill_probe.SigkillAt", "init_args": {"step": 14}})
    killed = on_xla(tmp_path, "rmsprop_killed", *options, f"--trainer.callbacks+={killer}", killed=True)
    assert torch.load(tmp_path / LAST, weights_only=False, map_location="cpu")["global_step"] == 12
    resumed = on_xla(tmp_path, "rmsprop_resumed", *options, "--ckpt_path", "last")
    steps = {w["step"]: w["size"] for w in resumed["windows"] if w["window"] == "step"}
    assert list(steps) == list(range(13, 31))
    # The same image sizes (drawn per batch of the epoch) as the run before the kill at steps 13 and 14.
    assert [steps[13], steps[14]] == [s["size"] for s in killed["steps"] if s["step"] in (13, 14)]
    sizes = set(steps.values())
    assert sizes == {48, 56, 64}
    # RMSpropTF has no scalar that turns into an exact 1.0: each size is one graph, and the first step's size one
    # more, where the optimizer's state (from the checkpoint) first enters a graph; a size drawn again compiles
    # nothing.
    assert training_graphs(resumed) == {size: 1 + (size == steps[13]) for size in sizes}
    assert [w for w in resumed["windows"] if w["window"] == "step" and w["reads"]] == []
    assert list(evaluation_graphs(resumed)) == [2]  # the first validation of this process
    ends = epoch_end_graphs(resumed)  # random resize has no stages: after the process's first two, none but the last
    assert ends[4] == 0 and ends[5] <= 2, ends
    final = torch.load(tmp_path / LAST, weights_only=False, map_location="cpu")
    assert (final["epoch"], final["global_step"]) == (5, 30)
