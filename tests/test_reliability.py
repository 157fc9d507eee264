"""Kills, signals, NaNs and bad files: a run is never silently lost and never trains on garbage."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_effnet.callbacks import EMA, AtomicCheckpointIO, ProgressiveLearning
from lit_effnet.callbacks.checkpoint import LastCheckpoint, previous_version
from lit_effnet.cli import PROJECT_ROOT, main
from tests.callbacks.test_progressive import Recorder
from tests.conftest import child_env, fast_trainer, tiny_datamodule, tiny_module
from tests.data.fixtures import write_imagefolder

RUN = [
    "--config", "quickstart", "--trainer.max_epochs", "4", "--trainer.limit_train_batches", "4",
    "--trainer.limit_val_batches", "1", "--progressive.num_stages", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip
LAST = Path("checkpoints/quickstart/version_0/checkpoints/last.ckpt")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def start_training(*extra: str) -> subprocess.Popen:
    # As many threads as this process uses: a run compared bit for bit with one in this process must reduce alike.
    threads = str(torch.get_num_threads())
    env = child_env(OMP_NUM_THREADS=threads, PYTHONUNBUFFERED="1", PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "train.py"), *RUN, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)


def _weights(path: Path) -> dict:
    checkpoint = torch.load(path, weights_only=False)
    return {**checkpoint["state_dict"], **{"raw." + k: v for k, v in checkpoint["current_model_state"].items()}}


def test_a_sigkill_in_the_middle_of_an_epoch_resumes_from_its_step_checkpoint_to_the_uninterrupted_weights(
    tmp_path, monkeypatch, capsys
):
    # last.ckpt every 3 steps as well as every epoch: the reference runs the 4 epochs of 4 steps uninterrupted.
    run = [*RUN, "--checkpoint.every_n_train_steps", "3"]
    (tmp_path / "reference").mkdir()
    monkeypatch.chdir(tmp_path / "reference")
    assert main(run) == 0
    reference = _weights(LAST)
    # SIGKILLed when step 7 starts (epoch 1, batch 2, after the step-6 checkpoint), then resumed.
    (tmp_path / "killed").mkdir()
    monkeypatch.chdir(tmp_path / "killed")
    killer = json.dumps({"class_path": "tests.kill_probe.SigkillAt", "init_args": {"step": 6}})
    process = start_training("--checkpoint.every_n_train_steps", "3", f"--trainer.callbacks+={killer}")
    assert process.wait(timeout=300) == -signal.SIGKILL, process.stdout.read()
    first = torch.load(LAST, weights_only=False)
    assert (first["epoch"], first["global_step"]) == (1, 6)  # in the middle of epoch 1
    assert first["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches": 2}]
    # And the newest file turns out unreadable: the resume takes the one before it (step 4), and says so.
    LAST.write_bytes(LAST.read_bytes()[:1000])
    assert torch.load(previous_version(LAST), weights_only=False)["global_step"] == 4
    assert main([*run, "--ckpt_path", "last"]) == 0
    warning = capsys.readouterr().err
    assert f"warning: --ckpt_path {LAST}: not a readable checkpoint" in warning
    assert f"; resuming from the one before it, {previous_version(LAST)}" in warning
    resumed = torch.load(LAST, weights_only=False)
    assert (resumed["epoch"], resumed["global_step"]) == (3, 16)  # schedule and step count continued
    assert any(key.startswith("EMA") for key in resumed["callbacks"])  # the EMA state travelled with it
    weights = _weights(LAST)
    assert weights.keys() == reference.keys()
    different = [k for k in weights if not torch.equal(weights[k], reference[k])]
    assert not different, different[:3]


def test_sigterm_writes_a_checkpoint_and_says_how_to_resume():
    process = start_training("--trainer.max_epochs", "30")
    wait_for(LAST, process)
    step_at_signal = torch.load(LAST, weights_only=False)["global_step"]
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert "SIGTERM at epoch" in output and "--ckpt_path last" in output, output[-2000:]
    saved = torch.load(LAST, weights_only=False)
    assert saved["global_step"] >= step_at_signal
    assert main([*RUN, "--trainer.max_epochs", str(saved["epoch"] + 2), "--ckpt_path", "last"]) == 0
    assert torch.load(LAST, weights_only=False)["epoch"] == saved["epoch"] + 1


def test_a_crash_while_writing_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind


def test_a_corrupt_image_stops_with_its_path_or_is_skipped_and_counted(tmp_path, capsys):
    write_imagefolder(tmp_path / "imgs", per_class=6)
    bad = tmp_path / "imgs" / "train" / "dog" / "2.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    argv = [
        "--config", "quickstart", "--data.name", "imagefolder", "--data.root", str(tmp_path / "imgs"),
        "--data.batch_size", "4", "--data.num_workers", "1", "--trainer.max_epochs", "3",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(bad) in line and "Traceback" not in line
    with pytest.warns(UserWarning, match="skipped corrupt image"):
        assert main([*argv, "--data.skip_corrupt_images", "true", "--data.num_workers", "0"]) == 0


def test_a_corrupt_or_foreign_checkpoint_is_named(tmp_path, capsys):
    corrupt = tmp_path / "cut.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 not really")
    assert main([*RUN, "--ckpt_path", str(corrupt)]) == 2
    assert "cut.ckpt: not a readable checkpoint" in capsys.readouterr().err
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    assert main([*RUN, "--ckpt_path", str(foreign)]) == 2
    assert "foreign.ckpt: not a lit-effnet checkpoint" in capsys.readouterr().err


def test_a_checkpoint_of_another_task_names_the_first_tensor_that_does_not_fit(capsys):
    assert main([*RUN, "--trainer.max_epochs", "2"]) == 0
    argv = [*RUN, "--data.name", "digits_rotation", "--ckpt_path", str(LAST)]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "net.classifier.weight is (10," in line and "(4," in line


def test_an_interruption_during_validation_saves_raw_weights_not_ema_ones(tmp_path):
    class CaptureThenInterrupt(L.Callback):
        """Records raw and EMA weights after the last training step, then SIGTERMs inside validation."""

        def on_train_batch_end(self, trainer, pl_module, *args):
            self.raw = {k: v.clone() for k, v in pl_module.state_dict().items()}
            self.ema = {k: v.clone() for k, v in ema._average_model.module.state_dict().items()}

        def on_validation_batch_end(self, trainer, *args):
            raise SIGTERMException()  # while the EMA weights are swapped into the model

    ema, probe = EMA(decay=0.5), CaptureThenInterrupt()
    trainer = fast_trainer(
        tmp_path, max_epochs=3, callbacks=[ema, probe, LastCheckpoint(str(tmp_path))], enable_checkpointing=True
    )
    with pytest.raises(SIGTERMException):
        trainer.fit(tiny_module(), tiny_datamodule())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert not torch.equal(probe.raw["net.stem.conv.weight"], probe.ema["net.stem.conv.weight"])
    assert all(torch.equal(saved["current_model_state"][k], v) for k, v in probe.raw.items())
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in probe.ema.items())


def test_an_interruption_during_training_after_a_validation_keeps_the_live_weights_live(tmp_path):
    class InterruptInSecondEpoch(L.Callback):
        """Records raw and EMA weights after a training step of epoch 1 (after one validation), then stops."""

        def on_train_batch_end(self, trainer, pl_module, *args):
            if trainer.current_epoch == 1:
                self.raw = {k: v.clone() for k, v in pl_module.state_dict().items()}
                self.ema = {k: v.clone() for k, v in ema._average_model.module.state_dict().items()}
                raise SIGTERMException()

    ema, probe = EMA(decay=0.5), InterruptInSecondEpoch()
    trainer = fast_trainer(
        tmp_path, max_epochs=3, callbacks=[ema, probe, LastCheckpoint(str(tmp_path))], enable_checkpointing=True
    )
    module = tiny_module()
    with pytest.raises(SIGTERMException):
        trainer.fit(module, tiny_datamodule())
    assert all(torch.equal(module.state_dict()[k], v) for k, v in probe.raw.items())  # nothing swapped in
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert all(torch.equal(saved["current_model_state"][k], v) for k, v in probe.raw.items())
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in probe.ema.items())


@pytest.fixture
def sigterm_reaches_lightning_alone():
    """A test's own SIGTERM must stop only the Trainer: Lightning also calls the handler it found installed, and
    a test runner's handler (mutmut's fork server exits 0 on SIGTERM) would end the test session as a pass."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


