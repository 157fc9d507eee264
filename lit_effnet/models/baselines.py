"""Other networks than EfficientNet, from timm and torchvision, with width and depth on their own knobs.

`model.name: timm:NAME` or `torchvision:NAME` builds that library's network (no weights); its
`model.model_kwargs` go to the library's builder, except four that lit-effnet maps onto each family:

- `depth`: a multiplier of the blocks per stage, each stage's count rounded up (facts 1: ceil(n * d));
- `width`: a multiplier of the channels per stage, rounded to a multiple of 8 as EfficientNet's widths are
  (facts 1), which is also timm's `round_channels`;
- `dropout`: the classifier dropout (timm's `drop_rate`, torchvision MobileNetV2's `dropout`);
- `drop_path_rate`: timm's stochastic depth (torchvision's ResNets and MobileNetV2 have none).

This lets the studies scale the baselines of EfficientNet Table 3 (MobileNetV1, MobileNetV2, ResNet-50) and
train the ResNets of EfficientNetV2 Table 12. The families and their knobs are the tables below; a network
outside them builds as the library builds it, and asking it for a width or depth stops with one line naming
what it lacks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from torch import nn

from lit_effnet.errors import ConfigError
from lit_effnet.models.scaling import round_filters, round_repeats

LIBRARIES = ("timm", "torchvision")
MAPPED = ("width", "depth", "dropout", "drop_path_rate")

# ResNet stage tables (He et al. 2016, Table 1): block kind and blocks per stage. timm and torchvision both
# build stages of 64, 128, 256, 512 planes (x4 out for bottlenecks) after a 64-channel 7x7 stem, which timm's
# plain-stem ResNets keep at 64 whatever the width (its stem_width only sizes the "deep" stems).
RESNET_PLANES = (64, 128, 256, 512)
RESNETS: dict[str, tuple[Literal["basic", "bottleneck"], tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet26": ("bottleneck", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# torchvision's wide ResNets are its bottleneck ResNets with wider 3x3 convolutions (width_per_group).
TORCHVISION_WIDE = {"wide_resnet50_2": ("resnet50", 128), "wide_resnet101_2": ("resnet101", 128)}

# timm's MobileNets (its efficientnet.py generators): which generator, and the name's channel multiplier.
TIMM_MOBILENETS: dict[str, tuple[Literal["v1", "v2"], float]] = {
    "mobilenetv1_100": ("v1", 1.0),
    "mobilenetv1_125": ("v1", 1.25),
    "mobilenetv2_035": ("v2", 0.35),
    "mobilenetv2_050": ("v2", 0.5),
    "mobilenetv2_075": ("v2", 0.75),
    "mobilenetv2_100": ("v2", 1.0),
    "mobilenetv2_140": ("v2", 1.4),
}
# MobileNetV2's stages (Sandler et al. 2018, Table 2): expansion t, channels c, blocks n, first stride s.
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                      (6, 320, 1, 1))  # fmt: skip


@dataclasses.dataclass(frozen=True, kw_only=True)
class BaselineSpec:
    """What the schedule of a run needs to know of a library network before it is built (cf. VariantSpec)."""

    name: str
    train_size: int
    eval_size: int
    dropout: float
    drop_path_rate: float

    def progressive_ranges(self, rule: str) -> None:
        """Library networks bring no progressive ranges: the config's `progressive.*` says them all."""
        return None


def is_library_name(name: str | None) -> bool:
    """Whether `model.name` names a timm or torchvision network ("timm:resnet18")."""
    return isinstance(name, str) and name.partition(":")[0] in LIBRARIES and ":" in name


def split_name(name: str) -> tuple[str, str]:
    library, _, arch = name.partition(":")
    if library not in LIBRARIES or not arch:
        raise ConfigError(f"model.name {name!r}: a library network is named timm:NAME or torchvision:NAME")
    return library, arch


