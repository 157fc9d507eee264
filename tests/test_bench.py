"""Each benchmark command runs (tiny settings); the figures themselves are in bench/RESULTS.md."""

import pytest

from lit_effnet.bench import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["models", "--cases", "efficientnet_b0:2:64", "--rounds", "2", "--warmup", "1"], "efficientnet_b0    infer"),
        (
            ["models", "--cases", "efficientnet_b0:2:64", "--rounds", "1", "--warmup", "1", "--as-shipped"],
            "channels_last={'ours': True, 'timm': False}",
        ),
        (
            [
                "pipeline",
                "--sizes",
                "64",
                "--magnitudes",
                "5",
                "--sources",
                "200x150",
                "--images",
                "4",
                "--rounds",
                "1",
                "--model-rate",
                "900",
            ],
            "200x150 64px:",
        ),
        (["stage", "--sizes", "32", "40", "--workers", "0"], "  40 "),
        (
            [
                "seeds",
                "--seeds",
                "0",
                "--variant",
                "once=--progressive null",
                "--",
                "--trainer.max_epochs",
                "1",
                "--trainer.limit_train_batches",
                "2",
                "--trainer.limit_val_batches",
                "1",
            ],
            "once: best",
        ),
        pytest.param(  # two short training runs of the full digits set: about a minute on 2 cores
            ["progressive", "--seeds", "0", "--epochs", "3", "--start", "32", "--size", "40", "--target", "0.2"],
            "speed-up",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bench_commands_print_their_tables(capsys, argv, expected):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("# ") and expected in out
