"""Hand a trained model on: ONNX, torch.export, or a timm / torchvision state_dict, with the outputs checked.

Every export writes one file, loads it back the way the receiving code would (onnxruntime,
`torch.export.load`, `timm.create_model(..., pretrained=True)`, the torchvision constructor with a strict
`load_state_dict`), and compares that model's outputs with ours on random batches of 1 and 3 images at
the model's eval size; a difference above `rtol` times our largest output raises ExportMismatchError.

ONNX and torch.export graphs have a dynamic batch dimension and a fixed spatial size (the eval size, or
`size`): our TF 'same' padding is computed from the input size in Python, so the traced pads are only
right for that size. Weights are written in the standard (contiguous) layout, whatever memory format
the model runs in. timm / torchvision files carry BN eps differences folded into running_var (the stock
constructors build their own eps; see `lit_effnet.models.weights.to_timm`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from lit_effnet.errors import ConfigError, WeightsMismatchError
from lit_effnet.models.efficientnet import EfficientNet
from lit_effnet.models.weights import SPEC_METADATA_KEY, spec_to_json, to_timm, to_torchvision

Format = Literal["onnx", "torch_export", "timm", "torchvision"]
FORMATS: tuple[str, ...] = get_args(Format)
SUFFIXES = {"onnx": ".onnx", "torch_export": ".pt2", "timm": ".safetensors", "torchvision": ".safetensors"}
CHECK_BATCHES = (1, 3)  # graphs are traced at batch 2, so both check the dynamic batch dimension
TRACE_BATCH = 2
RTOL = 1e-4
ONNX_INPUT, ONNX_OUTPUT = "images", "logits"
METADATA_FILE = "lit_effnet.json"  # inside the .pt2 archive (torch.export.load(..., extra_files=...))


class ExportMismatchError(RuntimeError):
    """The exported model's outputs differ from ours by more than the tolerance (the file is kept)."""


class NonFiniteModelError(WeightsMismatchError):
    """The model to export gives NaN or infinite outputs (its weights are not finite): bad input, not a bug."""


@dataclass(frozen=True)
class ExportResult:
    """What was written, how it loads, and how far its outputs are from ours (float(result) is that distance)."""

    path: Path
    fmt: str
    source: str  # our spec's name
    target: str  # e.g. "timm tf_efficientnet_b0"
    size: int
    max_abs_diff: float
    max_abs_output: float
    load: str  # one line of Python that loads the file
    notes: tuple[str, ...] = ()

    def __float__(self) -> float:
        return self.max_abs_diff

    @property
    def summary(self) -> str:
        batches = " and ".join(map(str, CHECK_BATCHES))
        notes = "".join(f"; {n}" for n in self.notes)
        return (
            f"exported {self.source} to {self.path} ({self.target}): max |difference| {self.max_abs_diff:.2e} "
            f"(outputs up to {self.max_abs_output:.3g}) on batches of {batches} at {self.size}px; "
            f"load with {self.load}{notes}"
        )


def _metadata(model: EfficientNet, size: int) -> dict[str, str]:
    """What every file says about its input (the full spec only goes with graphs: see _write_timm)."""
    spec = model.spec
    return {
        "lit_effnet_model": spec.name,
        "num_classes": str(model.num_classes),
        "input": f"float32 (N, 3, {size}, {size}): RGB in [0, 1], minus mean, divided by std",
        "mean": json.dumps(list(spec.mean)),
        "std": json.dumps(list(spec.std)),
        "eval_size": str(spec.eval_size),
        "crop_pct": str(spec.crop_pct),
    }


def _graph_metadata(model: EfficientNet, size: int) -> dict[str, str]:
    return _metadata(model, size) | {SPEC_METADATA_KEY: spec_to_json(model.spec)}


def _batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1)


Runner = Callable[[torch.Tensor], torch.Tensor]


def _write_onnx(net: nn.Module, example: torch.Tensor, out: Path, metadata: dict[str, str]) -> tuple[str, str, Runner]:
    """The dynamo exporter (torch.onnx.export's default since torch 2.9), checked with onnxruntime."""
    import onnxruntime

    program = torch.onnx.export(
        net,
        (example,),
        dynamo=True,
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
        dynamic_shapes=({0: _batch_dim()},),
        verbose=False,
    )
    program.model.metadata_props.update(metadata)
    program.save(str(out), external_data=False)  # one file (ONNX switches to external data above 2 GB)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    opset = program.model.opset_imports.get("", "?")

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0])

    load = f"onnxruntime.InferenceSession('{out}').run(None, {{'{ONNX_INPUT}': x}})"
    return f"ONNX opset {opset}, dynamic batch", load, run


def _write_torch_export(
    net: nn.Module, example: torch.Tensor, out: Path, metadata: dict[str, str]
) -> tuple[str, str, Runner]:
    program = torch.export.export(net, (example,), dynamic_shapes=({0: _batch_dim()},))
    torch.export.save(program, str(out), extra_files={METADATA_FILE: json.dumps(metadata)})
    loaded = torch.export.load(str(out)).module()
    return "torch.export ExportedProgram, dynamic batch", f"torch.export.load('{out}').module()(x)", loaded


def _save_safetensors(module: nn.Module, out: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(out), metadata=metadata)


def _library_metadata(cfg: dict, load: str) -> dict[str, str]:
    return {
        "library": cfg["library"],
        "model": cfg["model"],
        "bn_eps": str(cfg["bn_eps"]),
        "bn_momentum": str(cfg["bn_momentum"]),
        "notes": json.dumps(cfg["notes"]),
        "load": load,
    }


