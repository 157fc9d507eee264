"""A callback for the shard DDP test: each rank writes the labels of every training batch it saw to JSON."""

import json
from pathlib import Path

import lightning as L


class LabelProbe(L.Callback):
    def __init__(self, out: str):
        self.out, self.epochs = Path(out), []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.epochs[-1].append(batch[1].tolist())

    def on_train_end(self, trainer, pl_module):
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.epochs))