def _family(library: str, arch: str) -> str | None:
    if (library == "timm" and arch in RESNETS) or (library == "torchvision" and arch in TORCHVISION_RESNETS):
        return "resnet"
    if library == "torchvision" and arch in TORCHVISION_WIDE:
        return "resnet"
    if (library == "timm" and arch in TIMM_MOBILENETS) or (library == "torchvision" and arch == "mobilenet_v2"):
        return "mobilenet"
    return None


def unscalable(name: str) -> dict[str, str]:
    """The dimensions ("depth", "width") that `name` cannot scale, each with what it lacks; {} when both scale."""
    library, arch = split_name(name)
    family = _family(library, arch)
    if family is None:
        why = (
            f"lit_effnet/models/baselines.py has no blocks-per-stage or channels-per-stage table of {name} (it has "
            f"timm {', '.join([*RESNETS, *TIMM_MOBILENETS])}; torchvision "
            f"{', '.join([*TORCHVISION_RESNETS, *TORCHVISION_WIDE, 'mobilenet_v2'])})"
        )
        return {"depth": why, "width": why}
    if library == "torchvision" and family == "resnet" and RESNETS.get(arch, ("bottleneck",))[0] == "basic":
        return {
            "width": "torchvision's ResNet fixes its stage widths (64-512) and its BasicBlock takes no "
            "width_per_group; use timm:" + arch + ", which takes channels per stage"
        }
    return {}


def resnet_knobs(layers: tuple[int, ...], depth: float, width: float) -> dict[str, Any]:
    """timm ResNet's own knobs for a depth and width multiplier: blocks per stage and channels per stage."""
    return {
        "layers": tuple(round_repeats(n, depth) for n in layers),
        "channels": tuple(round_filters(c, width) for c in RESNET_PLANES),
    }


def mobilenetv2_stages(depth: float) -> list[list[int]]:
    """torchvision MobileNetV2's inverted_residual_setting with each stage's blocks scaled by `depth`."""
    return [[t, c, round_repeats(n, depth), s] for t, c, n, s in MOBILENETV2_STAGES]


def _check_scalable(name: str, width: float, depth: float) -> None:
    missing = unscalable(name)
    for dimension, value in (("depth", depth), ("width", width)):
        if value != 1.0 and dimension in missing:
            raise ConfigError(f"model.model_kwargs.{dimension}: cannot scale the {dimension} of {name}: "
                              f"{missing[dimension]}")  # fmt: skip


def _timm_builder(arch: str, width: float, depth: float) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    import timm

    if not timm.is_model(arch):
        raise ConfigError(f"model.name timm:{arch}: timm has no such model (timm.list_models('*{arch[:6]}*'))")
    if arch in RESNETS:
        return _first_arg(timm.create_model, arch), resnet_knobs(RESNETS[arch][1], depth, width)
    if arch in TIMM_MOBILENETS:
        from timm.models import efficientnet as timm_effnet

        # timm's registered MobileNet builders fix the channel multiplier; their generators take both knobs.
        version, multiplier = TIMM_MOBILENETS[arch]
        generate = {"v1": timm_effnet._gen_mobilenet_v1, "v2": timm_effnet._gen_mobilenet_v2}[version]

        def build(**kwargs: Any) -> nn.Module:
            return generate(arch, multiplier * width, depth_multiplier=depth, **kwargs)

        return build, {}
    return _first_arg(timm.create_model, arch), {}


def _first_arg(create: Callable[..., nn.Module], arch: str) -> Callable[..., nn.Module]:
    def build(**kwargs: Any) -> nn.Module:
        return create(arch, **kwargs)

    return build


