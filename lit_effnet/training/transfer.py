"""Weights to fine-tune from: lit-effnet checkpoints and weight files, timm and torchvision files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lit_effnet.models import VariantSpec, resolve_spec
from lit_effnet.models.weights import WeightsMismatchError, load_pretrained

# What weights fix: the architecture, and how layers and inputs must behave to compute what they did.
SOURCE_SETTINGS = (
    "width", "depth", "round_limit", "stem_channels", "head_channels", "activation", "padding", "bn_eps", "mean", "std",
)  # fmt: skip


def source_settings(spec: VariantSpec) -> dict:
    return {key: getattr(spec, key) for key in SOURCE_SETTINGS}


@dataclass(frozen=True)
class PretrainedWeights:
    """A state_dict for our network (without the `net.` prefix), the model it fits and its source settings."""

    state: dict[str, torch.Tensor]
    model_name: str
    settings: dict
    origin: str


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A file, or a run folder (e.g. checkpoints/quickstart): its newest last.ckpt."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"pretrained: no last.ckpt under {path}")
        return found[-1]
    if not path.is_file():
        raise FileNotFoundError(f"pretrained: no such file {path}")
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A Lightning checkpoint's contents (memory-mapped); a truncated or foreign file is named."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # truncated, foreign or not a zip checkpoint
        raise WeightsMismatchError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None


def _from_lightning_checkpoint(path: Path, weights: Literal["ema", "raw"]) -> PretrainedWeights:
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters", {})
    if not hparams.get("name"):
        raise WeightsMismatchError(f"{path}: not a lit-effnet checkpoint of a named model (no hyper_parameters.name)")
    # With EMA, state_dict holds the EMA weights and current_model_state the raw ones.
    key = "current_model_state" if weights == "raw" and "current_model_state" in checkpoint else "state_dict"
    state = {k.removeprefix("net."): v for k, v in checkpoint[key].items() if k.startswith("net.")}
    spec = resolve_spec(hparams["name"], **(hparams.get("model_kwargs") or {}))
    return PretrainedWeights(state, hparams["name"], source_settings(spec), str(path))


def read_pretrained(
    path: str | os.PathLike, source: str | None = None, weights: Literal["ema", "raw"] = "ema"
) -> PretrainedWeights:
    """Read weights to start from: a lit-effnet .ckpt (EMA weights unless weights='raw'), a lit-effnet
    exported .safetensors, or a timm/torchvision state_dict file (`source` names its model if needed)."""
    path = resolve_checkpoint_path(path)
    if path.suffix == ".ckpt":
        return _from_lightning_checkpoint(path, weights)
    model = load_pretrained(path, source=source)
    return PretrainedWeights(model.state_dict(), model.spec.name, source_settings(model.spec), str(path))


def load_backbone(net: nn.Module, pretrained: PretrainedWeights, classifier_prefix: str = "classifier.") -> None:
    """Copy every tensor but the classifier strictly; name the file and the first mismatching key."""
    target = net.state_dict()
    body = {k: v for k, v in target.items() if not k.startswith(classifier_prefix)}
    source = {k: v for k, v in pretrained.state.items() if not k.startswith(classifier_prefix)}
    for key, value in body.items():
        if key not in source:
            raise WeightsMismatchError(f"{pretrained.origin}: missing key {key} (model {pretrained.model_name})")
        if tuple(source[key].shape) != tuple(value.shape):
            raise WeightsMismatchError(
                f"{pretrained.origin}: {key} has shape {tuple(source[key].shape)}, the model needs {tuple(value.shape)}"
            )
    extra = sorted(set(source) - set(body))
    if extra:
        raise WeightsMismatchError(f"{pretrained.origin}: unexpected key {extra[0]} (model {pretrained.model_name})")
    net.load_state_dict({**target, **source})


def backbone_and_head(net: nn.Module, head_prefix: str = "classifier.") -> tuple[list, list]:
    """Parameters of the feature extractor and of the classifier."""
    backbone, head = [], []
    for name, param in net.named_parameters():
        (head if name.startswith(head_prefix) else backbone).append(param)
    return backbone, head
