"""Lightning callbacks: EMA of weights, progressive learning."""

from lit_effnet.callbacks.ema import EMA, ema_decay
from lit_effnet.callbacks.progressive import ProgressiveLearning

__all__ = ["EMA", "ProgressiveLearning", "ema_decay"]