class SigtermAt(L.Callback):
    """Sends this process a real SIGTERM after one training batch; Lightning stops after that batch."""

    def __init__(self, epoch: int, batch: int):
        self.at = (epoch, batch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_sigterm_in_the_middle_of_an_epoch_resumes_with_the_stages_dropout_mixup_and_randaugment(
    tmp_path, sigterm_reaches_lightning_alone
):
    # 2 stages over 4 epochs of 4 batches: stage 1 (24 px, dropout 0.3, mixup 0.4, RandAugment 6) from epoch 2.
    # SIGTERM after batch 1 of epoch 2: the resumed run starts inside stage 1, where a fresh model has dropout
    # 0.2 (V2-B0's), no mixup, and a first loader that would be built for epoch 0 (16 px, no RandAugment).
    stages = dict(
        num_stages=2, image_size=(16, 24), dropout=(0.0, 0.3), mixup_alpha=(0.0, 0.4), randaug_magnitude=(0.0, 6.0)
    )
    checkpoint = LastCheckpoint(str(tmp_path / "ckpt"))
    trainer = fast_trainer(
        tmp_path, max_epochs=4, limit_train_batches=4, enable_checkpointing=True,
        callbacks=[ProgressiveLearning(**stages), SigtermAt(epoch=2, batch=1), checkpoint],
    )  # fmt: skip
    with pytest.raises(SIGTERMException):
        trainer.fit(tiny_module(), tiny_datamodule())
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert (saved["epoch"], saved["global_step"]) == (2, 10)  # in the middle of epoch 2
    recorder = Recorder()
    trainer = fast_trainer(
        tmp_path, max_epochs=4, limit_train_batches=4, callbacks=[ProgressiveLearning(**stages), recorder]
    )
    trainer.fit(tiny_module(), tiny_datamodule(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert trainer.global_step == 16
    # (epoch, size, dropout, mixup, CutMix, RandAugment) of every batch after the resume, the first one included
    assert recorder.batches == [pytest.approx((epoch, 24, 0.3, 0.4, 0.0, 6.0)) for epoch in (2, 2, 3, 3, 3, 3)]
