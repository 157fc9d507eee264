"""Every weights and checkpoint file lit-effnet reads or writes, and weights from and to timm and torchvision.

timm, torchvision and this package register the same layers in the same order (stem, blocks in
order, each block's convs/BNs/SE in order, head, classifier), so a source state_dict maps onto ours
pair by pair; every pair must agree on its leaf name (weight, bias, running_mean, ...) and shape.
The model we return is configured with the source's padding, BN settings and normalisation, so its
eval-mode logits equal the source's.

Files: lit-effnet Lightning checkpoints (`.ckpt`, carrying the model's spec), lit-effnet `.safetensors`
from `save_weights` (spec in the metadata), and timm/torchvision state_dicts (`.pth`/`.safetensors`). A file
that cannot be read raises `CheckpointError`; a readable one that does not fit raises `WeightsMismatchError`.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lit_effnet.errors import CheckpointError, ConfigError, WeightsMismatchError
from lit_effnet.models.efficientnet import EfficientNet, scaled_head_channels
from lit_effnet.models.factory import create_model
from lit_effnet.models.specs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VARIANTS,
    PaperFigures,
    ProgressiveRanges,
    StageSpec,
    VariantSpec,
)

Library = Literal["timm", "torchvision", "lit_effnet"]
SPEC_METADATA_KEY = "lit_effnet_spec"  # in safetensors metadata and in Lightning checkpoints

# torchvision only builds these; its V1 b0-b4 use PyTorch BN defaults, b5-b7 and V2 use eps 1e-3.
TORCHVISION_NAMES = {
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
    **{f"efficientnet_v2_{s}": f"efficientnetv2_{s}" for s in "sml"},
}

# What weights fix: the architecture, and how layers and inputs must behave to compute what they did.
WEIGHT_SETTINGS = (
    "width", "depth", "round_limit", "stem_channels", "head_channels", "activation", "padding", "bn_eps", "mean", "std",
)  # fmt: skip


def weight_settings(spec: VariantSpec) -> dict[str, Any]:
    """The spec fields a model built to carry these weights must share (`create_model` overrides)."""
    return {key: getattr(spec, key) for key in WEIGHT_SETTINGS}


def our_name_for_timm(timm_name: str) -> str:
    """'tf_efficientnetv2_s' -> 'efficientnetv2_s', 'tf_efficientnet_b3' / 'efficientnet_b3' -> 'efficientnet_b3'."""
    name = timm_name.split(".")[0].removeprefix("tf_")
    if name not in VARIANTS:
        raise WeightsMismatchError(f"timm model {timm_name!r} has no lit_effnet counterpart (have {list(VARIANTS)})")
    return name


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def map_state_dict(source: Mapping[str, torch.Tensor], target: nn.Module, origin: str) -> OrderedDict:
    """Rename an ordered source state_dict onto `target`'s keys, checking leaf names and shapes pairwise."""
    target_state = target.state_dict()
    pairs = list(zip(source.items(), target_state.items()))
    for (s_key, s_val), (t_key, t_val) in pairs:
        if _leaf(s_key) != _leaf(t_key) or tuple(s_val.shape) != tuple(t_val.shape):
            raise WeightsMismatchError(
                f"{origin}: {s_key} {tuple(s_val.shape)} does not fit {t_key} {tuple(t_val.shape)}"
            )
    if len(source) != len(target_state):
        longer, name = (source, "extra") if len(source) > len(target_state) else (target_state, "missing")
        first = list(longer)[len(pairs)]
        raise WeightsMismatchError(
            f"{origin}: {name} key {first} ({len(source)} tensors, expected {len(target_state)})"
        )
    return OrderedDict((t_key, s_val) for (_, s_val), (t_key, _) in pairs)


