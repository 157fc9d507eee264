"""`create_model` and `list_models`: named variants, overrides and compound scaling."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from lit_effnet.errors import ConfigError
from lit_effnet.models.efficientnet import EfficientNet
from lit_effnet.models.scaling import ALPHA, BETA, GAMMA, compound_scale, scaled_resolution
from lit_effnet.models.specs import COMPOUND_BASES, VARIANTS, VariantSpec

# Spec fields a caller may override; the rest define the variant (progressive ranges: set progressive.* instead).
FIXED_FIELDS = ("name", "family", "stages", "paper", "progressive_paper", "progressive_official")
OVERRIDABLE = tuple(f.name for f in dataclasses.fields(VariantSpec) if f.name not in FIXED_FIELDS)


def list_models() -> list[str]:
    """Names of the named variants (the compound bases `efficientnet`, `efficientnetv2` take `phi`)."""
    return list(VARIANTS)


def compound_spec(
    base: str = "efficientnet", phi: float = 0.0, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA
) -> VariantSpec:
    """A family member scaled from its base network by phi (paper step 2), with its resolution."""
    spec = VARIANTS[COMPOUND_BASES[base]]
    scale = compound_scale(phi, alpha, beta, gamma)
    train_size = scaled_resolution(phi, gamma, spec.train_size)
    eval_size = scaled_resolution(phi, gamma, spec.eval_size)
    official = spec.progressive_official
    if official is not None:  # the official loop ramps from ibase to whatever the train size is
        official = dataclasses.replace(official, image_size=(official.image_size[0], train_size))
    return dataclasses.replace(
        spec,
        name=f"{base}_phi{phi:g}",
        width=scale.width,
        depth=scale.depth,
        train_size=train_size,
        eval_size=eval_size,
        crop_pct=round(eval_size / (eval_size + 32), 3),
        progressive_official=official,
        paper=None,
    )


def resolve_spec(name: str, **overrides: Any) -> VariantSpec:
    """The spec `create_model(name, **overrides)` builds, with a clear error for bad names and keys."""
    compound_keys = {k: overrides.pop(k) for k in ("phi", "alpha", "beta", "gamma") if k in overrides}
    if name in COMPOUND_BASES:
        spec = compound_spec(name, **compound_keys)
    elif name in VARIANTS:
        if compound_keys:
            raise ConfigError(
                f"{sorted(compound_keys)} apply to the compound bases {sorted(COMPOUND_BASES)}, not to {name!r}"
            )
        spec = VARIANTS[name]
    else:
        close = difflib.get_close_matches(name, [*VARIANTS, *COMPOUND_BASES], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; choose from {list_models()}"
        raise ConfigError(f"unknown model {name!r}{hint}")
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ConfigError(f"unknown model option {unknown[0]!r} for {name!r}; options are {list(OVERRIDABLE)}")
    return dataclasses.replace(spec, **overrides)


def create_model(name: str, num_classes: int = 1000, **overrides: Any) -> EfficientNet:
    """Build a named variant, e.g. `create_model("efficientnetv2_s", num_classes=10, padding="same")`.

    `create_model("efficientnet", phi=2.5)` scales B0 by compound scaling (alpha, beta, gamma default
    1.2, 1.1, 1.15); the resolution to train at is `model.spec.train_size`.
    """
    return EfficientNet(resolve_spec(name, **overrides), num_classes=num_classes)
