import logging

import lightning as L
import pytest

from lit_effnet.callbacks import ProgressiveLearning
from lit_effnet.callbacks.checkpoint import last_checkpoint
from tests.conftest import fast_trainer, tiny_datamodule, tiny_module

STAGES = dict(
    num_stages=4, image_size=(16, 40), dropout=(0.0, 0.3), randaug_magnitude=(0.0, 6.0), mixup_alpha=(0.0, 0.3)
)
SIZES = [16, 24, 32, 40]


class Recorder(L.Callback):
    """What each training batch really saw: input size, live dropout, live mixup alpha."""

    def __init__(self):
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images, _ = batch
        mixup = pl_module.mixup.mixup_alpha if pl_module.mixup is not None else 0.0
        self.batches.append((trainer.current_epoch, images.shape[-1], pl_module.net.dropout.p, mixup))

    def per_epoch(self, column):
        values = {}
        for row in self.batches:
            values.setdefault(row[0], set()).add(row[column])
        return {epoch: v.pop() if len(v) == 1 else v for epoch, v in values.items()}


def run(tmp_path, max_epochs, datamodule=None, recorder=None, **trainer_kwargs):
    datamodule = datamodule or tiny_datamodule()
    recorder = recorder or Recorder()
    ckpt_path = trainer_kwargs.pop("ckpt_path", None)
    builds = []
    build = datamodule._build_train_loader
    datamodule._build_train_loader = lambda size, magnitude: (
        builds.append((trainer.current_epoch, size)) or build(size, magnitude)
    )
    trainer = fast_trainer(
        tmp_path,
        max_epochs=max_epochs,
        callbacks=[ProgressiveLearning(**STAGES), recorder, *trainer_kwargs.pop("callbacks", [])],
        **trainer_kwargs,
    )
    trainer.fit(tiny_module(), datamodule, ckpt_path=ckpt_path)
    return trainer, recorder, builds


def test_each_stage_trains_at_its_size_from_its_first_batch_and_loaders_are_rebuilt_only_then(tmp_path):
    _trainer, recorder, builds = run(tmp_path, max_epochs=8)
    # Two epochs per stage; the size changes exactly at epochs 2, 4, 6 (not one epoch late).
    assert recorder.per_epoch(1) == {e: SIZES[e // 2] for e in range(8)}
    assert builds == [(0, 16), (2, 24), (4, 32), (6, 40)]


def test_dropout_and_mixup_change_on_the_live_model_per_stage(tmp_path):
    _, recorder, _ = run(tmp_path, max_epochs=4)
    assert recorder.per_epoch(2) == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3})
    assert recorder.per_epoch(3) == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3})


def test_stage_values_are_logged_under_their_names(tmp_path):
    trainer, _, _ = run(tmp_path, max_epochs=4)
    metrics = trainer.callback_metrics
    assert metrics["train/stage"] == 3 and metrics["train/image_size"] == 40
    assert metrics["train/dropout"] == pytest.approx(0.3) and metrics["train/randaug_magnitude"] == pytest.approx(6.0)
    assert metrics["train/mixup_alpha"] == pytest.approx(0.3)


def test_each_stage_is_announced_once_on_the_console_with_the_validation_note(tmp_path):
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    try:
        run(tmp_path, max_epochs=8)
    finally:
        logger.removeHandler(handler)
    stages = [line for line in lines if line.startswith("progressive learning: stage")]
    assert [line.split(":")[1] for line in stages] == [f" stage {i}/4 from epoch {2 * i - 2}" for i in (1, 2, 3, 4)]
    assert "image_size 16," in stages[0] and "image_size 40," in stages[3]
    assert all("expected, not a bug" in line for line in stages[:3]) and "expected" not in stages[3]


def test_resume_in_the_middle_of_a_stage_continues_the_same_schedule(tmp_path):
    checkpoint = last_checkpoint(str(tmp_path / "ckpt"))
    # First run: 8-epoch schedule stopped after epoch 2, i.e. in the middle of stage 1 (epochs 2-3).
    stopper = StopAfterEpoch(2)
    run(tmp_path, max_epochs=8, callbacks=[checkpoint, stopper], enable_checkpointing=True)
    assert stopper.stopped
    # Second run: a fresh trainer, datamodule and callbacks resume from last.ckpt.
    recorder = Recorder()
    _, recorder, builds = run(
        tmp_path,
        max_epochs=8,
        recorder=recorder,
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
        callbacks=[last_checkpoint(str(tmp_path / "ckpt2"))],
        enable_checkpointing=True,
    )
    assert min(recorder.per_epoch(1)) == 3  # continues at epoch 3, still stage 1
    assert recorder.per_epoch(1) == {e: SIZES[e // 2] for e in range(3, 8)}
    assert recorder.per_epoch(2)[3] == pytest.approx(0.1)  # stage 1's dropout right after the resume
    assert [size for _, size in builds][-3:] == [24, 32, 40]


class StopAfterEpoch(L.Callback):
    def __init__(self, epoch):
        self.epoch, self.stopped = epoch, False

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop, self.stopped = True, True


def test_too_few_epochs_for_the_stages_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"progressive\.num_stages"):
        run(tmp_path, max_epochs=3)


def test_unscheduled_values_leave_the_model_and_data_settings_alone(tmp_path):
    datamodule = tiny_datamodule(image_size=24, randaug_magnitude=3.0)
    recorder = Recorder()
    off = ProgressiveLearning(num_stages=1, image_size=None, dropout=None, randaug_magnitude=None, mixup_alpha=None)
    trainer = fast_trainer(tmp_path, max_epochs=2, callbacks=[off, recorder])
    trainer.fit(tiny_module(model_kwargs={"width": 0.25, "depth": 0.25, "dropout": 0.15}), datamodule)
    assert recorder.per_epoch(1) == {0: 24, 1: 24} and recorder.per_epoch(2) == {0: 0.15, 1: 0.15}
    assert datamodule.train_stage() == (24, 3.0)
    assert trainer.callback_metrics["train/image_size"] == 24 and trainer.callback_metrics["train/dropout"] == 0.15