def _torchvision_builder(arch: str, width: float, depth: float) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    import torchvision
    from torchvision.models import resnet

    if arch not in torchvision.models.list_models(torchvision.models):
        raise ConfigError(f"model.name torchvision:{arch}: torchvision.models has no such classification model")
    if arch in TORCHVISION_RESNETS or arch in TORCHVISION_WIDE:
        base, per_group = TORCHVISION_WIDE.get(arch, (arch, 64))
        kind, layers = RESNETS[base]
        block = resnet.BasicBlock if kind == "basic" else resnet.Bottleneck
        knobs: dict[str, Any] = {"layers": [round_repeats(n, depth) for n in layers]}
        if kind == "bottleneck":  # the bottlenecks' 3x3 widths, as torchvision's wide ResNets widen them
            knobs["width_per_group"] = round_filters(per_group, width)
        return _first_arg(resnet.ResNet, block), knobs
    if arch == "mobilenet_v2":
        from torchvision.models.mobilenetv2 import MobileNetV2

        return MobileNetV2, {"width_mult": width, "inverted_residual_setting": mobilenetv2_stages(depth)}

    def build(**kwargs: Any) -> nn.Module:
        return torchvision.models.get_model(arch, weights=None, **kwargs)

    return build, {}


def _regularization(library: str, arch: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`dropout` and `drop_path_rate` under the library's names, or a one-line refusal where nothing takes them."""
    out = {}
    if "dropout" in kwargs:
        if library == "timm":
            out["drop_rate"] = kwargs["dropout"]
        elif arch == "mobilenet_v2":
            out["dropout"] = kwargs["dropout"]
        elif kwargs["dropout"]:
            raise ConfigError(f"model.model_kwargs.dropout: torchvision:{arch} has no classifier dropout")
    if kwargs.get("drop_path_rate"):
        if library != "timm":
            raise ConfigError(f"model.model_kwargs.drop_path_rate: torchvision:{arch} has no stochastic depth")
        out["drop_path_rate"] = kwargs["drop_path_rate"]
    return out


def create_baseline(name: str, num_classes: int = 1000, **kwargs: Any) -> nn.Module:
    """Build `name` ("timm:resnet50", "torchvision:mobilenet_v2", ...) with width/depth on its own knobs."""
    library, arch = split_name(name)
    width, depth = float(kwargs.get("width", 1.0)), float(kwargs.get("depth", 1.0))
    _check_scalable(name, width, depth)
    builder = _timm_builder if library == "timm" else _torchvision_builder
    build, knobs = builder(arch, width, depth)
    passed = {k: v for k, v in kwargs.items() if k not in MAPPED}
    overlap = sorted(set(passed) & set(knobs))
    if overlap:
        raise ConfigError(f"model.model_kwargs.{overlap[0]}: set width and depth instead, lit-effnet sets {name}'s "
                          f"{', '.join(sorted(knobs))} from them")  # fmt: skip
    try:
        return build(num_classes=num_classes, **knobs, **_regularization(library, arch, kwargs), **passed)
    except TypeError as err:  # an option the builder does not take
        raise ConfigError(f"model.model_kwargs for {name}: {err}") from None


def baseline_spec(name: str, **kwargs: Any) -> BaselineSpec:
    """The sizes and regularization a run of `name` starts from, without building it: timm's pretrained_cfg
    sizes (224 for torchvision), the given dropout and drop path (else the builder's defaults)."""
    library, arch = split_name(name)
    train = evaluate = 224
    if library == "timm":
        import timm

        if not timm.is_model(arch):
            raise ConfigError(f"model.name {name}: timm has no such model")
        cfg = timm.models.get_pretrained_cfg(arch)
        if cfg is not None:
            train = int(cfg.input_size[-1])
            evaluate = int((cfg.test_input_size or cfg.input_size)[-1])
    own_dropout = 0.2 if (library, arch) == ("torchvision", "mobilenet_v2") else 0.0
    return BaselineSpec(
        name=name,
        train_size=train,
        eval_size=evaluate,
        dropout=float(kwargs.get("dropout", own_dropout)),
        drop_path_rate=float(kwargs.get("drop_path_rate", 0.0)),
    )
