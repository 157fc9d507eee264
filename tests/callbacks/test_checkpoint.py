import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_effnet.callbacks import checkpoint
from lit_effnet.callbacks.checkpoint import (
    AtomicCheckpointIO,
    LastCheckpoint,
    best_checkpoint,
    previous_version,
    tensor_bytes,
)
from lit_effnet.cli import PROJECT_ROOT
from lit_effnet.errors import CheckpointError, ConfigError
from tests.conftest import TINY_NET, child_env, fast_trainer, tiny_datamodule, tiny_module


def test_last_ckpt_holds_the_final_epoch_even_when_the_best_stopped_improving(tmp_path):
    # lr 0 and frozen BN statistics: val/acc1 is the same every epoch, so the best stays at epoch 0, and
    # Lightning's own save_last would leave last.ckpt there too.
    best, last = best_checkpoint(str(tmp_path)), LastCheckpoint(str(tmp_path))
    trainer = fast_trainer(tmp_path, max_epochs=3, callbacks=[best, last], enable_checkpointing=True)
    trainer.fit(tiny_module(lr=0.0, model_kwargs={**TINY_NET, "bn_momentum": 0.0}), tiny_datamodule())
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 2
    assert torch.load(best.best_model_path, weights_only=False)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == [
        "best-epoch000-acc" + f"{float(best.best_model_score):.4f}.ckpt",
        "last.ckpt",
        "last.prev.ckpt",  # epoch 1's, kept by the writer
    ]
    assert torch.load(tmp_path / "last.prev.ckpt", weights_only=False)["epoch"] == 1


class SavedSteps(L.Callback):
    """The optimizer step of every checkpoint the run writes."""

    def __init__(self):
        self.steps = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.steps.append(checkpoint["global_step"])


@pytest.mark.parametrize(
    ("every", "expected"),
    [
        (dict(every_n_train_steps=3), [3, 4, 6, 8]),  # and at each epoch's end; never at an epoch's last batch
        (dict(every_n_train_steps=1), [1, 2, 3, 4, 5, 6, 7, 8]),  # the epoch's last batch: the epoch's write only
        (dict(every_n_train_steps=2, train_time_interval=60.0), [2, 4, 6, 8]),  # either trigger writes
        (dict(train_time_interval=1e-9), [3, 4, 6, 8]),  # the clock is read at logging steps (every 3rd) only
        (dict(train_time_interval=60.0), [4, 8]),  # an hour: the epochs' own only
        (dict(), [4, 8]),
    ],
)
def test_last_ckpt_is_also_written_every_n_steps_or_minutes(tmp_path, every, expected):
    saved, last = SavedSteps(), LastCheckpoint(str(tmp_path), **every)
    trainer = fast_trainer(
        tmp_path, max_epochs=2, limit_train_batches=4, log_every_n_steps=3, callbacks=[last, saved],
        enable_checkpointing=True,
    )  # fmt: skip
    trainer.fit(tiny_module(), tiny_datamodule())
    assert saved.steps == expected
    assert last.last_saved == (str(tmp_path / "last.ckpt"), 1, 8)
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 8


@pytest.mark.parametrize("bad", [dict(every_n_train_steps=-1), dict(train_time_interval=0.0)])
def test_a_negative_step_count_or_a_zero_interval_is_refused_naming_the_key(bad):
    with pytest.raises(ConfigError, match=f"checkpoint.{next(iter(bad))} must be"):
        LastCheckpoint(**bad)


def test_the_writer_keeps_the_checkpoint_it_replaces_until_the_new_one_is_complete(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)
    io.save_checkpoint({"step": 2}, path)
    assert torch.load(path, weights_only=False) == {"step": 2}
    assert torch.load(previous_version(path), weights_only=False) == {"step": 1}
    assert previous_version(path).name == "last.prev.ckpt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.prev.ckpt"]  # no temporaries