def _settings_of_module(module: nn.Module) -> dict:
    """Padding and BN settings read off a built timm/torchvision module."""
    bn = next(m for m in module.modules() if isinstance(m, nn.BatchNorm2d))
    same = any("Conv2dSame" in type(m).__name__ for m in module.modules())
    return {"padding": "same" if same else "symmetric", "bn_eps": bn.eps, "bn_momentum": bn.momentum}


def _classifier_weight(state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The classifier weight is the only 2-D tensor of all three layouts (convs are 4-D, BN 1-D)."""
    return next(v for v in state.values() if v.dim() == 2)


def _classes(state: Mapping[str, torch.Tensor]) -> int:
    return _classifier_weight(state).shape[0]


def _build_and_load(name: str, source_state: Mapping[str, torch.Tensor], origin: str, **settings) -> EfficientNet:
    model = create_model(name, num_classes=_classes(source_state), **settings)
    model.load_state_dict(map_state_dict(source_state, model, origin))
    return model


def from_timm(timm_module: nn.Module) -> EfficientNet:
    """Our model carrying a timm `efficientnet_b*`, `tf_efficientnet_b*` or `tf_efficientnetv2_*`'s weights."""
    cfg = getattr(timm_module, "pretrained_cfg", None) or {}
    if "architecture" not in cfg:
        raise WeightsMismatchError("timm module has no pretrained_cfg['architecture']; build it with timm.create_model")
    settings = _settings_of_module(timm_module)
    settings.update(mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)))
    origin = f"timm {cfg['architecture']}"
    return _build_and_load(our_name_for_timm(cfg["architecture"]), timm_module.state_dict(), origin, **settings)


def _torchvision_model(tv_name: str, num_classes: int) -> nn.Module:
    import torchvision

    with torch.device("meta"):
        return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes)


def _shape_multiset(state: Mapping[str, torch.Tensor]) -> list[tuple[int, ...]]:
    return sorted(tuple(v.shape) for v in state.values())


def _infer_torchvision_name(state: Mapping[str, torch.Tensor], origin: str) -> str:
    """The torchvision EfficientNet whose tensors have exactly these shapes (order-free: safetensors loses order)."""
    wanted = _shape_multiset(state)
    for tv_name in TORCHVISION_NAMES:
        candidate = _torchvision_model(tv_name, _classes(state)).state_dict()
        if len(candidate) == len(state) and _shape_multiset(candidate) == wanted:
            return tv_name
    raise WeightsMismatchError(f"{origin}: not a torchvision EfficientNet of {list(TORCHVISION_NAMES)}")


def from_torchvision(tv_module: nn.Module) -> EfficientNet:
    """Our model carrying a torchvision `efficientnet_b*` / `efficientnet_v2_s/m/l`'s weights."""
    state = tv_module.state_dict()
    tv_name = _infer_torchvision_name(state, "torchvision module")
    settings = _settings_of_module(tv_module)  # torchvision pads symmetrically and normalises with ImageNet stats
    settings.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return _build_and_load(TORCHVISION_NAMES[tv_name], state, f"torchvision {tv_name}", **settings)


# ---------------------------------------------------------------- files


