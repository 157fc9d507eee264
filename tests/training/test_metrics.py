"""acc1/acc5 are plain top-1/top-5 over all images (as the papers count), also summed across DDP ranks."""

import ast
import os
import subprocess
import sys

import pytest
import torch

from lit_effnet.training.metrics import accuracy_metrics
from tests.conftest import child_env


def imbalanced():
    """18 images of class 0 and 2 of class 1, all predicted class 0: plain top-1 0.9, per-class mean 0.5."""
    targets = torch.tensor([0] * 18 + [1] * 2)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -2.0, -3.0]]).repeat(20, 1)
    return logits, targets


def test_acc1_counts_correct_images_over_all_images_and_per_class_is_kept_apart():
    metrics = accuracy_metrics(6)
    metrics.update(*imbalanced())
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["acc1"] == pytest.approx(0.9)
    assert values["acc1_per_class"] == pytest.approx(0.5)  # mean of class 0's 1.0 and class 1's 0.0
    assert values["acc5"] == pytest.approx(1.0)  # class 1 is the second choice


def test_acc5_is_plain_top5():
    logits = torch.eye(10)[:, :10] * -1.0  # image i scores its own class lowest: never in the top 5 of 10
    logits[:4] = torch.eye(10)[:4]  # images 0-3 score their class highest
    metrics = accuracy_metrics(10)
    metrics.update(logits, torch.arange(10))
    assert float(metrics.compute()["acc5"]) == pytest.approx(0.4)


DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist
from lit_effnet.training.metrics import accuracy_metrics
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[2], rank=rank, world_size=2)
metrics = accuracy_metrics(2)
# rank 0: 4 images of class 0, all right; rank 1: 2 of class 1, both wrong, and 14 of class 0, all right
targets = torch.tensor([0] * 4) if rank == 0 else torch.tensor([1, 1] + [0] * 14)
logits = torch.tensor([[1.0, 0.0]]).repeat(len(targets), 1)
metrics.update(logits, targets)
values = {k: round(float(v), 6) for k, v in metrics.compute().items()}
if rank == 0:
    print(values)
dist.destroy_process_group()
"""


def test_ddp_sums_correct_and_total_images_over_ranks(tmp_path):
    script = tmp_path / "ddp_metrics.py"
    script.write_text(DDP_SCRIPT)
    env = child_env(PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")
    port = str(29500 + os.getpid() % 1000)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(r), port], stdout=subprocess.PIPE, text=True, env=env)
        for r in (0, 1)
    ]
    out = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    # 18 of 20 right overall: 0.9, not the mean of the ranks' 1.0 and 0.875 (0.9375); per class 1.0 and 0.0
    assert ast.literal_eval(out[0].strip()) == {"acc1": 0.9, "acc5": 1.0, "acc1_per_class": 0.5}