def no_space(obj, f, *args, **kwargs):
    """torch.save on a full disk."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_stops_with_the_path_and_the_space_needed_and_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(CheckpointError) as error:
        io.save_checkpoint({"step": 2, "weights": torch.zeros(2**18)}, path)  # 1 MiB of tensors
    monkeypatch.undo()
    message = str(error.value)
    assert message.startswith(f"cannot write {path}: no space left")
    assert "needs about 1.0 MiB" in message and " free); the previous checkpoint is intact" in message
    assert torch.load(path, weights_only=False) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_the_space_a_checkpoint_needs_is_the_bytes_of_its_tensors():
    checkpoint = {"a": torch.zeros(3, 4), "b": [torch.zeros(5, dtype=torch.float64), {"c": torch.zeros(2, 2)}], "d": 7}
    assert tensor_bytes(checkpoint) == 12 * 4 + 5 * 8 + 4 * 4


TORN_WRITE = """
import sys, time, torch
from lightning.fabric.plugins.io import torch_io
from lit_effnet.callbacks.checkpoint import AtomicCheckpointIO
io, path = AtomicCheckpointIO(), sys.argv[1]
io.save_checkpoint({"step": 1, "weights": torch.ones(1000)}, path)
def slow_write(checkpoint, filepath):  # torch.save's bytes reach the file slowly
    with open(filepath, "wb") as f:
        f.write(b"PK" + b"x" * 1000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
torch_io._atomic_save = slow_write
io.save_checkpoint({"step": 2, "weights": torch.zeros(1000)}, path)
"""


def test_a_kill_in_the_middle_of_a_write_leaves_the_previous_checkpoint_readable(tmp_path):
    path = tmp_path / "last.ckpt"
    env = child_env(PYTHONPATH=str(PROJECT_ROOT))
    process = subprocess.Popen(
        [sys.executable, "-c", TORN_WRITE, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout.readline().strip() == "writing"  # the new checkpoint is half written
    process.kill()
    process.wait()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".ckpt")] == ["last.ckpt"]
    kept = torch.load(path, weights_only=False)
    assert kept["step"] == 1 and torch.equal(kept["weights"], torch.ones(1000))
    AtomicCheckpointIO().save_checkpoint({"step": 3}, path)  # the next write clears the torn temporary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.prev.ckpt"]


class ScriptedAccuracy(L.LightningModule):
    """Logs a given val/acc1 at each epoch's validation (as LitEfficientNet logs its top-1), with real weights."""

    def __init__(self, accuracies):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.accuracies = accuracies

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc1", self.accuracies[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_best_checkpoint_is_the_epoch_of_the_highest_accuracy_alone_and_a_tie_keeps_the_first(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    data = DataLoader(TensorDataset(torch.ones(2, 2)), batch_size=1)
    best = best_checkpoint(str(tmp_path))
    trainer = fast_trainer(tmp_path, max_epochs=5, callbacks=[best], enable_checkpointing=True)
    module = ScriptedAccuracy([0.30, 0.75, 0.50, 0.75, 0.10])  # up, down, level with the best, down
    trainer.fit(module, data, data)
    assert [p.name for p in tmp_path.glob("*.ckpt")] == ["best-epoch001-acc0.7500.ckpt"]
    kept = torch.load(best.best_model_path, weights_only=False)
    assert kept["epoch"] == 1 and kept["global_step"] == 4 and float(best.best_model_score) == 0.75
    # Its weights are epoch 1's: two SGD steps of lr 0.1 on sum(w x + b) per epoch, with x = (1, 1).
    assert kept["state_dict"]["layer.bias"].item() == pytest.approx(module.layer.bias.item() + 6 * 0.1, abs=1e-6)


def test_the_writer_creates_missing_folders_and_hands_remote_paths_to_the_wrapped_writer_unchanged(tmp_path):
    class Recorder(TorchCheckpointIO):
        def __init__(self):
            self.calls = []

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            self.calls.append((checkpoint, str(path), storage_options))
            if "://" not in str(path):
                super().save_checkpoint(checkpoint, path)

    recorder, checkpoint = Recorder(), {"epoch": 3}
    writer = AtomicCheckpointIO(recorder)
    writer.save_checkpoint(checkpoint, "s3://bucket/run/last.ckpt", storage_options={"anon": True})
    assert recorder.calls == [(checkpoint, "s3://bucket/run/last.ckpt", {"anon": True})]  # no temporary file
    nested = tmp_path / "new" / "folders" / "last.ckpt"
    writer.save_checkpoint(checkpoint, nested)
    assert torch.load(nested, weights_only=False) == checkpoint and list(nested.parent.iterdir()) == [nested]


@pytest.mark.parametrize(
    "tensor_elements, free_bytes, needed, free",
    [
        (2**28, 2**30 - 2**20, "1.00 GiB", "1023.0 MiB"),  # 2**28 float32 = exactly 1 GiB: the GiB unit from there
        (3 * 2**28 + 2**26, 5 * 2**29, "3.25 GiB", "2.50 GiB"),
        (2**18 - 2**16, 2**19, "0.8 MiB", "0.5 MiB"),
    ],
)
def test_the_full_disk_message_gives_sizes_in_mib_below_a_gib_and_in_gib_from_one(
    tmp_path, monkeypatch, tensor_elements, free_bytes, needed, free
):
    monkeypatch.setattr(torch, "save", no_space)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: SimpleNamespace(free=free_bytes))
    weights = torch.zeros(1).expand(tensor_elements)  # counts its elements' bytes without holding them
    with pytest.raises(CheckpointError) as error:
        AtomicCheckpointIO().save_checkpoint({"weights": weights}, tmp_path / "last.ckpt")
    assert f"(the checkpoint needs about {needed}, {free} free)" in str(error.value)


