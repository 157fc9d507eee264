"""The papers' architecture tables as data.

Every number here is a BASE value copied from ../shared/reference/efficientnet-facts.md (cited by
section); scaling by width and depth happens later, in `scaling.py`, so a row reads like the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BlockKind = Literal["mbconv", "fused_mbconv"]
Padding = Literal["symmetric", "same"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_V2_MEAN = (0.5, 0.5, 0.5)  # TF V2-S/M/L/XL weights expect inputs in [-1, 1]
TF_V2_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """One row of a stage table: `repeats` blocks, the first of which has `stride`."""

    block: BlockKind
    kernel: int
    stride: int
    expand: int
    out_channels: int
    repeats: int
    se_ratio: float = 0.0  # relative to the block's INPUT channels (facts 1, 2)


@dataclass(frozen=True, kw_only=True)
class PaperFigures:
    """What the paper reports for a variant (facts 1 and 2); None where it reports nothing."""

    params_m: float
    macs_g: float
    top1: float


@dataclass(frozen=True, kw_only=True)
class VariantSpec:
    """One variant: architecture, build options and the image sizes of its recipe (automl style)."""

    name: str
    family: Literal["efficientnet", "efficientnetv2"]
    stages: tuple[StageSpec, ...]
    stem_channels: int
    head_channels: int = 1280
    width: float = 1.0
    depth: float = 1.0
    # V1 bumps a width rounded down by more than 10%; automl's V2 round_filters does not (facts 1).
    round_limit: float = 0.9
    train_size: int = 224
    eval_size: int = 224
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dropout: float = 0.2
    drop_path_rate: float = 0.2  # survival probability 0.8 (facts 4)
    # BN in PyTorch convention: TF momentum 0.99 == PyTorch 0.01 (facts 4); V2 code uses TF 0.9.
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    padding: Padding = "symmetric"
    activation: str = "silu"
    paper: PaperFigures | None = None


def _mb(kernel: int, stride: int, expand: int, out: int, repeats: int, se: float = 0.25) -> StageSpec:
    return StageSpec(
        block="mbconv", kernel=kernel, stride=stride, expand=expand, out_channels=out, repeats=repeats, se_ratio=se
    )


def _fused(kernel: int, stride: int, expand: int, out: int, repeats: int) -> StageSpec:
    return StageSpec(
        block="fused_mbconv", kernel=kernel, stride=stride, expand=expand, out_channels=out, repeats=repeats
    )


# Facts 1, "EfficientNet-B0 stages" (paper Table 1); stem 32, head 1280.
EFFICIENTNET_B0_STAGES = (
    _mb(3, 1, 1, 16, 1),
    _mb(3, 2, 6, 24, 2),
    _mb(5, 2, 6, 40, 2),
    _mb(3, 2, 6, 80, 3),
    _mb(5, 1, 6, 112, 3),
    _mb(5, 2, 6, 192, 4),
    _mb(3, 1, 6, 320, 1),
)

# Facts 2, official block strings "V2 base" (for V2-B0..B3); stem = first stage input, 32.
EFFICIENTNETV2_BASE_STAGES = (
    _fused(3, 1, 1, 16, 1),
    _fused(3, 2, 4, 32, 2),
    _fused(3, 2, 4, 48, 2),
    _mb(3, 2, 4, 96, 3),
    _mb(3, 1, 6, 112, 5),
    _mb(3, 2, 6, 192, 8),
)

# Facts 2, official block strings V2-S (paper Table 4); stem 24.
EFFICIENTNETV2_S_STAGES = (
    _fused(3, 1, 1, 24, 2),
    _fused(3, 2, 4, 48, 4),
    _fused(3, 2, 4, 64, 4),
    _mb(3, 2, 4, 128, 6),
    _mb(3, 1, 6, 160, 9),
    _mb(3, 2, 6, 256, 15),
)

# Facts 2, V2-M; stem 24.
EFFICIENTNETV2_M_STAGES = (
    _fused(3, 1, 1, 24, 3),
    _fused(3, 2, 4, 48, 5),
    _fused(3, 2, 4, 80, 5),
    _mb(3, 2, 4, 160, 7),
    _mb(3, 1, 6, 176, 14),
    _mb(3, 2, 6, 304, 18),
    _mb(3, 1, 6, 512, 5),
)

# Facts 2, V2-L; stem 32.
EFFICIENTNETV2_L_STAGES = (
    _fused(3, 1, 1, 32, 4),
    _fused(3, 2, 4, 64, 7),
    _fused(3, 2, 4, 96, 7),
    _mb(3, 2, 4, 192, 10),
    _mb(3, 1, 6, 224, 19),
    _mb(3, 2, 6, 384, 25),
    _mb(3, 1, 6, 640, 7),
)

# Facts 2, V2-XL; stem 32.
EFFICIENTNETV2_XL_STAGES = (
    _fused(3, 1, 1, 32, 4),
    _fused(3, 2, 4, 64, 8),
    _fused(3, 2, 4, 96, 8),
    _mb(3, 2, 4, 192, 16),
    _mb(3, 1, 6, 256, 24),
    _mb(3, 2, 6, 512, 32),
    _mb(3, 1, 6, 640, 8),
)


def _v1(
    name: str, width: float, depth: float, size: int, dropout: float, paper: PaperFigures | None = None
) -> VariantSpec:
    # Facts 1 table: released B1..B7 use hand-set (width, depth, res, dropout), not exact alpha^phi.
    # Eval crop: TF resizes to size + 32 and centre-crops size (timm crop_pct = size / (size + 32)).
    return VariantSpec(
        name=name,
        family="efficientnet",
        stages=EFFICIENTNET_B0_STAGES,
        stem_channels=32,
        width=width,
        depth=depth,
        round_limit=0.9,
        train_size=size,
        eval_size=size,
        crop_pct=round(size / (size + 32), 3),
        dropout=dropout,
        bn_momentum=0.01,
        paper=paper,
    )


def _v2(
    name: str,
    stages: tuple[StageSpec, ...],
    stem: int,
    width: float,
    depth: float,
    train_size: int,
    eval_size: int,
    dropout: float,
    paper: PaperFigures,
    tf_v2_normalisation: bool,
) -> VariantSpec:
    return VariantSpec(
        name=name,
        family="efficientnetv2",
        stages=stages,
        stem_channels=stem,
        width=width,
        depth=depth,
        round_limit=0.0,  # automl V2 round_filters has no 10% bump
        train_size=train_size,
        eval_size=eval_size,
        crop_pct=1.0 if tf_v2_normalisation else round(eval_size / (eval_size + 32), 3),
        mean=TF_V2_MEAN if tf_v2_normalisation else IMAGENET_MEAN,
        std=TF_V2_STD if tf_v2_normalisation else IMAGENET_STD,
        dropout=dropout,
        bn_momentum=0.1,  # automl V2 hparams: bn_momentum 0.9 in TF convention
        paper=paper,
    )


def _paper(params_m: float, macs_g: float, top1: float) -> PaperFigures:
    return PaperFigures(params_m=params_m, macs_g=macs_g, top1=top1)


# One row per named variant: facts 1 (V1 table) and facts 2 (V2 table).
# fmt: off
VARIANTS: dict[str, VariantSpec] = {
    v.name: v
    for v in (
        _v1("efficientnet_b0", 1.0, 1.0, 224, 0.2, _paper(5.3, 0.39, 77.1)),
        _v1("efficientnet_b1", 1.0, 1.1, 240, 0.2, _paper(7.8, 0.70, 79.1)),
        _v1("efficientnet_b2", 1.1, 1.2, 260, 0.3, _paper(9.2, 1.0, 80.1)),
        _v1("efficientnet_b3", 1.2, 1.4, 300, 0.3, _paper(12, 1.8, 81.6)),
        _v1("efficientnet_b4", 1.4, 1.8, 380, 0.4, _paper(19, 4.2, 82.9)),
        _v1("efficientnet_b5", 1.6, 2.2, 456, 0.4, _paper(30, 9.9, 83.6)),
        _v1("efficientnet_b6", 1.8, 2.6, 528, 0.5, _paper(43, 19, 84.0)),
        _v1("efficientnet_b7", 2.0, 3.1, 600, 0.5, _paper(66, 37, 84.3)),
        _v1("efficientnet_b8", 2.2, 3.6, 672, 0.5),
        _v1("efficientnet_l2", 4.3, 5.3, 800, 0.5),
        _v2("efficientnetv2_b0", EFFICIENTNETV2_BASE_STAGES, 32, 1.0, 1.0, 192, 224, 0.2, _paper(7.1, 0.72, 78.7), False),
        _v2("efficientnetv2_b1", EFFICIENTNETV2_BASE_STAGES, 32, 1.0, 1.1, 192, 240, 0.2, _paper(8.1, 1.2, 79.8), False),
        _v2("efficientnetv2_b2", EFFICIENTNETV2_BASE_STAGES, 32, 1.1, 1.2, 208, 260, 0.3, _paper(10.1, 1.7, 80.5), False),
        _v2("efficientnetv2_b3", EFFICIENTNETV2_BASE_STAGES, 32, 1.2, 1.4, 240, 300, 0.3, _paper(14.4, 3.0, 82.1), False),
        _v2("efficientnetv2_s", EFFICIENTNETV2_S_STAGES, 24, 1.0, 1.0, 300, 384, 0.2, _paper(22, 8.8, 83.9), True),
        _v2("efficientnetv2_m", EFFICIENTNETV2_M_STAGES, 24, 1.0, 1.0, 384, 480, 0.3, _paper(54, 24, 85.1), True),
        _v2("efficientnetv2_l", EFFICIENTNETV2_L_STAGES, 32, 1.0, 1.0, 384, 480, 0.4, _paper(120, 53, 85.7), True),
        # V2-XL top-1 87.3 is after ImageNet-21k pre-training (facts 2).
        _v2("efficientnetv2_xl", EFFICIENTNETV2_XL_STAGES, 32, 1.0, 1.0, 384, 512, 0.4, _paper(208, 94, 87.3), True),
    )
}
# fmt: on

# The base networks that compound scaling starts from (`create_model("efficientnet", phi=...)`).
COMPOUND_BASES: dict[str, str] = {"efficientnet": "efficientnet_b0", "efficientnetv2": "efficientnetv2_b0"}
