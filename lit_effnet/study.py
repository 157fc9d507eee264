"""The papers' experiments on your data, each from one command, each a table and a picture.

    python -m lit_effnet.study scaling --config CONFIG --out DIR [--phi 1] [--curves] [--seeds 0 1 2] [-- overrides]
    python -m lit_effnet.study grid --config CONFIG --out DIR [--step 0.1] [-- overrides]
    python -m lit_effnet.study progressive --config CONFIG --out DIR [--seeds 0 1 2] [-- overrides]

Each takes `--net timm:NAME` or `--net torchvision:NAME` (e.g. timm:resnet18, timm:mobilenetv2_050) instead of the
config's model: width and depth then act on that family's blocks and channels per stage (models/baselines.py).

- scaling: EfficientNet's compound scaling against single dimensions at equal FLOPs (Figure 8 and Table 3;
  `--curves` adds Figure 3: several multipliers per dimension). From the config's model as the base and a
  FLOPs factor 2^phi: the compound-scaled model (depth x alpha^phi, width x beta^phi, resolution x gamma^phi)
  and the depth-only, width-only and resolution-only models whose multiply-adds match it (counted).
- grid: EfficientNet's step 1: every (alpha, beta, gamma) of a grid with alpha * beta^2 * gamma^2 ~= 2, at phi 1.
- progressive: EfficientNetV2's Table 13: a fixed size, progressive resizing with fixed regularization, with
  adaptive regularization, and random resizing with adaptive regularization, at the same epochs.

Every run is an ordinary `train.py` run under DIR/runs/<run>/ with the config, the overrides after `--` (any
train.py key, e.g. --devices 2 --accelerator gpu) and the study's own. A study started again with the same
command skips the finished runs (DIR/runs/<run>/result.json) and resumes an unfinished one from its last.ckpt.
Accuracy is the last epoch's val/acc1 (plain top-1) at the run's own resolution; best_acc1 is also kept.
Without --config the studies use configs/proxy.yaml, the embedded cluttered-digits task (docs/studies.md).
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_effnet.callbacks.report import read_curve
from lit_effnet.cli import configured, one_line, quiet, schedule_of, user_error
from lit_effnet.cli import main as train_py
from lit_effnet.errors import ConfigError
from lit_effnet.models import EfficientNet
from lit_effnet.models.baselines import create_baseline, is_library_name, unscalable
from lit_effnet.models.complexity import count_macs, count_params
from lit_effnet.models.regularization import Regularizer
from lit_effnet.models.scaling import ALPHA, BETA, GAMMA, compound_grid

MACS_TOLERANCE = 0.10  # single-dimension models match the compound one's multiply-adds within this


@dataclasses.dataclass(frozen=True, kw_only=True)
class Shape:
    """A scaled version of the base: multipliers of its width and depth, and the input resolution."""

    width: float
    depth: float
    resolution: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Run:
    """One training run of a study: its folder name, what it is, and its train.py overrides."""

    name: str
    fields: dict[str, Any]  # written to results.csv (method, schedule, seed, ...)
    overrides: list[str]


class Base:
    """The config's model and data as the base of a study: its spec, kwargs and resolution.

    The model is a lit-effnet one, or (study --net) a timm/torchvision network whose width and depth
    multipliers lit_effnet/models/baselines.py maps onto its family's blocks and channels per stage.
    """

    def __init__(self, config_argv: list[str]) -> None:
        cli = configured(config_argv)
        net = cli.model.net
        self.config, self.name = cli.config, cli.model.hparams.name
        self.model_kwargs = dict(cli.model.hparams.model_kwargs or {})
        self.library = is_library_name(self.name)
        if self.library:
            self.spec = None
            self.width = float(self.model_kwargs.get("width", 1.0))
            self.depth = float(self.model_kwargs.get("depth", 1.0))
        elif isinstance(net, EfficientNet):
            self.spec = net.spec
            self.width, self.depth = self.spec.width, self.spec.depth
        else:
            raise ConfigError(
                "the studies scale lit-effnet models and timm:NAME / torchvision:NAME networks: the config's "
                "model.name must be one (or give --net)"
            )
        # The resolution the config trains at: its data.image_size, else its progressive schedule's last size.
        # The studies' runs train at one size (--progressive null), so a max_epochs below the config's number
        # of stages is fine here: the last stage's size does not depend on how the epochs are split.
        config = copy.deepcopy(cli.config)
        if config.get("progressive") is not None:
            stages = config.progressive.init_args.num_stages
            config.trainer.max_epochs = max(config.trainer.max_epochs or 0, stages)
        self.resolution = int(schedule_of(config)[-1]["image_size"])
        self.shape = Shape(width=1.0, depth=1.0, resolution=self.resolution)

    def require_scalable(self, study: str) -> None:
        """Stop with one line when the network has no knob for width or depth (a library network outside
        lit_effnet/models/baselines.py's tables, or torchvision's BasicBlock ResNets' width)."""
        missing = unscalable(self.name) if self.library else {}
        if missing:
            dimension, why = next(iter(missing.items()))
            raise ConfigError(f"study {study} --net {self.name}: cannot scale its {dimension}: {why}")

    def kwargs(self, shape: Shape) -> dict[str, Any]:
        return {**self.model_kwargs, "width": self.width * shape.width, "depth": self.depth * shape.depth}

    def model(self, shape: Shape) -> nn.Module:
        from lit_effnet import create_model

        build = create_baseline if self.library else create_model
        with torch.device("meta"):
            return build(self.name, num_classes=10, **self.kwargs(shape))

    def macs(self, shape: Shape) -> int:
        return count_macs(self.model(shape), shape.resolution)

    def params(self, shape: Shape) -> int:
        return count_params(self.model(shape))

    def overrides(self, shape: Shape) -> list[str]:
        size = str(shape.resolution)
        kwargs = json.dumps(self.kwargs(shape))
        one_size = ["--data.image_size", size, "--data.eval_size", size, "--progressive", "null"]
        return ["--model.model_kwargs", kwargs, *one_size]


# ------------------------------------------------------------------ matching multiply-adds


def _closest(candidates: Sequence[Shape], target: int, macs: Callable[[Shape], int]) -> tuple[Shape, int]:
    best = min(((abs(macs(s) / target - 1.0), s) for s in candidates), key=lambda pair: pair[0])
    return best[1], macs(best[1])


def single_dimension(base: Base, dimension: str, target: int) -> tuple[Shape, int]:
    """The base scaled in `dimension` only, with multiply-adds closest to `target` (counted on the meta device).

    Depth moves in steps (ceil of repeats x depth) and width in multiples of 8 channels, so the candidates are
    fine grids; resolution takes every pixel size.
    """
    if dimension == "resolution":
        low = base.resolution
        high = int(base.resolution * math.sqrt(4 * target / base.macs(base.shape))) + 8
        candidates = [dataclasses.replace(base.shape, resolution=r) for r in range(low, high)]
    elif dimension == "depth":
        candidates = [dataclasses.replace(base.shape, depth=1 + k / 20) for k in range(0, 200)]
    else:
        candidates = [dataclasses.replace(base.shape, width=1 + k / 50) for k in range(0, 150)]
    # Bisection on the monotone MACs first, then the neighbourhood: far fewer models than counting the grid.
    lo, hi = 0, len(candidates) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if base.macs(candidates[mid]) < target else (lo, mid)
    return _closest(candidates[max(0, lo - 3) : hi + 4], target, base.macs)


def compound(base: Base, phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> Shape:
    return Shape(width=beta**phi, depth=alpha**phi, resolution=round(base.resolution * gamma**phi))


# ------------------------------------------------------------------ running


class Study:
    """Runs a list of train.py runs under DIR/runs/, resumable, with progress, and collects their results."""

    def __init__(self, out: Path, config_argv: list[str]) -> None:
        self.out, self.config_argv = out, config_argv
        (out / "runs").mkdir(parents=True, exist_ok=True)

    def _result_path(self, run: Run) -> Path:
        return self.out / "runs" / run.name / "result.json"

    def run_one(self, run: Run) -> dict[str, Any]:
        folder = self.out / "runs" / run.name
        curve_file = folder / "curve.jsonl"
        curve = {"class_path": "lit_effnet.callbacks.report.CurveFile", "init_args": {"path": str(curve_file)}}
        argv = [
            *self.config_argv, *run.overrides, "--trainer.default_root_dir", str(folder), "--ckpt_path", "auto",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            f"--trainer.callbacks+={json.dumps(curve)}",
        ]  # fmt: skip
        if train_py(argv) != 0:
            raise ConfigError(f"study run {run.name} failed: train.py {' '.join(argv)}")
        rows = read_curve(curve_file)
        result = {
            **run.fields,
            "acc1": rows[-1]["val/acc1"],
            "best_acc1": max(r["val/acc1"] for r in rows),
            "train_s": rows[-1]["elapsed_s"],
            "curve": [(r["epoch"], r["elapsed_s"], r["val/acc1"]) for r in rows],
        }
        self._result_path(run).write_text(json.dumps(result))
        return result

    def check(self, runs: Sequence[Run]) -> None:
        """Parses every unfinished run's command line first, so a setting that one run refuses stops the study
        before it trains the others (each distinct setting once; the seeds do not change what is refused)."""
        seen: set[tuple[str, ...]] = set()
        for run in runs:
            key = tuple(run.overrides[:-2] if run.overrides[-2:-1] == ["--seed_everything"] else run.overrides)
            if key in seen or self._result_path(run).is_file():
                continue
            seen.add(key)
            schedule_of(configured([*self.config_argv, *run.overrides]).config)

    def run_all(self, runs: Sequence[Run]) -> list[dict[str, Any]]:
        self.check(runs)
        results, spent, trained = [], 0.0, 0
        for k, run in enumerate(runs, start=1):
            done = self._result_path(run)
            if done.is_file():
                print(f"[study] run {k}/{len(runs)}: {run.name} already finished", flush=True)
                results.append(json.loads(done.read_text()))
                continue
            left = len(runs) - k + 1
            eta = f", about {spent / trained * left / 60:.0f} min left" if trained else ""
            print(f"[study] run {k}/{len(runs)}: {run.name} ({_describe(run.fields)}){eta}", flush=True)
            start = time.perf_counter()
            results.append(self.run_one(run))
            spent, trained = spent + time.perf_counter() - start, trained + 1
        return results


def _describe(fields: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())


def write_table(out: Path, results: list[dict[str, Any]], columns: list[str]) -> None:
    """results.csv and results.md: one row per run."""
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in results]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    _pyplot().close(figure)
    return path


def _by(results: list[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r[key], []).append(r)
    return groups


def _mean_spread(rows: list[dict[str, Any]], key: str = "acc1") -> tuple[float, float, float]:
    values = [r[key] for r in rows]
    return statistics.mean(values), min(values), max(values)


# ------------------------------------------------------------------ scaling


def scaling_runs(base: Base, phi: float, curves: bool, seeds: Sequence[int]) -> list[Run]:
    """base, compound at 2^phi, and each single dimension at the compound model's MACs (and at 2^(phi k/3))."""
    target = compound(base, phi)
    shapes: list[tuple[str, float, Shape]] = [("base", 0.0, base.shape), ("compound", phi, target)]
    levels = [phi * k / 3 for k in (1, 2, 3)] if curves else [phi]
    for level in levels:
        macs = base.macs(compound(base, level)) if level != phi else base.macs(target)
        for dimension in ("depth", "width", "resolution"):
            shape, found = single_dimension(base, dimension, macs)
            if abs(found / macs - 1) > MACS_TOLERANCE:
                raise ConfigError(
                    f"study scaling: no {dimension}-only model within {MACS_TOLERANCE:.0%} of {macs:,} MACs "
                    f"(closest {found:,}); try another --phi"
                )
            shapes.append((dimension, level, shape))
    runs = []
    for method, level, shape in shapes:
        fields = {
            "method": method, "phi": round(level, 4), "depth": round(shape.depth, 4), "width": round(shape.width, 4),
            "resolution": shape.resolution, "macs": base.macs(shape), "params": base.params(shape),
        }  # fmt: skip
        for seed in seeds:
            name = f"{method}-phi{level:g}-d{shape.depth:g}-w{shape.width:g}-r{shape.resolution}-seed{seed}"
            overrides = [*base.overrides(shape), "--seed_everything", str(seed)]
            runs.append(Run(name=name, fields={**fields, "seed": seed}, overrides=overrides))
    return runs


def plot_scaling(out: Path, results: list[dict[str, Any]]) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.5))
    base = [r for r in results if r["method"] == "base"]
    for method, rows in _by([r for r in results if r["method"] != "base"], "method").items():
        points = sorted(_by(base + rows, "macs").items())
        macs = [m / 1e6 for m, _ in points]
        mean, low, high = zip(*(_mean_spread(group) for _, group in points))
        axis.errorbar(macs, mean, yerr=[[m - lo for m, lo in zip(mean, low)], [h - m for m, h in zip(mean, high)]],
                      marker="o", capsize=3, label=method)  # fmt: skip
    axis.set_xlabel("multiply-adds (M)")
    axis.set_ylabel("val top-1 (mean, min-max over seeds)")
    axis.set_title("compound vs single-dimension scaling at equal FLOPs")
    axis.legend()
    return _save(figure, out / "scaling.png")


