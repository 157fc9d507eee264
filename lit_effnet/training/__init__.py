"""The LightningModule, the optimisation recipe and the progressive-learning schedule."""

from lit_effnet.training.module import LitEfficientNet
from lit_effnet.training.progressive import ProgressiveSchedule, StageSettings

__all__ = ["LitEfficientNet", "ProgressiveSchedule", "StageSettings"]
