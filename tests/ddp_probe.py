"""A callback for CLI tests: each rank writes what it trained on to JSON (loaded by `train.py` via the CLI)."""

import json
from pathlib import Path

import lightning as L


class RankProbe(L.Callback):
    def __init__(self, out: str):
        self.out, self.epochs = Path(out), []

    def on_train_epoch_start(self, trainer, pl_module):
        sampler = trainer.train_dataloader.sampler
        self.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "indices": [key.index for key in sampler],
                "dataset_size": len(sampler.dataset),
            }
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.epochs[-1].setdefault("image_size", int(batch[0].shape[-1]))  # the size the loader built
        self.epochs[-1].setdefault("sizes", []).append(int(batch[0].shape[-1]))

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs[-1]["val_acc1"] = float(trainer.callback_metrics.get("val/acc1", -1))
        self.epochs[-1]["world_size"] = trainer.world_size

    def on_train_end(self, trainer, pl_module):
        guards = [c for c in trainer.callbacks if type(c).__name__ == "NonFiniteLossGuard"]
        self.epochs[-1]["skipped_steps"] = guards[0].skipped_steps if guards else None
        self.epochs[-1]["finite_weights"] = all(bool(p.isfinite().all()) for p in pl_module.parameters())
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.epochs))


class NanInputOnRank(L.Callback):
    """Makes one rank's batch NaN at one optimizer step, so that only that rank's loss is non-finite."""

    def __init__(self, step: int, rank: int):
        self.step, self.rank = step, rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            batch[0].mul_(float("nan"))