def test_the_atomic_writer_reads_and_removes_through_the_writer_it_wraps(tmp_path):
    calls = []

    class Recorder(TorchCheckpointIO):
        def load_checkpoint(self, path, map_location=None, weights_only=None):
            calls.append(("load", str(path), map_location))
            return super().load_checkpoint(path, map_location=map_location, weights_only=False)

        def remove_checkpoint(self, path):
            calls.append(("remove", str(path)))
            super().remove_checkpoint(path)

    writer, path = AtomicCheckpointIO(Recorder()), tmp_path / "best.ckpt"
    writer.save_checkpoint({"epoch": 2, "w": torch.ones(3)}, path)
    loaded = writer.load_checkpoint(path, map_location="cpu")
    assert loaded["epoch"] == 2 and torch.equal(loaded["w"], torch.ones(3))
    writer.remove_checkpoint(path)
    assert not path.exists() and calls == [("load", str(path), "cpu"), ("remove", str(path))]


def test_a_run_writes_through_the_strategys_own_torch_writer_and_leaves_a_users_writer_alone(tmp_path):
    class UsersWriter(TorchCheckpointIO):  # a writer of the user's own: left as it is (it may be asynchronous)
        pass

    def written_files(writer):
        names = []
        save = writer.save_checkpoint
        writer.save_checkpoint = lambda checkpoint, path, *args, **kwargs: (
            names.append(Path(path).name),
            save(checkpoint, path),
        )
        folder = tmp_path / type(writer).__name__
        trainer = fast_trainer(folder, max_epochs=1, callbacks=[LastCheckpoint(str(folder))], enable_checkpointing=True)
        trainer.strategy.checkpoint_io = writer
        trainer.fit(tiny_module(), tiny_datamodule())
        return names

    pid = os.getpid()
    assert written_files(TorchCheckpointIO()) == [f".last.ckpt.tmp-{pid}"]  # this very writer, wrapped: atomic
    assert written_files(UsersWriter()) == ["last.ckpt"]


