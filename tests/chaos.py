"""`make chaos`: kill a short quickstart run anywhere, resume it with --ckpt_path last, and compare its final weights
(raw and EMA) with an uninterrupted run's, bit for bit (CPU).

    python -m tests.chaos [--runs 15] [--seed 0] [--out DIR]

A reference run of the variant below (3 stages over 6 epochs of 5 steps, EMA, last.ckpt every 2 steps as well as
every epoch), one for 2 DDP processes and one without stages; then `--runs` runs, each SIGKILLed at a point drawn
with `--seed`, the kinds in turn: the middle of an epoch (a step that is no checkpoint's), within a second of a
stage's end (validation, the epoch's checkpoint, the new stage's loader, its first steps), halfway through
writing a checkpoint file, one rank of the 2-process run, the middle of an epoch of the run without stages. Each
is resumed with `--ckpt_path last` until it finishes. Prints a Markdown table and "K/N identical"; exits 1 unless
every run is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH, EPOCHS = 5, 6
VARIANT = [
    "--config", "quickstart", "--trainer.max_epochs", str(EPOCHS), "--progressive.num_stages", "3",
    "--trainer.limit_train_batches", str(STEPS_PER_EPOCH), "--trainer.limit_val_batches", "2",
    "--checkpoint.every_n_train_steps", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip
DDP = ("--accelerator", "cpu", "--devices", "2")
LAST = Path("checkpoints/quickstart/version_0/checkpoints/last.ckpt")


@dataclass
class Kill:
    kind: str  # mid-epoch, mid-epoch without stages, stage end, checkpoint write, DDP rank
    what: str  # the point, in words
    callback: dict  # the tests.kill_probe callback that kills
    options: tuple[str, ...] = ()  # what the run adds to VARIANT (DDP, no stages)


KINDS = ("mid-epoch", "stage end", "checkpoint write", "DDP rank", "mid-epoch, no stages")
NO_STAGES = (
    "--progressive",
    "null",
    "--data.image_size",
    "64",
)  # no loader rebuilt at epoch starts: the loader's place comes from the datamodule


def draw_kills(runs: int, seed: int) -> list[Kill]:
    """`runs` kill points, the kinds in turn, each point drawn from `seed`."""
    rng = random.Random(seed)
    mid_epoch = [s for s in range(1, STEPS_PER_EPOCH * EPOCHS) if s % STEPS_PER_EPOCH and s % 2]  # no checkpoint's
    kills = []
    for i in range(runs):
        kind = KINDS[i % len(KINDS)]
        if kind.startswith("mid-epoch"):
            step = rng.choice(mid_epoch)
            options = NO_STAGES if kind.endswith("no stages") else ()
            kills.append(Kill(kind, f"step {step + 1} starts", {"SigkillAt": {"step": step}}, options))
        elif kind == "stage end":
            epoch, seconds = rng.choice([1, 3]), round(rng.random(), 2)
            callback = {"SigkillAfterEpoch": {"epoch": epoch, "seconds": seconds}}
            kills.append(Kill(kind, f"{seconds} s after epoch {epoch}'s steps", callback))
        elif kind == "checkpoint write":
            nth = rng.randint(2, 12)
            kills.append(Kill(kind, f"halfway through write {nth}", {"SigkillDuringWrite": {"nth": nth}}))
        else:
            step, rank = rng.randrange(3, STEPS_PER_EPOCH * EPOCHS - 2), sum(bool(k.options == DDP) for k in kills) % 2
            callback = {"SigkillAt": {"step": step, "rank": 1 - rank}}
            kills.append(Kill(kind, f"rank {1 - rank} as step {step + 1} starts", callback, DDP))
    return kills


def callbacks_option(spec: dict) -> str:
    ((name, init_args),) = spec.items()
    return "--trainer.callbacks+=" + json.dumps({"class_path": f"tests.kill_probe.{name}", "init_args": init_args})


def train(folder: Path, *options: str) -> int:
    """train.py in `folder`; waits for every process of the run (a killed rank 0 leaves its children behind)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(folder / "log.txt", "a") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *options], cwd=folder, env=env, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        code = process.wait()
    while True:  # the run's other processes, in its process group
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return code
        time.sleep(0.2)


def weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, weights_only=False, map_location="cpu")
    raw = {f"raw.{k}": v for k, v in checkpoint["current_model_state"].items()}
    return {**checkpoint["state_dict"], **raw}


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_one(kill: Kill, folder: Path, reference: dict[str, torch.Tensor]) -> dict:
    options = [*VARIANT, *kill.options]
    progress = folder / "progress"
    watch = callbacks_option({"Progress": {"path": str(progress)}})
    code = train(folder, *options, callbacks_option(kill.callback), watch)
    reached = int(progress.read_text()) if progress.exists() else 0
    resumed_from, attempts = None, 0
    while attempts < 3:
        attempts += 1
        if (folder / LAST).exists() or (folder / LAST).with_name("last.prev.ckpt").exists():
            resumed_from = resumed_from or torch.load(_resumable(folder), weights_only=False)["global_step"]
            if train(folder, *options, "--ckpt_path", "last") == 0:
                break
        elif train(folder, *options) == 0:  # killed before any checkpoint: start again
            resumed_from = resumed_from or 0
            break
    same = identical(weights(folder / LAST), reference)
    return {
        "kind": kill.kind, "point": kill.what, "exit": code, "reached": reached, "from": resumed_from,
        "lost": reached - (resumed_from or 0), "identical": same,
    }  # fmt: skip


def _resumable(folder: Path) -> Path:
    """The file --ckpt_path last will take (the newest, or the one before it when the newest is torn)."""
    from lit_effnet.models.weights import read_checkpoint

    last = folder / LAST
    try:
        read_checkpoint(last)
        return last
    except Exception:
        return last.with_name("last.prev.ckpt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="chaos-"))
    started = time.monotonic()
    kills = draw_kills(args.runs, args.seed)
    references = {}
    for options in sorted({kill.options for kill in kills}):
        folder = out / ("reference" + "".join(options).replace("--", "-"))
        if train(folder, *VARIANT, *options) != 0:
            print(f"the reference run {' '.join(options)} failed: {folder / 'log.txt'}")
            return 1
        references[options] = weights(folder / LAST)
    rows = []
    for i, kill in enumerate(kills):
        row = run_one(kill, out / f"run{i:02d}", references[kill.options])
        rows.append(row)
        print(f"run {i + 1}/{args.runs}: {row}", file=sys.stderr, flush=True)
    print("| kill point | where | exit | steps done | resumed from step | steps lost | identical |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        exit_code = f"SIG{signal.Signals(-r['exit']).name[3:]}" if r["exit"] < 0 else str(r["exit"])
        same = "yes" if r["identical"] else "NO"
        print(f"| {r['kind']} | {r['point']} | {exit_code} | {r['reached']} | {r['from']} | {r['lost']} | {same} |")
    same = sum(r["identical"] for r in rows)
    print(f"\n{same}/{len(rows)} identical ({(time.monotonic() - started) / 60:.0f} min, runs in {out})")
    return 0 if same == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
