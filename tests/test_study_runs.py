"""What a study does with its runs (lit_effnet/study.py), with train.py stood in for by a stub that writes each
run's accuracy curve: the command each run gets, the tables and their numbers, the ranking, the resume, the
progress lines and the figures. The training itself is pinned by tests/test_study.py."""

import csv
import json
from pathlib import Path

import pytest

import lit_effnet.study as study
from lit_effnet.models.scaling import ALPHA, BETA, GAMMA, compound_grid
from lit_effnet.study import Base, Shape, compound, single_dimension

BUILT = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def value(argv: list[str], key: str) -> str:
    return argv[argv.index(key) + 1]


def stub_accuracy(argv: list[str]) -> float:
    """A made-up accuracy that differs by run: higher with resolution and seed."""
    size = int(value(argv, "--data.image_size")) if "--data.image_size" in argv else 50
    return round(0.5 + size / 1000 + int(value(argv, "--seed_everything")) / 100, 6)


@pytest.fixture
def train_py(monkeypatch, tmp_path) -> list[list[str]]:
    """Stands in for train.py: records each command and writes a curve of three validations ending at
    stub_accuracy, best in the middle one (+0.05), 1.5 s apart, after epochs 1, 3 and 5 (validated every other
    epoch, so an epoch is not its row's position)."""
    monkeypatch.chdir(tmp_path)
    calls: list[list[str]] = []

    def run(argv: list[str]) -> int:
        calls.append(list(argv))
        (callback,) = [json.loads(a.split("=", 1)[1]) for a in argv if a.startswith("--trainer.callbacks+=")]
        assert callback["class_path"] == "lit_effnet.callbacks.report.CurveFile"
        curve = Path(callback["init_args"]["path"])
        assert curve.parent == Path(value(argv, "--trainer.default_root_dir"))  # the run's folder
        acc = stub_accuracy(argv)
        rows = [(1, 1.5, acc - 0.1), (3, 3.0, acc + 0.05), (5, 4.5, acc)]
        curve.parent.mkdir(parents=True, exist_ok=True)
        curve.write_text("".join(json.dumps({"epoch": e, "elapsed_s": t, "val/acc1": a}) + "\n" for e, t, a in rows))
        return 0

    monkeypatch.setattr(study, "train_py", run)
    return calls