def newest_checkpoint(folder: str | Path, pattern: str = "**/last.ckpt") -> Path | None:
    """The most recently written checkpoint under `folder` matching `pattern`, or None."""
    found = sorted(Path(folder).glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint's contents (memory-mapped); a missing, truncated or foreign file is named."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # truncated, foreign or not a zip checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and (safetensors) metadata of a `.pth`/`.pt`/`.bin` or `.safetensors` weights file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which one
        raise CheckpointError(f"{path}: not a readable weights file ({type(err).__name__}: {err})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not hold a state_dict of tensors")
    return dict(state), {}


def detect_library(state: Mapping[str, torch.Tensor], origin: str) -> Library:
    keys = set(state)
    if "conv_stem.weight" in keys:
        return "timm"
    if "features.0.0.weight" in keys:
        return "torchvision"
    if "stem.conv.weight" in keys:
        return "lit_effnet"
    raise WeightsMismatchError(f"{origin}: unrecognised EfficientNet layout (first key {next(iter(state), None)!r})")


def _reorder(state: Mapping[str, torch.Tensor], reference: nn.Module, origin: str) -> OrderedDict:
    """Put a file's tensors (safetensors does not keep order) into the order of the model that wrote them."""
    order = list(reference.state_dict())
    missing = [k for k in order if k not in state]
    if missing:
        raise WeightsMismatchError(f"{origin}: missing key {missing[0]} ({len(missing)} missing)")
    extra = [k for k in state if k not in set(order)]
    if extra:
        raise WeightsMismatchError(f"{origin}: unexpected key {extra[0]} ({len(extra)} unexpected)")
    return OrderedDict((k, state[k]) for k in order)


def spec_to_json(spec: VariantSpec) -> str:
    return json.dumps(dataclasses.asdict(spec))


def spec_from_json(text: str) -> VariantSpec:
    data = json.loads(text)
    data["stages"] = tuple(StageSpec(**s) for s in data["stages"])
    data["paper"] = PaperFigures(**data["paper"]) if data["paper"] else None
    for key in ("progressive_paper", "progressive_official"):
        ranges = data.get(key)
        data[key] = ProgressiveRanges(**{k: tuple(v) if v else v for k, v in ranges.items()}) if ranges else None
    for key in ("mean", "std", "train_crop_scale"):
        data[key] = tuple(data[key])
    return VariantSpec(**data)


def save_weights(model: EfficientNet, path: str | Path) -> Path:
    """Export weights as safetensors with the model's spec in the metadata, so loading needs no flags."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={SPEC_METADATA_KEY: spec_to_json(model.spec)})
    return path


def _from_lightning_checkpoint(path: Path, weights: Literal["ema", "raw"]) -> EfficientNet:
    checkpoint = read_checkpoint(path)
    if SPEC_METADATA_KEY not in checkpoint:
        raise CheckpointError(f"{path}: not a lit-effnet checkpoint of an EfficientNet (no {SPEC_METADATA_KEY})")
    # With EMA on, state_dict holds the EMA weights and current_model_state the raw ones.
    key = "current_model_state" if weights == "raw" and "current_model_state" in checkpoint else "state_dict"
    state = {k.removeprefix("net."): v for k, v in checkpoint[key].items() if k.startswith("net.")}
    model = EfficientNet(spec_from_json(checkpoint[SPEC_METADATA_KEY]), num_classes=_classes(state))
    model.load_state_dict(_reorder(state, model, str(path)))
    return model


def load_pretrained(
    path: str | Path, source: str | None = None, weights: Literal["ema", "raw"] = "ema"
) -> EfficientNet:
    """Our model, with its weights, from any file lit-effnet reads:

    - a lit-effnet Lightning `.ckpt` (its EMA weights unless weights="raw"), or a run folder (its newest last.ckpt);
    - a lit-effnet `.safetensors` from `save_weights` (the spec travels in its metadata);
    - a timm or torchvision state_dict (`.pth`/`.safetensors`). `source` names the model that wrote it, e.g.
      "tf_efficientnetv2_s" (timm) or "efficientnet_v2_s" (torchvision), where the file cannot tell, as for
      timm's V1 family, which exists both as TF ports ('same' padding) and timm-trained weights (symmetric).
    """
    if weights not in ("ema", "raw"):  # any other word would read as EMA
        raise ConfigError(f"weights={weights!r}: 'ema' (a checkpoint's EMA weights) or 'raw'")
    path = Path(path)
    if path.is_dir():
        found = newest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: no last.ckpt under this folder")
        path = found
    elif not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.suffix == ".ckpt":
        return _from_lightning_checkpoint(path, weights)
    state, metadata = read_state_dict(path)
    origin = str(path)
    library = detect_library(state, origin)
    if library == "lit_effnet":
        if SPEC_METADATA_KEY in metadata:
            spec = spec_from_json(metadata[SPEC_METADATA_KEY])
        else:
            spec = VARIANTS[source] if source in VARIANTS else _infer_variant(state, origin)
        model = EfficientNet(spec, num_classes=_classes(state))
        model.load_state_dict(_reorder(state, model, origin))
        return model
    if library == "torchvision":
        tv_name = source or _infer_torchvision_name(state, origin)
        reference = _torchvision_model(tv_name, _classes(state))
        settings = _settings_of_module(reference) | {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        return _build_and_load(TORCHVISION_NAMES[tv_name], _reorder(state, reference, origin), origin, **settings)
    timm_name = source or _infer_timm_name(state, origin)
    import timm

    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False, num_classes=_classes(state))
    settings = _settings_of_module(reference)
    settings.update(mean=tuple(reference.pretrained_cfg["mean"]), std=tuple(reference.pretrained_cfg["std"]))
    return _build_and_load(our_name_for_timm(timm_name), _reorder(state, reference, origin), origin, **settings)


def load_backbone(net: nn.Module, source: Mapping[str, torch.Tensor], origin: str, head: str = "classifier.") -> None:
    """Copy every tensor but the classifier strictly; name the file and the first mismatching key."""
    target = net.state_dict()
    body = {k: v for k, v in target.items() if not k.startswith(head)}
    given = {k: v for k, v in source.items() if not k.startswith(head)}
    for key, value in body.items():
        if key not in given:
            raise WeightsMismatchError(f"{origin}: missing key {key}")
        if tuple(given[key].shape) != tuple(value.shape):
            raise WeightsMismatchError(
                f"{origin}: {key} has shape {tuple(given[key].shape)}, the model needs {tuple(value.shape)}"
            )
    extra = sorted(set(given) - set(body))
    if extra:
        raise WeightsMismatchError(f"{origin}: unexpected key {extra[0]}")
    net.load_state_dict({**target, **given})


def _infer_variant(state: Mapping[str, torch.Tensor], origin: str) -> VariantSpec:
    """The named variant whose tensors have exactly these shapes (order-free, for unordered files)."""
    wanted = _shape_multiset(state)
    head_channels = _classifier_weight(state).shape[1]  # narrows the candidates before any is built
    for spec in VARIANTS.values():
        if scaled_head_channels(spec) != head_channels:
            continue
        with torch.device("meta"):
            candidate = EfficientNet(spec, num_classes=_classes(state)).state_dict()
        if len(candidate) == len(state) and _shape_multiset(candidate) == wanted:
            return spec
    raise WeightsMismatchError(f"{origin}: matches no lit_effnet variant; pass the model name explicitly")


def _infer_timm_name(state: Mapping[str, torch.Tensor], origin: str) -> str:
    our = _infer_variant(state, origin)
    if our.family == "efficientnetv2":
        return "tf_" + our.name  # timm's only V2 models of the paper's architecture are TF ports
    raise WeightsMismatchError(
        f"{origin}: timm {our.name} weights exist as TF ports ('same' padding) and as timm-trained "
        f"(symmetric padding); say which with source='tf_{our.name}' or source='{our.name}'"
    )


# ---------------------------------------------------------------- to timm / torchvision
# The reverse of from_timm / from_torchvision: the library's module of our architecture, carrying our weights.
# Its BN layers get our eps and momentum; with fold_bn_eps=True they keep the library's own and the eps
# difference goes into running_var instead, so the state_dict loads into the stock constructor with the same
# eval outputs (what a weights file needs: it cannot carry eps).

_ARCHITECTURE_FIELDS = ("family", "stages", "stem_channels", "head_channels", "width", "depth", "round_limit")
_SILU = ("silu", "swish")


class NoCounterpartError(WeightsMismatchError):
    """Our model has no timm/torchvision architecture to carry its weights; the message says what differs."""


def _architecture(spec: VariantSpec) -> tuple:
    return tuple(getattr(spec, f) for f in _ARCHITECTURE_FIELDS)


def named_architecture(spec: VariantSpec, library: str = "timm/torchvision") -> str:
    """The named variant whose architecture (stages, stem, head, width, depth, rounding) is `spec`'s."""
    from lit_effnet.models.specs import COMPOUND_BASES

    if spec.name in VARIANTS and _architecture(VARIANTS[spec.name]) == _architecture(spec):
        return spec.name
    for variant in VARIANTS.values():
        if _architecture(variant) == _architecture(spec):
            return variant.name
    base = VARIANTS.get(spec.name) or VARIANTS[COMPOUND_BASES[spec.family]]
    differ = [f for f in _ARCHITECTURE_FIELDS if f != "stages" and getattr(spec, f) != getattr(base, f)]
    ours = ", ".join(f"{f}={getattr(spec, f):g}" for f in differ) or "its stage table"
    theirs = f"; {base.name} has " + ", ".join(f"{getattr(base, f):g}" for f in differ) if differ else ""
    raise NoCounterpartError(
        f"{spec.name} has no {library} counterpart: {ours}{theirs}; {library} builds only the named variants"
    )


def _check_activation(spec: VariantSpec, library: str) -> None:
    if spec.activation not in _SILU:
        raise NoCounterpartError(
            f"{spec.name} has no {library} counterpart: activation {spec.activation!r} (the library's EfficientNets "
            "use SiLU)"
        )


def timm_name(spec: VariantSpec) -> str:
    """timm's model of our architecture and padding: 'same' -> tf_<name>, symmetric -> <name> (timm-trained)."""
    import timm

    arch = named_architecture(spec, "timm")
    _check_activation(spec, "timm")
    name = f"tf_{arch}" if spec.padding == "same" else arch
    if not timm.is_model(name):
        raise NoCounterpartError(
            f"{spec.name} with padding={spec.padding!r} has no timm counterpart: timm builds {arch} only as "
            f"tf_{arch} ('same' padding); train with padding='same' to hand it to timm"
        )
    return name


def torchvision_name(spec: VariantSpec) -> str:
    """torchvision's model of our architecture: efficientnet_b0..b7, efficientnet_v2_s/m/l (symmetric padding)."""
    arch = named_architecture(spec, "torchvision")
    _check_activation(spec, "torchvision")
    names = [tv for tv, ours in TORCHVISION_NAMES.items() if ours == arch]
    if not names:
        raise NoCounterpartError(
            f"{spec.name} has no torchvision counterpart: torchvision builds no {arch} "
            f"(only {', '.join(TORCHVISION_NAMES)})"
        )
    if spec.padding != "symmetric":
        raise NoCounterpartError(
            f"{spec.name} with padding='same' has no torchvision counterpart: torchvision pads symmetrically "
            f"(timm's tf_{arch} pads 'same')"
        )
    return names[0]


def _batch_norms(module: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)]


