"""BatchSeeding: every training batch's random draws are a function of (seed, epoch, batch index, rank)."""

import random

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_effnet.callbacks import BatchSeeding
from lit_effnet.callbacks.seeding import batch_seed


class Draws(L.LightningModule):
    """Records, at every training batch, one draw of torch, numpy and random: what dropout or mixup would see."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.draws = []

    def training_step(self, batch, batch_idx):
        self.draws.append((self.current_epoch, batch_idx, torch.rand(1).item(), np.random.rand(), random.random()))
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def draws_of(tmp_path, callbacks):
    module = Draws()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, callbacks=callbacks, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(torch.zeros(3, 2)), batch_size=1))
    return module.draws


def expected(seed, epoch, batch):
    state = batch_seed(seed, epoch, batch, 0)
    torch.manual_seed(state)
    np.random.seed(state)
    random.seed(state)
    return torch.rand(1).item(), np.random.rand(), random.random()


def test_each_batch_draws_what_its_seed_epoch_and_index_give_in_torch_numpy_and_random(tmp_path):
    draws = draws_of(tmp_path, [BatchSeeding(seed=5)])
    assert [(e, b) for e, b, *_ in draws] == [(e, b) for e in range(2) for b in range(3)]
    assert [draw[2:] for draw in draws] == [expected(5, epoch, batch) for epoch, batch, *_ in draws]
    assert len({draw[2:] for draw in draws}) == 6  # every batch of both epochs draws differently
    assert draws_of(tmp_path, [BatchSeeding(seed=6)])[0][2:] != draws[0][2:]  # another seed, other draws


def test_without_a_seed_the_seed_everything_seed_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    assert [draw[2:] for draw in draws_of(tmp_path, [BatchSeeding()])] == [
        expected(7, epoch, batch) for epoch in range(2) for batch in range(3)
    ]
    monkeypatch.delenv("PL_GLOBAL_SEED")
    assert draws_of(tmp_path, [BatchSeeding()])[0][2:] == expected(0, 0, 0)


def test_the_batch_seed_depends_on_each_of_seed_epoch_batch_and_rank():
    base = batch_seed(1, 2, 3, 4)
    assert base == batch_seed(1, 2, 3, 4)
    others = {batch_seed(0, 2, 3, 4), batch_seed(1, 0, 3, 4), batch_seed(1, 2, 0, 4), batch_seed(1, 2, 3, 0)}
    assert len(others | {base}) == 5
    assert base == int(np.random.SeedSequence([1, 2, 3, 4]).generate_state(1)[0])
