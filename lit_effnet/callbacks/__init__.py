"""Lightning callbacks: progressive learning, EMA, checkpoints, seeding, freezing, the NaN guard, predictions."""

from lit_effnet.callbacks.checkpoint import AtomicCheckpointIO, LastCheckpoint, best_checkpoint
from lit_effnet.callbacks.ema import EMA, ema_decay
from lit_effnet.callbacks.freeze import FreezeBackbone
from lit_effnet.callbacks.nonfinite import NonFiniteLossGuard
from lit_effnet.callbacks.predictions import TopKPrinter
from lit_effnet.callbacks.progressive import ProgressiveLearning
from lit_effnet.callbacks.seeding import BatchSeeding

__all__ = [
    "EMA",
    "AtomicCheckpointIO",
    "BatchSeeding",
    "FreezeBackbone",
    "LastCheckpoint",
    "NonFiniteLossGuard",
    "ProgressiveLearning",
    "TopKPrinter",
    "best_checkpoint",
    "ema_decay",
]
