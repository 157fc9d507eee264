"""The LightningModule, the optimisation recipe, mixup/CutMix and the accuracy metrics."""

from lit_effnet.training.module import LitEfficientNet

__all__ = ["LitEfficientNet"]
