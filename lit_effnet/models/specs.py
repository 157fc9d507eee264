"""The papers' architecture tables, and the recipe that belongs to each variant, as data.

Every number here is a BASE value from the papers (EfficientNet Table 1 and section 3.3, EfficientNetV2
Tables 4 and 6) or the authors' code (automl efficientnetv2/effnetv2_configs.py), as collected in the
project's facts sheet (docs/facts.md, cited by section); scaling by width and depth happens
later, in `scaling.py`, so a row reads like the paper. One row per variant holds its architecture and
its recipe (sizes, crop, interpolation, normalisation, dropout, drop path, BN, progressive ranges), as
automl's effnetv2_configs does: configs only override it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BlockKind = Literal["mbconv", "fused_mbconv"]
Padding = Literal["symmetric", "same"]
Interpolation = Literal["nearest", "bilinear", "bicubic"]
ScheduleRule = Literal["paper", "official"]

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
class ProgressiveRanges:
    """(first stage, last stage) values of progressive learning (V2 Algorithm 1); None: not scheduled.

    Under the paper's rule the first stage trains at exactly the first values; under the official
    code's rule `image_size[0]` is its `ibase` and the first stage already trains larger (facts 3).
    """

    image_size: tuple[int, int]
    dropout: tuple[float, float] | None = None
    randaug_magnitude: tuple[float, float] | None = None
    mixup_alpha: tuple[float, float] | None = None
    cutmix_alpha: tuple[float, float] | None = None


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
    # The official code resizes bilinearly; timm evaluates its TF ports bicubic (pretrained_cfg).
    train_interpolation: Interpolation = "bilinear"
    eval_interpolation: Interpolation = "bicubic"
    train_crop_scale: tuple[float, float] = (0.05, 1.0)  # area range of the random-resized crop (V2 code)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dropout: float = 0.2
    drop_path_rate: float = 0.2  # survival probability 0.8 (facts 4)
    # BN in PyTorch convention: TF momentum 0.99 == PyTorch 0.01 (facts 4); V2 code uses TF 0.9.
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    padding: Padding = "symmetric"
    activation: str = "silu"
    # Progressive learning: Table 6 of the V2 paper ("paper") and the official training loop ("official").
    progressive_paper: ProgressiveRanges | None = None
    progressive_official: ProgressiveRanges | None = None
    paper: PaperFigures | None = None

    def progressive_ranges(self, rule: ScheduleRule) -> ProgressiveRanges | None:
        """The ranges of `rule`; a variant without a Table 6 row takes the official code's under "paper"."""
        if rule == "paper":
            return self.progressive_paper or self.progressive_official
        return self.progressive_official


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
    # The V1 code crops 8-100% of the area and resizes bicubic (automl efficientnetv2/preprocess_legacy.py).
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
        train_interpolation="bicubic",
        train_crop_scale=(0.08, 1.0),
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
    randaug: float | None,
    mixup: float,
    paper: PaperFigures,
    tf_v2_normalisation: bool,
    table6: ProgressiveRanges | None = None,
) -> VariantSpec:
    """A row of automl's efficientnetv2_params: (width, depth, train size, eval size, dropout, randaug, mixup).

    Its training loop ramps RandAugment from 5 and mixup and CutMix (= mixup) from 0 to these targets, over
    sizes from ibase 128 to the train size; the B rows used V1's AutoAugment instead of RandAugment (facts 2, 3).
    """
    official = ProgressiveRanges(
        image_size=(128, train_size),
        randaug_magnitude=(5.0, randaug) if randaug else None,
        mixup_alpha=(0.0, mixup),
        cutmix_alpha=(0.0, mixup),
    )
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
        bn_momentum=0.1,  # automl V2 hparams: bn_momentum 0.9 in TF convention (facts 4)
        progressive_paper=table6,
        progressive_official=official,
        paper=paper,
    )


def _table6(last_size: int, randaug: tuple[float, float], mixup: tuple[float, float], dropout: tuple[float, float]):
    """A row of the V2 paper's Table 6 (facts 2): first -> last stage; the paper uses no CutMix."""
    return ProgressiveRanges(image_size=(128, last_size), randaug_magnitude=randaug, mixup_alpha=mixup, dropout=dropout)


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
        _v2("efficientnetv2_b0", EFFICIENTNETV2_BASE_STAGES, 32, 1.0, 1.0, 192, 224, 0.2, None, 0, _paper(7.1, 0.72, 78.7), False),
        _v2("efficientnetv2_b1", EFFICIENTNETV2_BASE_STAGES, 32, 1.0, 1.1, 192, 240, 0.2, None, 0, _paper(8.1, 1.2, 79.8), False),
        _v2("efficientnetv2_b2", EFFICIENTNETV2_BASE_STAGES, 32, 1.1, 1.2, 208, 260, 0.3, None, 0, _paper(10.1, 1.7, 80.5), False),
        _v2("efficientnetv2_b3", EFFICIENTNETV2_BASE_STAGES, 32, 1.2, 1.4, 240, 300, 0.3, None, 0, _paper(14.4, 3.0, 82.1), False),
        _v2("efficientnetv2_s", EFFICIENTNETV2_S_STAGES, 24, 1.0, 1.0, 300, 384, 0.2, 10, 0, _paper(22, 8.8, 83.9), True,
            _table6(300, (5, 15), (0, 0), (0.1, 0.3))),
        _v2("efficientnetv2_m", EFFICIENTNETV2_M_STAGES, 24, 1.0, 1.0, 384, 480, 0.3, 15, 0.2, _paper(54, 24, 85.1), True,
            _table6(380, (5, 20), (0, 0.2), (0.1, 0.4))),
        _v2("efficientnetv2_l", EFFICIENTNETV2_L_STAGES, 32, 1.0, 1.0, 384, 480, 0.4, 20, 0.5, _paper(120, 53, 85.7), True,
            _table6(380, (5, 25), (0, 0.4), (0.1, 0.5))),
        # V2-XL: top-1 87.3 after ImageNet-21k pre-training, no Table 6 row: "paper" uses its official-code ranges.
        _v2("efficientnetv2_xl", EFFICIENTNETV2_XL_STAGES, 32, 1.0, 1.0, 384, 512, 0.4, 20, 0.5, _paper(208, 94, 87.3), True),
    )
}
# fmt: on

# The base networks that compound scaling starts from (`create_model("efficientnet", phi=...)`).
COMPOUND_BASES: dict[str, str] = {"efficientnet": "efficientnet_b0", "efficientnetv2": "efficientnetv2_b0"}
