"""Progressive learning with adaptive regularization (EfficientNetV2, Algorithm 1) as a pure schedule.

Definition used here (the paper's): training is split into M stages; stage i (0-based) takes
    value_i = first + (last - first) * i / (M - 1)
for the image size, dropout, RandAugment magnitude and mixup alpha, so stage 0 uses exactly the
first-stage values and stage M-1 exactly the targets. Sizes of the earlier stages are rounded to a
multiple of `size_multiple` (few discrete sizes: fewer torch.compile recompiles, aligned tensors).

The official code (automl efficientnetv2) differs (facts 3): ratio = (i + 1) / M and
size = ibase + (S_e - ibase) * ratio with ibase = S_e / 2 by default, so its first stage is not the
minimum size; RandAugment and mixup ramp the same way, and its dropout schedule is computed but not
applied. With M = 4 and S_e = 300 it trains at 188, 225, 263, 300 where this schedule gives 128,
184, 240, 300 for the Table 6 range 128 -> 300.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class StageSettings:
    """What one stage trains with; None: not scheduled (the model's or data's own value applies)."""

    stage: int
    image_size: int | None
    dropout: float | None
    randaug_magnitude: float | None
    mixup_alpha: float | None


def _round_to_multiple(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


@dataclass(frozen=True, kw_only=True)
class ProgressiveSchedule:
    """(first, last) value pairs interpolated over `num_stages` equal parts of `max_epochs`; None: not scheduled."""

    num_stages: int = 4
    image_size: tuple[int, int] | None = (128, 300)
    dropout: tuple[float, float] | None = (0.1, 0.3)
    randaug_magnitude: tuple[float, float] | None = (5.0, 10.0)
    mixup_alpha: tuple[float, float] | None = (0.0, 0.0)
    size_multiple: int = 8

    def __post_init__(self) -> None:
        if self.num_stages < 1:
            raise ValueError(f"progressive.num_stages must be >= 1, got {self.num_stages}")
        for key in ("image_size", "dropout", "randaug_magnitude", "mixup_alpha"):
            pair = getattr(self, key)
            if pair is not None and len(pair) != 2:
                raise ValueError(f"progressive.{key} must be [first, last], got {list(pair)}")

    def stage_at(self, epoch: int, max_epochs: int | None) -> int:
        """Stage of a 0-based epoch: max_epochs split into num_stages near-equal parts."""
        if self.num_stages == 1:
            return 0  # also for step-based runs (max_epochs -1)
        if max_epochs is None or max_epochs < self.num_stages:
            raise ValueError(
                f"trainer.max_epochs ({max_epochs}) must be at least progressive.num_stages ({self.num_stages})"
            )
        return min(self.num_stages - 1, epoch * self.num_stages // max_epochs)

    def first_epochs(self, max_epochs: int) -> list[int]:
        """The epoch each stage starts at."""
        return [next(e for e in range(max_epochs) if self.stage_at(e, max_epochs) == s) for s in range(self.num_stages)]

    def settings(self, stage: int) -> StageSettings:
        last = self.num_stages - 1
        t = stage / last if last else 1.0

        def at(pair: tuple[float, float] | None) -> float | None:
            if pair is None:
                return None
            return float(pair[1] if stage == last else pair[0] + (pair[1] - pair[0]) * t)

        size = at(self.image_size)
        if size is not None:
            size = int(self.image_size[1]) if stage == last else _round_to_multiple(size, self.size_multiple)
        return StageSettings(
            stage=stage,
            image_size=size,
            dropout=at(self.dropout),
            randaug_magnitude=at(self.randaug_magnitude),
            mixup_alpha=at(self.mixup_alpha),
        )