def _set_bn(module: nn.Module, eps: float, momentum: float) -> None:
    for _, bn in _batch_norms(module):
        bn.eps, bn.momentum = eps, momentum


def _fold_bn_eps(module: nn.Module, our_eps: float) -> int:
    """Shift running_var by (our eps - the layer's eps): each BN then divides by sqrt(var + our eps) as ours does.

    Returns how many running_var entries end up negative (only where our eps is the smaller one; eval
    outputs are still exact, as var + eps stays positive, and training re-estimates them).
    """
    negative = 0
    with torch.no_grad():
        for _, bn in _batch_norms(module):
            if bn.eps != our_eps:
                bn.running_var.add_(our_eps - bn.eps)
                negative += int((bn.running_var < 0).sum())
    return negative


def _export_cfg(model: EfficientNet, library: str, name: str, native: dict, fold: bool) -> dict:
    """What the receiving code needs besides the tensors: the input normalisation and size, BN settings, notes."""
    spec, notes = model.spec, []
    if fold and spec.bn_eps != native["bn_eps"]:
        notes.append(f"BN eps {spec.bn_eps:g} folded into running_var for {library}'s eps {native['bn_eps']:g}")
    elif spec.bn_eps != native["bn_eps"]:
        notes.append(f"BN eps set to {spec.bn_eps:g} ({library} builds {native['bn_eps']:g})")
    if library == "timm":
        from timm.models import get_pretrained_cfg

        default = get_pretrained_cfg(name)
        theirs, where = (tuple(default.mean), tuple(default.std)), f"timm's default for {name}"
    else:
        theirs, where = (IMAGENET_MEAN, IMAGENET_STD), "torchvision's ImageNet mean/std"
    if (tuple(spec.mean), tuple(spec.std)) != theirs:
        notes.append(f"input normalisation differs from {where}: normalise with mean {spec.mean}, std {spec.std}")
    return {
        "library": library,
        "model": name,
        "num_classes": model.num_classes,
        "mean": tuple(spec.mean),
        "std": tuple(spec.std),
        "eval_size": spec.eval_size,
        "crop_pct": spec.crop_pct,
        "bn_eps": native["bn_eps"] if fold else spec.bn_eps,
        "bn_momentum": native["bn_momentum"] if fold else spec.bn_momentum,
        "source": spec.name,
        "notes": notes,
    }