@pytest.mark.parametrize("interruption", [SIGTERMException, KeyboardInterrupt, ValueError])
def test_a_sigterm_or_ctrl_c_writes_last_ckpt_at_its_step_and_says_how_to_resume_and_an_error_writes_nothing(
    tmp_path, monkeypatch, interruption
):
    said = []
    monkeypatch.setattr(checkpoint, "rank_zero_info", said.append)

    class Interrupt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                raise interruption()

    folder = tmp_path / "checkpoints"
    trainer = fast_trainer(
        tmp_path, max_epochs=2, limit_train_batches=5, limit_val_batches=0, enable_checkpointing=True,
        callbacks=[LastCheckpoint(str(folder)), Interrupt()],
    )  # fmt: skip
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores Ctrl-C from a first one on
    try:
        with pytest.raises(SystemExit if interruption is KeyboardInterrupt else interruption):
            trainer.fit(tiny_module(), tiny_datamodule())
    finally:
        signal.signal(signal.SIGINT, sigint)
    if interruption is ValueError:  # a bug: nothing written on its way out
        assert not folder.exists() and said == []
        return
    reason = "SIGTERM" if interruption is SIGTERMException else "interrupt"
    assert said == [
        f"{reason} at epoch 0, step 3: saved {folder / 'last.ckpt'}. Resume with the same command plus --ckpt_path last"
    ]
    assert torch.load(folder / "last.ckpt", weights_only=False)["global_step"] == 3


def test_with_log_every_n_steps_1_the_clock_is_read_after_every_step(tmp_path):
    saved = SavedSteps()
    trainer = fast_trainer(
        tmp_path, max_epochs=2, limit_train_batches=4, log_every_n_steps=1, enable_checkpointing=True,
        callbacks=[LastCheckpoint(str(tmp_path), train_time_interval=1e-9), saved],
    )  # fmt: skip
    trainer.fit(tiny_module(), tiny_datamodule())
    assert saved.steps == [1, 2, 3, 4, 5, 6, 7, 8]


def test_a_second_run_in_the_same_folder_replaces_last_ckpt_without_a_versioned_name(tmp_path):
    for _ in range(2):
        last = LastCheckpoint(str(tmp_path))
        trainer = fast_trainer(tmp_path, max_epochs=1, callbacks=[last], enable_checkpointing=True)
        trainer.fit(tiny_module(), tiny_datamodule())
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["last.ckpt", "last.prev.ckpt"]


def test_the_epochs_last_batch_leaves_last_ckpt_to_the_epochs_own_write_after_the_epoch_is_processed(tmp_path):
    trainer = fast_trainer(
        tmp_path, max_epochs=1, limit_train_batches=4, enable_checkpointing=True,
        callbacks=[LastCheckpoint(str(tmp_path), every_n_train_steps=1)],
    )  # fmt: skip
    trainer.fit(tiny_module(), tiny_datamodule())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    # a write at the last batch would hold the epoch as not yet processed (a resume would run its end again)
    assert saved["global_step"] == 4 and saved["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] == 1


def test_the_time_trigger_writes_once_the_interval_in_minutes_has_passed_since_the_last_write(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: clock[0])

    class ThirtySecondSteps(L.Callback):  # runs before the checkpoint callbacks, which Lightning puts last
        def on_train_batch_end(self, trainer, *args):
            clock[0] = 30.0 * trainer.global_step

    saved = SavedSteps()
    trainer = fast_trainer(
        tmp_path, max_epochs=2, limit_train_batches=4, log_every_n_steps=1, enable_checkpointing=True,
        callbacks=[ThirtySecondSteps(), LastCheckpoint(str(tmp_path), train_time_interval=1.0), saved],
    )  # fmt: skip
    trainer.fit(tiny_module(), tiny_datamodule())
    assert saved.steps == [2, 4, 6, 8]  # 60 s after the start, or after the last write (at 4: the epoch's)
