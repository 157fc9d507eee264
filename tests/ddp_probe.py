"""A callback for the DDP test: each rank writes what it trained on to JSON (loaded by `train.py` via the CLI)."""

import json
from pathlib import Path

import lightning as L


class RankProbe(L.Callback):
    def __init__(self, out: str):
        self.out, self.epochs = Path(out), []

    def on_train_epoch_start(self, trainer, pl_module):
        datamodule = trainer.datamodule
        sampler = datamodule._train_loader.sampler
        self.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "image_size": datamodule.train_stage()[0],
                "indices": [index for _, index in sampler],
                "dataset_size": len(sampler.dataset),
            }
        )

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs[-1]["val_acc1"] = float(trainer.callback_metrics["val/acc1"])
        self.epochs[-1]["world_size"] = trainer.world_size

    def on_train_end(self, trainer, pl_module):
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.epochs))