def _carry_weights(model: EfficientNet, target: nn.Module, origin: str, fold: bool) -> int:
    if not fold:
        _set_bn(target, model.spec.bn_eps, model.spec.bn_momentum)
    target.load_state_dict(map_state_dict(model.state_dict(), target, origin))
    target.train(model.training)
    return _fold_bn_eps(target, model.spec.bn_eps) if fold else 0


def to_timm(model: EfficientNet, fold_bn_eps: bool = False) -> nn.Module:
    """timm's module of our architecture carrying our weights, with equal eval outputs.

    The name follows the spec (`timm_name`); BN eps/momentum are ours (or folded, see above); its
    pretrained_cfg has our mean/std, eval size and crop; `module.lit_effnet_cfg` says what differs from timm's.
    """
    import timm

    name = timm_name(model.spec)
    spec = model.spec
    overlay = dict(
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        input_size=(3, spec.eval_size, spec.eval_size),
        crop_pct=spec.crop_pct,
        num_classes=model.num_classes,
    )
    target = timm.create_model(name, pretrained=False, num_classes=model.num_classes, pretrained_cfg_overlay=overlay)
    native = _settings_of_module(target)
    negative = _carry_weights(model, target, f"{spec.name} -> timm {name}", fold_bn_eps)
    target.lit_effnet_cfg = _export_cfg(model, "timm", name, native, fold_bn_eps)
    if negative:
        target.lit_effnet_cfg["notes"].append(f"{negative} running_var entries < 0 after folding (eval is exact)")
    return target


def to_torchvision(model: EfficientNet, fold_bn_eps: bool = False) -> nn.Module:
    """torchvision's module of our architecture carrying our weights, with equal eval outputs.

    BN eps/momentum are set to ours on the built module's layers where they differ from torchvision's
    (or folded, see above). torchvision has no place for the input normalisation: `module.lit_effnet_cfg`
    holds our mean/std, and its notes say when they are not ImageNet's.
    """
    import torchvision

    spec = model.spec
    if model.num_classes <= 0:
        raise NoCounterpartError(f"{spec.name} without a classifier has no torchvision counterpart")
    name = torchvision_name(spec)
    target = torchvision.models.get_model(name, weights=None, num_classes=model.num_classes)
    native = _settings_of_module(target)
    negative = _carry_weights(model, target, f"{spec.name} -> torchvision {name}", fold_bn_eps)
    target.lit_effnet_cfg = _export_cfg(model, "torchvision", name, native, fold_bn_eps)
    if negative:
        target.lit_effnet_cfg["notes"].append(f"{negative} running_var entries < 0 after folding (eval is exact)")
    return target