def _write_timm(net: EfficientNet, out: Path, metadata: dict[str, str]) -> tuple[str, str, Runner, list[str]]:
    """timm's layout with the eps difference folded into running_var: no lit-effnet spec goes with these tensors."""
    import timm

    module = to_timm(net, fold_bn_eps=True)
    cfg = module.lit_effnet_cfg
    overlay = dict(
        file=str(out),
        num_classes=net.num_classes,  # else timm drops a classifier of another size, without a word
        mean=cfg["mean"],
        std=cfg["std"],
        input_size=(3, cfg["eval_size"], cfg["eval_size"]),
        crop_pct=cfg["crop_pct"],
    )
    load = f"timm.create_model('{cfg['model']}', pretrained=True, pretrained_cfg_overlay={overlay!r})"
    _save_safetensors(module, out, metadata | _library_metadata(cfg, load))
    loaded = timm.create_model(cfg["model"], pretrained=True, pretrained_cfg_overlay=overlay).eval()
    return f"timm {cfg['model']}", load, loaded, cfg["notes"]


def _write_torchvision(net: EfficientNet, out: Path, metadata: dict[str, str]) -> tuple[str, str, Runner, list[str]]:
    import torchvision
    from safetensors.torch import load_file

    module = to_torchvision(net, fold_bn_eps=True)
    cfg = module.lit_effnet_cfg
    load = (
        f"torchvision.models.get_model('{cfg['model']}', num_classes={net.num_classes})"
        f".load_state_dict(safetensors.torch.load_file('{out}'), strict=True)"
    )
    _save_safetensors(module, out, metadata | _library_metadata(cfg, load))
    loaded = torchvision.models.get_model(cfg["model"], weights=None, num_classes=net.num_classes)
    loaded.load_state_dict(load_file(str(out)), strict=True)
    return f"torchvision {cfg['model']}", load, loaded.eval(), cfg["notes"]


def export_model(
    model: EfficientNet, fmt: Format, out: str | os.PathLike, *, size: int | None = None, rtol: float = RTOL
) -> ExportResult:
    """Write `model` (eval mode) as `fmt` to `out` and compare the file's model with ours.

    size: the spatial input size (default `model.spec.eval_size`); fixed in ONNX / torch.export graphs.
    The model itself is not changed (a CPU copy is exported). Raises NoCounterpartError (a
    WeightsMismatchError) for a model that timm/torchvision cannot build, with the reason.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from {list(FORMATS)}")
    out = Path(out)
    if fmt == "torch_export" and out.suffix != ".pt2":
        raise ConfigError(f"{out}: torch.export.save/load need a file ending in .pt2")
    out.parent.mkdir(parents=True, exist_ok=True)
    size = size or model.spec.eval_size
    net = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()
    metadata = (_graph_metadata if fmt in ("onnx", "torch_export") else _metadata)(net, size)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(b, 3, size, size, generator=g) for b in CHECK_BATCHES]
    notes: list[str] = []
    if fmt == "onnx":
        target, load, run = _write_onnx(net, torch.randn(TRACE_BATCH, 3, size, size, generator=g), out, metadata)
    elif fmt == "torch_export":
        example = torch.randn(TRACE_BATCH, 3, size, size, generator=g)
        target, load, run = _write_torch_export(net, example, out, metadata)
    elif fmt == "timm":
        target, load, run, notes = _write_timm(net, out, metadata)
    else:
        target, load, run, notes = _write_torchvision(net, out, metadata)

    diffs, scales = [], []
    with torch.no_grad():
        for x in batches:
            ours, theirs = net(x), run(x)
            if theirs.shape != ours.shape:
                raise ExportMismatchError(f"{out}: output shape {tuple(theirs.shape)}, ours {tuple(ours.shape)}")
            diffs.append((theirs - ours).abs().max())
            scales.append(ours.abs().max())
    # Folded with torch's max, which keeps a NaN: Python's max(0.0, nan) is 0.0 and would pass the check below.
    diff, scale = float(torch.stack(diffs).max()), float(torch.stack(scales).max())
    result = ExportResult(out, fmt, net.spec.name, target, size, diff, scale, load, tuple(notes))
    if not math.isfinite(scale):
        bad = [name for name, t in net.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
        where = f"non-finite values in {', '.join(bad[:3])}" + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise NonFiniteModelError(
            f"{out}: our model's outputs are not finite ({where if bad else 'NaN or inf'}), so the file cannot be "
            "checked against them (file kept)"
        )
    if not diff <= rtol * scale:  # a NaN difference fails too
        raise ExportMismatchError(f"{result.summary}: more than {rtol:g} x the largest output (file kept)")
    return result


def export_checkpoint(
    ckpt_path: str | os.PathLike,
    fmt: Format,
    out: str | os.PathLike,
    weights: Literal["ema", "raw"] = "ema",
    *,
    size: int | None = None,
    rtol: float = RTOL,
) -> ExportResult:
    """Export a lit-effnet checkpoint (a .ckpt or run folder: its EMA weights unless weights='raw'; also a
    lit-effnet/timm/torchvision weights file). `result.summary` is one line for the console."""
    model = model_from_checkpoint(ckpt_path, weights)
    return export_model(model, fmt, out, size=size, rtol=rtol)


def model_from_checkpoint(ckpt_path: str | os.PathLike, weights: Literal["ema", "raw"] = "ema") -> EfficientNet:
    """Our model with a checkpoint's weights and its spec (eval size included), in eval mode."""
    from lit_effnet.models.weights import load_pretrained

    return load_pretrained(ckpt_path, weights=weights).eval()
