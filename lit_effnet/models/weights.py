"""Import weights from timm and torchvision EfficientNets, and save/load our own weight files.

timm, torchvision and this package register the same layers in the same order (stem, blocks in
order, each block's convs/BNs/SE in order, head, classifier), so a source state_dict maps onto ours
pair by pair; every pair must agree on its leaf name (weight, bias, running_mean, ...) and shape.
The model we return is configured with the source's padding, BN settings and normalisation, so its
eval-mode logits equal the source's.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lit_effnet.models.efficientnet import EfficientNet, scaled_head_channels
from lit_effnet.models.factory import create_model
from lit_effnet.models.specs import IMAGENET_MEAN, IMAGENET_STD, VARIANTS, VariantSpec

Library = Literal["timm", "torchvision", "lit_effnet"]
SPEC_METADATA_KEY = "lit_effnet_spec"

# torchvision only builds these; its V1 b0-b4 use PyTorch BN defaults, b5-b7 and V2 use eps 1e-3.
TORCHVISION_NAMES = {
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
    **{f"efficientnet_v2_{s}": f"efficientnetv2_{s}" for s in "sml"},
}


class WeightsMismatchError(ValueError):
    """A weights file or module does not fit the architecture it is loaded into."""


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


def _source_settings(module: nn.Module) -> dict:
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
    settings = _source_settings(timm_module)
    settings.update(mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)))
    origin = f"timm {cfg['architecture']}"
    return _build_and_load(our_name_for_timm(cfg["architecture"]), timm_module.state_dict(), origin, **settings)


def _torchvision_model(tv_name: str, num_classes: int) -> nn.Module:
    import torchvision

    with torch.device("meta"):
        return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes)


def _shape_signature(state: Mapping[str, torch.Tensor]) -> list[tuple[int, ...]]:
    return [tuple(v.shape) for v in state.values()]


def _infer_torchvision_name(state: Mapping[str, torch.Tensor]) -> str:
    signature = _shape_signature(state)
    for tv_name in TORCHVISION_NAMES:
        candidate = _torchvision_model(tv_name, _classes(state)).state_dict()
        if len(candidate) == len(state) and _shape_signature(candidate) == signature:
            return tv_name
    raise WeightsMismatchError(f"not a torchvision EfficientNet of {list(TORCHVISION_NAMES)}")


def from_torchvision(tv_module: nn.Module) -> EfficientNet:
    """Our model carrying a torchvision `efficientnet_b*` / `efficientnet_v2_s/m/l`'s weights."""
    state = tv_module.state_dict()
    tv_name = _infer_torchvision_name(state)
    settings = _source_settings(tv_module)  # torchvision pads symmetrically and normalises with ImageNet stats
    settings.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return _build_and_load(TORCHVISION_NAMES[tv_name], state, f"torchvision {tv_name}", **settings)


# ---------------------------------------------------------------- files


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and (safetensors) metadata of a `.pth`/`.pt`/`.bin` or `.safetensors` weights file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which one
        raise WeightsMismatchError(f"{path}: not a readable weights file ({type(err).__name__}: {err})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMismatchError(f"{path}: does not hold a state_dict of tensors")
    return dict(state), {}


def detect_library(state: Mapping[str, torch.Tensor]) -> Library:
    keys = set(state)
    if "conv_stem.weight" in keys:
        return "timm"
    if "features.0.0.weight" in keys:
        return "torchvision"
    if "stem.conv.weight" in keys:
        return "lit_effnet"
    raise WeightsMismatchError(f"unrecognised EfficientNet layout (first key {next(iter(keys), None)!r})")


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


def save_weights(model: EfficientNet, path: str | Path) -> Path:
    """Export weights as safetensors with the model's spec in the metadata, so loading needs no flags."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = dataclasses.asdict(model.spec)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={SPEC_METADATA_KEY: json.dumps(spec), "num_classes": str(model.num_classes)})
    return path


def spec_from_json(text: str) -> VariantSpec:
    from lit_effnet.models.specs import PaperFigures, StageSpec

    data = json.loads(text)
    data["stages"] = tuple(StageSpec(**s) for s in data["stages"])
    data["paper"] = PaperFigures(**data["paper"]) if data["paper"] else None
    for key in ("mean", "std"):
        data[key] = tuple(data[key])
    return VariantSpec(**data)


def load_pretrained(path: str | Path, source: str | None = None) -> EfficientNet:
    """Our model from a weights file of lit_effnet, timm or torchvision (`.pth`/`.safetensors`).

    `source` names the model that wrote a timm/torchvision file, e.g. "tf_efficientnetv2_s" (timm) or
    "efficientnet_v2_s" (torchvision); it is needed where the file cannot tell it, as for timm's V1
    family, which exists both as TF ports ('same' padding) and timm-trained weights (symmetric).
    """
    state, metadata = read_state_dict(path)
    library = detect_library(state)
    origin = str(path)
    if library == "lit_effnet":
        if SPEC_METADATA_KEY in metadata:
            spec = spec_from_json(metadata[SPEC_METADATA_KEY])
        else:
            spec = VARIANTS[source] if source in VARIANTS else _infer_variant(state, origin)
        model = EfficientNet(spec, num_classes=_classes(state))
        model.load_state_dict(_reorder(state, model, origin))
        return model
    if library == "torchvision":
        tv_name = source or _infer_torchvision_name_unordered(state, origin)
        reference = _torchvision_model(tv_name, _classes(state))
        settings = _source_settings(reference) | {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        return _build_and_load(TORCHVISION_NAMES[tv_name], _reorder(state, reference, origin), origin, **settings)
    timm_name = source or _infer_timm_name(state, origin)
    import timm

    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False, num_classes=_classes(state))
    settings = _source_settings(reference)
    settings.update(mean=tuple(reference.pretrained_cfg["mean"]), std=tuple(reference.pretrained_cfg["std"]))
    return _build_and_load(our_name_for_timm(timm_name), _reorder(state, reference, origin), origin, **settings)


def _shape_multiset(state: Mapping[str, torch.Tensor]) -> list[tuple[int, ...]]:
    return sorted(_shape_signature(state))


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


def _infer_torchvision_name_unordered(state: Mapping[str, torch.Tensor], origin: str) -> str:
    our = _infer_variant(state, origin).name
    names = [tv for tv, ours in TORCHVISION_NAMES.items() if ours == our]
    if not names:
        raise WeightsMismatchError(f"{origin}: {our} does not exist in torchvision")
    return names[0]


def _infer_timm_name(state: Mapping[str, torch.Tensor], origin: str) -> str:
    our = _infer_variant(state, origin)
    if our.family == "efficientnetv2":
        return "tf_" + our.name  # timm's only V2 models of the paper's architecture are TF ports
    raise WeightsMismatchError(
        f"{origin}: timm {our.name} weights exist as TF ports ('same' padding) and as timm-trained "
        f"(symmetric padding); say which with source='tf_{our.name}' or source='{our.name}'"
    )