# ------------------------------------------------------------------ grid


def grid_runs(base: Base, step: float, tolerance: float, seeds: Sequence[int]) -> list[Run]:
    """The grid, and the paper's (1.2, 1.1, 1.15) beside it where the step does not land on it."""
    points = compound_grid(2.0, step=step, max_value=2.0, tolerance=tolerance)
    runs = []
    for alpha, beta, gamma in [*points, *([(ALPHA, BETA, GAMMA)] if (ALPHA, BETA, GAMMA) not in points else [])]:
        shape = compound(base, 1.0, alpha, beta, gamma)
        fields = {"alpha": alpha, "beta": beta, "gamma": gamma, "macs": base.macs(shape), "params": base.params(shape)}
        for seed in seeds:
            runs.append(Run(name=f"a{alpha:g}-b{beta:g}-g{gamma:g}-seed{seed}", fields={**fields, "seed": seed},
                            overrides=[*base.overrides(shape), "--seed_everything", str(seed)]))  # fmt: skip
    return runs


def plot_grid(out: Path, results: list[dict[str, Any]]) -> Path:
    plt = _pyplot()
    points = [(key, _mean_spread(rows)[0]) for key, rows in _by(results, "coefficients").items()]
    figure, axis = plt.subplots(figsize=(6, 4.5))
    scatter = axis.scatter([k[1] for k, _ in points], [k[2] for k, _ in points], c=[a for _, a in points], s=120)
    for (alpha, beta, gamma), _acc in points:
        axis.annotate(f"a={alpha:g}", (beta, gamma), fontsize=7, ha="center", va="bottom", xytext=(0, 6),
                      textcoords="offset points")  # fmt: skip
    figure.colorbar(scatter, label="val top-1 (mean over seeds)")
    axis.set_xlabel("beta (width)")
    axis.set_ylabel("gamma (resolution)")
    axis.set_title("step 1: alpha * beta^2 * gamma^2 ~= 2 at phi = 1")
    return _save(figure, out / "grid.png")