def table(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def base() -> Base:
    return Base(["--config", "quickstart"])


@pytest.fixture
def sized(monkeypatch) -> None:
    """Multiply-adds and parameters by formula instead of counted (tests/test_study.py pins the counting and the
    match): width squared, depth and resolution squared, as for a plain conv net."""
    monkeypatch.setattr(Base, "macs", lambda self, s: round(1e6 * s.depth * s.width**2 * (s.resolution / 64) ** 2))
    monkeypatch.setattr(Base, "params", lambda self, s: round(1e5 * s.depth * s.width**2))


def test_a_scaling_study_runs_base_compound_and_each_dimension_per_seed_and_tabulates_last_best_and_time(
    train_py, base, sized, capsys
):
    assert study.main(["scaling", "--config", "quickstart", "--out", "s", "--seeds", "0", "2"]) == 0
    target = compound(base, 1.0)
    macs = base.macs(target)
    shapes = [("base", 0, base.shape), ("compound", 1, target)]
    shapes += [(d, 1, single_dimension(base, d, macs)[0]) for d in ("depth", "width", "resolution")]
    rows = table(Path("s/results.csv"))
    assert list(rows[0]) == ["method", "phi", "depth", "width", "resolution", "macs", "params", "seed", "acc1",
                             "best_acc1", "train_s"]  # fmt: skip
    assert len(rows) == len(train_py) == 10
    for k, (method, phi, shape) in enumerate(shapes):
        size = {"macs": str(base.macs(shape)), "params": str(base.params(shape))}
        for seed, row in zip((0, 2), rows[2 * k : 2 * k + 2]):
            name = f"{method}-phi{phi:g}-d{shape.depth:g}-w{shape.width:g}-r{shape.resolution}-seed{seed}"
            acc = stub_accuracy([*base.overrides(shape), "--seed_everything", str(seed)])
            assert row == {
                "method": method, "phi": str(float(phi)), "depth": str(round(shape.depth, 4)),
                "width": str(round(shape.width, 4)), "resolution": str(shape.resolution), **size, "seed": str(seed),
                "acc1": str(acc), "best_acc1": str(acc + 0.05), "train_s": "4.5",
            }  # fmt: skip
            assert json.loads((Path("s/runs") / name / "result.json").read_text())["curve"] == [
                [1, 1.5, acc - 0.1], [3, 3.0, acc + 0.05], [5, 4.5, acc],
            ]  # fmt: skip
    folder = "s/runs/base-phi0-d1-w1-r64-seed0"
    first = ["--config", "quickstart", *base.overrides(base.shape), "--seed_everything", "0",
             "--trainer.default_root_dir", folder, "--ckpt_path", "auto", *BUILT]  # fmt: skip
    assert train_py[0][:-1] == first
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "[study] run 1/10: base-phi0-d1-w1-r64-seed0 (method base, phi 0, depth 1, width 1, resolution 64, macs "
        f"{base.macs(base.shape)}, params {base.params(base.shape)}, seed 0)"
    )
    assert out[1].startswith("[study] run 2/10: base-phi0-d1-w1-r64-seed2 (") and out[1].endswith(
        ", seed 2), about 0 min left"
    )  # the time each run took so far, times the runs left
    assert out[-2:] == ["[study] s/scaling.png", "[study] s/results.csv, s/results.md"]
    assert Path("s/scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert Path("s/results.md").read_text().splitlines()[0] == "| " + " | ".join(rows[0]) + " |"


def test_a_study_started_again_skips_its_finished_runs_and_writes_the_same_table(train_py, capsys):
    argv = ["progressive", "--config", "quickstart", "--out", "p", "--", "--trainer.max_epochs", "3"]
    assert study.main(argv) == 0
    first = Path("p/results.csv").read_text()
    done = len(train_py)
    Path("p/runs/progressive_fixed_reg-seed0/result.json").unlink()  # as if killed during that run
    capsys.readouterr()
    assert study.main(argv) == 0
    assert len(train_py) == done + 1 and "--progressive.dropout" in train_py[-1]
    assert Path("p/results.csv").read_text() == first
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[study] run 1/4: fixed_size-seed0 already finished"
    assert out[1] == "[study] run 2/4: progressive_fixed_reg-seed0 (schedule progressive_fixed_reg, seed 0)"


def test_the_progressive_study_runs_table_13s_four_schedules_with_their_own_options(train_py, capsys):
    argv = ["progressive", "--config", "quickstart", "--out", "p", "--seeds", "1", "--", "--trainer.max_epochs", "3"]
    assert study.main(argv) == 0
    common = ["--config", "quickstart", "--trainer.max_epochs", "3"]
    assert [call[: call.index("--seed_everything")] for call in train_py] == [
        [*common, "--progressive.num_stages", "1"],
        # quickstart ramps dropout and RandAugment: each at its last stage's value, fixed
        [*common, "--progressive.dropout", "[0.1, 0.1]", "--progressive.randaug_magnitude", "[1.0, 1.0]"],
        common,
        [*common, "--progressive.mode", "random_resize"],
    ]
    assert all(value(call, "--seed_everything") == "1" for call in train_py)
    rows = table(Path("p/results.csv"))
    assert list(rows[0]) == ["schedule", "seed", "train_s", "acc1", "best_acc1"]
    acc = stub_accuracy(["--seed_everything", "1"])
    assert [r["schedule"] for r in rows] == [
        "fixed_size", "progressive_fixed_reg", "progressive_adaptive_reg", "random_resize_adaptive_reg",
    ]  # fmt: skip
    assert all((r["seed"], r["train_s"], r["acc1"], r["best_acc1"]) == ("1", "4.5", str(acc), str(acc + 0.05))
               for r in rows)  # fmt: skip
    assert Path("p/progressive.png").read_bytes()[:4] == b"\x89PNG"
    assert capsys.readouterr().out.splitlines()[-2] == "[study] p/progressive.png"


def test_the_grid_study_ranks_its_points_by_mean_accuracy_over_seeds_and_prints_the_winners_call(
    train_py, base, capsys
):
    argv = ["grid", "--config", "quickstart", "--out", "g", "--step", "0.5", "--tolerance", "0.15", "--seeds", "0", "1"]
    assert study.main(argv) == 0
    rows = table(Path("g/results.csv"))
    assert list(rows[0]) == ["alpha", "beta", "gamma", "macs", "params", "seed", "acc1", "best_acc1"]
    points = [(float(r["alpha"]), float(r["beta"]), float(r["gamma"])) for r in rows]
    # the stub's accuracy grows with resolution: gamma 1.5 first, then the paper's 1.15, then gamma 1
    assert points[:4] == [(1.0, 1.0, 1.5)] * 2 + [(ALPHA, BETA, GAMMA)] * 2
    assert [r["seed"] for r in rows[:4]] == ["0", "1"] * 2  # within a point, by seed
    means = [sum(float(r["acc1"]) for r in rows[i : i + 2]) / 2 for i in range(0, 8, 2)]
    assert means[:2] == sorted(means[:2], reverse=True) and means[1] > means[2]
    for row in rows:
        shape = compound(base, 1.0, *(float(row[k]) for k in ("alpha", "beta", "gamma")))
        assert (int(row["macs"]), int(row["params"])) == (base.macs(shape), base.params(shape))
    out = capsys.readouterr().out.splitlines()
    assert out[-3:] == [
        "[study] g/grid.png", '[study] best: create_model("efficientnetv2", phi=1.0, alpha=1, beta=1, gamma=1.5)',
        "[study] g/results.csv, g/results.md",
    ]  # fmt: skip


def test_the_grid_study_of_a_library_network_prints_the_winners_train_py_options(train_py, capsys):
    argv = ["grid", "--net", "timm:resnet18", "--out", "g", "--step", "0.5", "--tolerance", "0.15", "--",
            "--model.model_kwargs", '{"width": 0.25}']  # fmt: skip
    assert study.main(argv) == 0
    assert all(value(call, "--model.name") == "timm:resnet18" for call in train_py)
    resnet = Base(["--config", "proxy", "--model.name", "timm:resnet18", "--model.model_kwargs", '{"width": 0.25}'])
    best = compound(resnet, 1.0, 1.0, 1.0, 1.5)
    kwargs = json.dumps({"width": 0.25, "depth": 1.0})
    assert capsys.readouterr().out.splitlines()[-2] == (
        f"[study] best: --model.name timm:resnet18 --model.model_kwargs '{kwargs}' --data.image_size {best.resolution}"
    )


def test_a_run_that_fails_stops_the_study_naming_it_and_its_command(train_py, monkeypatch, capsys):
    monkeypatch.setattr(study, "train_py", lambda argv: train_py.append(argv) or 1)
    assert study.main(["progressive", "--config", "quickstart", "--out", "p", "--", "--trainer.max_epochs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: study run fixed_size-seed0 failed: train.py --config quickstart ")
    assert err.endswith(" ".join(train_py[0][-1:])) and len(train_py) == 1


def test_a_config_without_a_progressive_schedule_or_ramp_cannot_run_the_progressive_study(train_py, capsys):
    assert study.main(["progressive", "--config", "quickstart", "--out", "p", "--", "--progressive", "null"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: study progressive needs a config with a progressive schedule (progressive: ...)"
    )
    flat = ["--progressive.dropout", "[0.1, 0.1]", "--progressive.randaug_magnitude", "[1.0, 1.0]",
            "--trainer.max_epochs", "3"]  # fmt: skip
    assert study.main(["progressive", "--config", "quickstart", "--out", "p", "--", *flat]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: study progressive: the config's schedule ramps no regularization (dropout, RandAugment...)"
    )
    assert train_py == []


def test_the_scaling_study_at_another_phi_scales_by_it_and_curves_add_its_thirds(train_py, base, sized):
    assert study.main(["scaling", "--config", "quickstart", "--out", "s", "--phi", "3", "--curves"]) == 0
    rows = table(Path("s/results.csv"))
    assert [(r["method"], r["phi"]) for r in rows] == [("base", "0.0"), ("compound", "3.0")] + [
        (d, f"{k:.1f}") for k in (1, 2, 3) for d in ("depth", "width", "resolution")
    ]
    target = compound(base, 3.0)
    assert (float(rows[1]["depth"]), float(rows[1]["width"]), int(rows[1]["resolution"])) == (
        round(target.depth, 4), round(target.width, 4), target.resolution,
    )  # fmt: skip
    for row in rows[2:]:
        level = float(row["phi"])
        wanted = base.macs(compound(base, level))
        assert abs(int(row["macs"]) / wanted - 1) <= study.MACS_TOLERANCE


def test_a_phi_no_single_dimension_can_match_is_refused_naming_the_dimension(train_py, sized, monkeypatch, capsys):
    monkeypatch.setattr(study, "MACS_TOLERANCE", 0.0)  # nothing matches exactly
    assert study.main(["scaling", "--config", "quickstart", "--out", "s"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: study scaling: no depth-only model within 0% of ") and err.endswith(
        "; try another --phi"
    )
    assert "(closest " in err and train_py == []


def test_the_shapes_of_a_study_are_the_bases_multipliers(base):
    assert base.shape == Shape(width=1.0, depth=1.0, resolution=64)
    assert compound(base, 0.0) == base.shape


@pytest.fixture
def figures(monkeypatch) -> dict[str, object]:
    """Each figure a study draws, by file name, read before it is saved and closed."""
    drawn: dict[str, object] = {}
    save = study._save

    def keep(figure, path):
        drawn[path.name] = {
            "size": tuple(figure.get_size_inches()),
            "suptitle": figure.get_suptitle() or None,
            "axes": [
                {
                    "layout": axis.get_subplotspec().get_geometry(),
                    "title": axis.get_title(), "xlabel": axis.get_xlabel(), "ylabel": axis.get_ylabel(),
                    "legend": [t.get_text() for t in axis.get_legend().get_texts()] if axis.get_legend() else None,
                    "lines": {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axis.lines
                              if not line.get_label().startswith("_")},
                    "markers": {line.get_label(): line.get_marker() for line in axis.lines},
                    "errorbar_style": {c.get_label(): (c.lines[0].get_marker(),
                                                       [cap.get_markersize() for cap in c.lines[1]])
                                       for c in axis.containers},
                    "errorbars": {c.get_label(): (list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata()),
                                                  [s.tolist() for s in c.lines[2][0].get_segments()])
                                  for c in axis.containers},
                    "scatter": [(c.get_offsets().tolist(), c.get_array().tolist(), c.get_sizes().tolist())
                                for c in axis.collections if c.get_array() is not None],
                    "annotations": [(t.get_text(), tuple(t.xy), tuple(t.xyann), t.anncoords, t.get_ha(), t.get_va(),
                                     t.get_fontsize()) for t in axis.texts],
                }
                for axis in figure.axes if axis.get_label() != "<colorbar>"
            ],
            "colorbars": [axis.get_ylabel() for axis in figure.axes if axis.get_label() == "<colorbar>"],
            "shared_y": [figure.axes[0].get_shared_y_axes().joined(figure.axes[0], other) for other in figure.axes[1:]],
        }  # fmt: skip
        return save(figure, path)

    monkeypatch.setattr(study, "_save", keep)
    return drawn


def test_the_scaling_figure_plots_each_methods_mean_and_seed_range_against_multiply_adds(train_py, sized, figures):
    assert study.main(["scaling", "--config", "quickstart", "--out", "s", "--seeds", "0", "2"]) == 0
    rows = table(Path("s/results.csv"))
    (axis,) = figures["scaling.png"]["axes"]
    assert figures["scaling.png"]["size"] == (6.0, 4.5) and png_size(Path("s/scaling.png")) == (720, 540)  # 120 dpi
    assert (axis["title"], axis["xlabel"], axis["ylabel"]) == (
        "compound vs single-dimension scaling at equal FLOPs", "multiply-adds (M)",
        "val top-1 (mean, min-max over seeds)",
    )  # fmt: skip
    assert axis["legend"] == ["compound", "depth", "width", "resolution"]
    assert axis["errorbar_style"] == {method: ("o", [6.0, 6.0]) for method in axis["legend"]}  # caps of 3 points
    for method in axis["legend"]:  # from the base to the method's model: mean of the two seeds, bars to each
        points = [r for r in rows if r["method"] in ("base", method)]
        by_macs = sorted({int(r["macs"]) for r in points})
        accs = [[float(r["acc1"]) for r in points if int(r["macs"]) == m] for m in by_macs]
        x, y, bars = axis["errorbars"][method]
        assert x == [m / 1e6 for m in by_macs]
        assert y == pytest.approx([sum(a) / len(a) for a in accs])
        ends = [end for seg in bars for end in (seg[0][1], seg[1][1])]
        assert ends == pytest.approx([end for a in accs for end in (min(a), max(a))])


def test_the_progressive_figure_plots_mean_accuracy_over_seeds_against_time_and_epoch(train_py, figures):
    argv = ["progressive", "--config", "quickstart", "--out", "p", "--seeds", "0", "1", "--", "--trainer.max_epochs",
            "3"]  # fmt: skip
    assert study.main(argv) == 0
    figure = figures["progressive.png"]
    assert figure["size"] == (11.0, 4.5)
    assert figure["suptitle"] == "progressive learning with and without adaptive regularization (V2 Table 13)"
    by_time, by_epoch = figure["axes"]
    assert (by_time["xlabel"], by_time["ylabel"], by_epoch["xlabel"]) == (
        "wall time (s, mean over seeds)", "val top-1 at the eval size (mean over seeds)", "epoch",
    )  # fmt: skip
    schedules = ["fixed_size", "progressive_fixed_reg", "progressive_adaptive_reg", "random_resize_adaptive_reg"]
    assert by_epoch["legend"] == schedules and by_time["legend"] is None
    assert (by_time["layout"], by_epoch["layout"]) == ((1, 2, 0, 0), (1, 2, 1, 1))  # side by side, time first
    assert figure["shared_y"] == [True]  # one accuracy scale for both panels
    assert by_time["markers"] == by_epoch["markers"] == dict.fromkeys(schedules, ".")
    mean = stub_accuracy(["--seed_everything", "0"]) + 0.005  # seeds 0 and 1
    for schedule in schedules:
        assert by_time["lines"][schedule] == (
            pytest.approx([1.5, 3.0, 4.5]),
            pytest.approx([mean - 0.1, mean + 0.05, mean]),
        )
        assert by_epoch["lines"][schedule] == ([1, 3, 5], pytest.approx([mean - 0.1, mean + 0.05, mean]))


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]  # the IHDR chunk: width and height, big-endian, after the signature
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_the_grid_figure_places_each_point_at_its_beta_and_gamma_coloured_by_its_mean_accuracy(
    train_py, sized, figures
):
    argv = ["grid", "--config", "quickstart", "--out", "g", "--step", "0.5", "--tolerance", "0.15", "--seeds", "0", "1"]
    assert study.main(argv) == 0
    rows = table(Path("g/results.csv"))
    figure = figures["grid.png"]
    assert figure["size"] == (6.0, 4.5) and png_size(Path("g/grid.png")) == (720, 540)  # 120 dpi
    (axis,) = figure["axes"]
    assert (axis["title"], axis["xlabel"], axis["ylabel"]) == (
        "step 1: alpha * beta^2 * gamma^2 ~= 2 at phi = 1", "beta (width)", "gamma (resolution)",
    )  # fmt: skip
    assert figure["colorbars"] == ["val top-1 (mean over seeds)"]
    points = {}  # (alpha, beta, gamma) -> accuracies, in the table's order (best mean first)
    for r in rows:
        points.setdefault(tuple(float(r[k]) for k in ("alpha", "beta", "gamma")), []).append(float(r["acc1"]))
    assert len(points) == 4 and all(len(accs) == 2 for accs in points.values())
    ((offsets, colours, sizes),) = axis["scatter"]
    assert offsets == [[beta, gamma] for _, beta, gamma in points]
    assert colours == pytest.approx([sum(accs) / 2 for accs in points.values()])
    assert sizes == [120]
    # each point named by its alpha, centred 6 points above it
    assert axis["annotations"] == [
        (f"a={alpha:g}", (beta, gamma), (0, 6), "offset points", "center", "bottom", 7) for alpha, beta, gamma in points
    ]


def test_a_grid_step_that_lands_on_the_papers_point_runs_it_once_in_the_grids_order(base, sized):
    runs = study.grid_runs(base, 0.05, 0.05, [3])
    grid = compound_grid(2.0, step=0.05, max_value=2.0, tolerance=0.05)
    assert (ALPHA, BETA, GAMMA) in grid
    assert [(r.fields["alpha"], r.fields["beta"], r.fields["gamma"]) for r in runs] == grid
