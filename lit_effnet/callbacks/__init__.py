"""Lightning callbacks: EMA of weights, progressive learning, checkpoints, per-epoch seeding, predictions."""

from lit_effnet.callbacks.checkpoint import AtomicCheckpointIO, LastCheckpoint, best_checkpoint, last_checkpoint
from lit_effnet.callbacks.ema import EMA, ema_decay
from lit_effnet.callbacks.predictions import TopKPrinter
from lit_effnet.callbacks.progressive import ProgressiveLearning
from lit_effnet.callbacks.seeding import EpochSeeding

__all__ = [
    "EMA",
    "AtomicCheckpointIO",
    "EpochSeeding",
    "LastCheckpoint",
    "ProgressiveLearning",
    "TopKPrinter",
    "best_checkpoint",
    "ema_decay",
    "last_checkpoint",
]