# ------------------------------------------------------------------ progressive


def progressive_runs(base: Base, seeds: Sequence[int]) -> list[Run]:
    """Table 13's settings from the config's progressive schedule (the config must have one)."""
    if base.config.get("progressive") is None:
        raise ConfigError("study progressive needs a config with a progressive schedule (progressive: ...)")
    stages = schedule_of(base.config)
    first, last = stages[0], stages[-1]
    regularization = ("dropout", "drop_path_rate", "randaug_magnitude", "mixup_alpha", "cutmix_alpha")
    adapted = [knob for knob in regularization if first[knob] != last[knob]]  # what adaptive regularization ramps
    if not adapted:
        raise ConfigError("study progressive: the config's schedule ramps no regularization (dropout, RandAugment...)")
    regularizer = Regularizer(base.model(base.shape))  # each ramped knob must reach the network, or stop now
    for knob in adapted:
        if knob in ("dropout", "drop_path_rate"):
            regularizer.require(knob, f"study progressive: progressive.{knob} ({base.name})")
    fixed_reg = [arg for knob in adapted for arg in (f"--progressive.{knob}", json.dumps([last[knob]] * 2))]
    schedules = {
        "fixed_size": ["--progressive.num_stages", "1"],
        "progressive_fixed_reg": fixed_reg,
        "progressive_adaptive_reg": [],
        "random_resize_adaptive_reg": ["--progressive.mode", "random_resize"],
    }
    return [
        Run(
            name=f"{name}-seed{seed}",
            fields={"schedule": name, "seed": seed},
            overrides=[*extra, "--seed_everything", str(seed)],
        )
        for name, extra in schedules.items()
        for seed in seeds
    ]


