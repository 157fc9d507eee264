"""Print params and MACs of every named variant next to the papers' figures, or one model's stage table.

python -m lit_effnet.summary
python -m lit_effnet.summary --model efficientnetv2_s
"""

from __future__ import annotations

import argparse
import sys

import torch

from lit_effnet.errors import ConfigError
from lit_effnet.models import create_model, list_models, resolve_spec
from lit_effnet.models.complexity import count_macs, count_params
from lit_effnet.models.efficientnet import scaled_head_channels, scaled_stages, scaled_stem_channels


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ratio(ours: float, paper: float | None) -> str:
    return f"{ours / paper:.3f}" if paper else "-"


def variants_table(names: list[str] | None = None) -> str:
    """Params and MACs (at each variant's eval size, built on the meta device) against the papers."""
    rows = []
    for name in names or list_models():
        with torch.device("meta"):
            model = create_model(name)
        spec, paper = model.spec, model.spec.paper
        params, macs = count_params(model), count_macs(model, spec.eval_size)
        rows.append(
            [
                name,
                str(spec.eval_size),
                f"{params:,}",
                f"{paper.params_m}M" if paper else "-",
                _ratio(params / 1e6, paper and paper.params_m),
                f"{macs / 1e9:.3f}G",
                f"{paper.macs_g}B" if paper else "-",
                _ratio(macs / 1e9, paper and paper.macs_g),
            ]
        )
    header = ["model", "eval", "params", "paper", "ratio", "MACs", "paper", "ratio"]
    return _table(header, rows)


def stage_table(name: str) -> str:
    """Per-stage layout of one model: block kind, kernel, stride, expand, channels, repeats, output size."""
    spec = resolve_spec(name)
    size = -(-spec.eval_size // 2)  # after the stride-2 stem ('same' and symmetric both give ceil)
    rows = [["stem", "conv3x3", "3", "2", "-", f"3 -> {scaled_stem_channels(spec)}", "1", f"{size}x{size}"]]
    stages = scaled_stages(spec)
    for i, stage in enumerate(stages, start=1):
        size = -(-size // stage.stride)
        kind = "Fused-MBConv" if stage.block == "fused_mbconv" else "MBConv"
        se = f" SE{stage.se_ratio:g}" if stage.se_ratio else ""
        rows.append(
            [
                str(i),
                kind + se,
                str(stage.kernel),
                str(stage.stride),
                str(stage.expand),
                f"{stage.in_channels} -> {stage.out_channels}",
                str(stage.repeats),
                f"{size}x{size}",
            ]
        )
    rows.append(
        [
            "head",
            "conv1x1",
            "1",
            "1",
            "-",
            f"{stages[-1].out_channels} -> {scaled_head_channels(spec)}",
            "1",
            f"{size}x{size}",
        ]
    )
    header = ["stage", "block", "kernel", "stride", "expand", "channels", "repeats", "output"]
    title = f"{spec.name}: width {spec.width:g}, depth {spec.depth:g}, train {spec.train_size}, eval {spec.eval_size}"
    return title + "\n" + _table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_effnet.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="print the per-stage table of this model instead")
    args = parser.parse_args(argv)
    try:
        print(stage_table(args.model) if args.model else variants_table())
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