def plot_progressive(out: Path, results: list[dict[str, Any]]) -> Path:
    plt = _pyplot()
    figure, (by_time, by_epoch) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for schedule, rows in _by(results, "schedule").items():
        curves = [r["curve"] for r in rows]
        epochs = min(len(c) for c in curves)
        acc = [statistics.mean(c[e][2] for c in curves) for e in range(epochs)]
        seconds = [statistics.mean(c[e][1] for c in curves) for e in range(epochs)]
        by_time.plot(seconds, acc, marker=".", label=schedule)
        by_epoch.plot([c[0] for c in curves[0][:epochs]], acc, marker=".", label=schedule)
    by_time.set_xlabel("wall time (s, mean over seeds)")
    by_epoch.set_xlabel("epoch")
    by_time.set_ylabel("val top-1 at the eval size (mean over seeds)")
    by_epoch.legend()
    figure.suptitle("progressive learning with and without adaptive regularization (V2 Table 13)")
    return _save(figure, out / "progressive.png")


# ------------------------------------------------------------------ command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lit_effnet.study", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="study", required=True)
    for name, helptext in (("scaling", "compound vs single-dimension scaling"), ("grid", "step 1's grid search"),
                           ("progressive", "Table 13's progressive-learning ablation")):  # fmt: skip
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--config", default="proxy", help="train.py config (default: the embedded proxy task)")
        p.add_argument("--out", required=True, type=Path, help="the study's folder")
        p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per run (default: 0)")
        p.add_argument(
            "--net", help="the base network instead of the config's model: timm:NAME or torchvision:NAME (e.g. "
            "timm:resnet18, timm:mobilenetv2_050) or a lit-effnet name, with the builder's defaults; its base width "
            "and depth after --: --model.model_kwargs '{\"width\": 0.5}'",
        )  # fmt: skip
        p.add_argument("overrides", nargs=argparse.REMAINDER, help="after --: train.py options for every run")
    scaling = sub.choices["scaling"]
    scaling.add_argument("--phi", type=float, default=1.0, help="FLOPs factor 2^phi (default 1)")
    scaling.add_argument("--curves", action="store_true", help="also 1/3 and 2/3 of phi per dimension (Figure 3)")
    grid = sub.choices["grid"]
    grid.add_argument(
        "--step",
        type=float,
        default=0.1,
        help="grid step of alpha, beta, gamma (default 0.1; the V1 paper gives no step)",
    )
    grid.add_argument("--tolerance", type=float, default=0.05, help="|alpha beta^2 gamma^2 / 2 - 1| allowed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet()
    args = _parser().parse_args(argv)
    overrides = [a for a in args.overrides if a != "--"]
    # --net replaces the config's model and its model_kwargs (the proxy's are EfficientNet's); the overrides after
    # it may set the base network's own.
    net = ["--model.name", args.net, "--model.model_kwargs", "{}"] if args.net else []
    config_argv = ["--config", args.config, *net, *overrides]
    try:
        base = Base(config_argv)
        study = Study(args.out, config_argv)
        if args.study in ("scaling", "grid"):
            base.require_scalable(args.study)
        if args.study == "scaling":
            results = study.run_all(scaling_runs(base, args.phi, args.curves, args.seeds))
            columns = ["method", "phi", "depth", "width", "resolution", "macs", "params", "seed", "acc1", "best_acc1",
                       "train_s"]  # fmt: skip
            write_table(args.out, results, columns)
            print(f"[study] {plot_scaling(args.out, results)}")
        elif args.study == "grid":
            results = study.run_all(grid_runs(base, args.step, args.tolerance, args.seeds))
            for r in results:
                r["coefficients"] = (r["alpha"], r["beta"], r["gamma"])
            means = {k: _mean_spread(rows)[0] for k, rows in _by(results, "coefficients").items()}
            results.sort(key=lambda r: (-means[r["coefficients"]], r["seed"]))
            write_table(args.out, results, ["alpha", "beta", "gamma", "macs", "params", "seed", "acc1", "best_acc1"])
            print(f"[study] {plot_grid(args.out, results)}")
            alpha, beta, gamma = results[0]["coefficients"]
            if base.library:
                shape = compound(base, 1.0, alpha, beta, gamma)
                print(f"[study] best: --model.name {base.name} --model.model_kwargs '{json.dumps(base.kwargs(shape))}' "
                      f"--data.image_size {shape.resolution}")  # fmt: skip
            else:
                call = f'create_model("{base.spec.family}", phi=1.0, alpha={alpha:g}, beta={beta:g}, gamma={gamma:g})'
                print(f"[study] best: {call}")
        else:
            results = study.run_all(progressive_runs(base, args.seeds))
            write_table(args.out, results, ["schedule", "seed", "train_s", "acc1", "best_acc1"])
            print(f"[study] {plot_progressive(args.out, results)}")
        print(f"[study] {args.out / 'results.csv'}, {args.out / 'results.md'}")
    except Exception as err:
        mistake = user_error(err)  # ours or the command line's, also when jsonargparse wrapped it; a bug raises
        if mistake is None:
            raise
        print(f"error: {one_line(mistake)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
