"""ProgressiveLearning in real (tiny) runs: what each batch trained with, for ours, timm's and torchvision's nets."""

import contextlib
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import lightning as L
import pytest
import timm
import torch
import torchvision
from torch import nn

from lit_effnet.callbacks import ProgressiveLearning
from lit_effnet.callbacks.checkpoint import LastCheckpoint
from lit_effnet.data.randaugment import RandAugment
from lit_effnet.errors import ConfigError
from lit_effnet.training import LitEfficientNet
from tests.conftest import fast_trainer, tiny_datamodule, tiny_module

STAGES = dict(
    num_stages=4, image_size=(16, 40), dropout=(0.0, 0.3), randaug_magnitude=(0.0, 6.0), mixup_alpha=(0.0, 0.3)
)
SIZES = [16, 24, 32, 40]


def live_dropouts(net: nn.Module) -> set[float]:
    """Every dropout rate the network applies now: its nn.Dropout modules and timm's functional drop_rate."""
    rates = {m.p for m in net.modules() if isinstance(m, nn.Dropout)}
    if hasattr(net, "pretrained_cfg"):
        rates.add(net.drop_rate)
    return rates


def loader_randaug(loader) -> float | set[float]:
    """The RandAugment magnitude of the train loader's augmentation (0: none; a set under random resize)."""
    magnitudes = set()
    for transform in loader.dataset.transforms:
        steps = getattr(transform, "steps", transform)  # the albumentations steps after the crop
        magnitudes |= {t.magnitude for t in steps.transforms if isinstance(t, RandAugment)} or {0.0}
    return magnitudes.pop() if len(magnitudes) == 1 else magnitudes


class Recorder(L.Callback):
    """What each training batch really saw: input size, the network's live dropout, the loss's mixup and CutMix,
    the RandAugment magnitude of the loader that built it."""

    def __init__(self):
        self.batches, self.builds = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.builds.append((trainer.current_epoch, trainer.datamodule.train_loader_builds))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images, _ = batch
        dropout = live_dropouts(pl_module.net)
        mixing = pl_module.mixing
        self.batches.append(
            (trainer.current_epoch, images.shape[-1], dropout.pop() if len(dropout) == 1 else dropout,
             mixing.mixup_alpha, mixing.cutmix_alpha, loader_randaug(trainer.train_dataloader))
        )  # fmt: skip

    def per_epoch(self, column):
        values = {}
        for row in self.batches:
            values.setdefault(row[0], []).append(row[column])
        return {epoch: v[0] if len(set(map(str, v))) == 1 else v for epoch, v in values.items()}


def run(tmp_path, max_epochs, module=None, datamodule=None, stages=STAGES, **trainer_kwargs):
    recorder = Recorder()
    ckpt_path = trainer_kwargs.pop("ckpt_path", None)
    trainer = fast_trainer(
        tmp_path,
        max_epochs=max_epochs,
        callbacks=[ProgressiveLearning(**stages), recorder, *trainer_kwargs.pop("callbacks", [])],
        **trainer_kwargs,
    )
    trainer.fit(module or tiny_module(), datamodule or tiny_datamodule(), ckpt_path=ckpt_path)
    return trainer, recorder


def test_each_stage_trains_at_its_size_from_its_first_batch_and_loaders_are_rebuilt_only_then(tmp_path):
    _, recorder = run(tmp_path, max_epochs=8)
    # Two epochs per stage; the size changes exactly at epochs 2, 4, 6 (not one epoch late).
    assert recorder.per_epoch(1) == {e: SIZES[e // 2] for e in range(8)}
    assert recorder.builds == [(e, e // 2 + 1) for e in range(8)]  # a new loader at 0, 2, 4 and 6 only


def test_dropout_mixup_and_randaugment_change_per_stage_on_the_live_model_and_loader(tmp_path):
    _, recorder = run(tmp_path, max_epochs=4)
    assert recorder.per_epoch(2) == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3})
    assert recorder.per_epoch(3) == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3})
    assert recorder.per_epoch(5) == pytest.approx({0: 0.0, 1: 2.0, 2: 4.0, 3: 6.0})


def test_stage_values_are_logged_under_their_names_with_the_size_the_loader_built(tmp_path):
    trainer, _ = run(tmp_path, max_epochs=4, stages={**STAGES, "cutmix_alpha": (0.0, 0.6)})
    metrics = trainer.callback_metrics
    assert metrics["train/stage"] == 3 and metrics["train/image_size"] == 40
    assert metrics["train/dropout"] == pytest.approx(0.3) and metrics["train/randaug_magnitude"] == pytest.approx(6.0)
    assert metrics["train/mixup_alpha"] == pytest.approx(0.3) and metrics["train/cutmix_alpha"] == pytest.approx(0.6)
    # Once per epoch under the plain name (a curve over epochs), not as train/stage_step and train/stage_epoch.
    for knob in ("stage", "image_size", "dropout", "randaug_magnitude", "mixup_alpha", "cutmix_alpha"):
        assert f"train/{knob}" in trainer.logged_metrics
        assert not {f"train/{knob}_step", f"train/{knob}_epoch"} & set(trainer.logged_metrics)


class CountsApplyStage(L.Callback):
    """The batches at which the progressive callback handed the module new stage values."""

    def __init__(self):
        self.applied_at = []

    def setup(self, trainer, pl_module, stage):
        apply_stage = pl_module.apply_stage

        def counted(values):
            self.applied_at.append((trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.ready))
            return apply_stage(values)

        pl_module.apply_stage = counted


def test_stage_values_reach_the_module_once_per_stage_at_its_first_batch(tmp_path):
    counter = CountsApplyStage()
    run(tmp_path, max_epochs=4, callbacks=[counter])
    assert counter.applied_at == [(0, 1), (1, 1), (2, 1), (3, 1)]  # epoch, batch (1-based, as Lightning counts)


class PlainClassifier(L.LightningModule):
    """A LightningModule of someone else's: no apply_stage, no check_scheduled, no progressive_ranges."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
        self.sizes = []

    def training_step(self, batch, batch_idx):
        images, labels = batch
        self.sizes.append(images.shape[-1])
        return nn.functional.cross_entropy(self.net(images.float()), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_a_data_only_schedule_drives_a_plain_lightning_module_without_stage_hooks(tmp_path):
    module = PlainClassifier()
    stages = dict(num_stages=2, image_size=(16, 32), dropout=None, randaug_magnitude=None, mixup_alpha=None)
    trainer = fast_trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[ProgressiveLearning(**stages)])
    trainer.fit(module, tiny_datamodule())
    assert module.sizes == [16, 16, 32, 32]


def test_cutmix_alpha_is_scheduled_like_mixup_from_the_first_batch_of_its_stage(tmp_path):
    _, recorder = run(tmp_path, max_epochs=4, stages={**STAGES, "mixup_alpha": None, "cutmix_alpha": (0.0, 0.9)})
    assert recorder.per_epoch(4) == pytest.approx({0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9})
    assert recorder.per_epoch(3) == {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}  # mixup not scheduled: off


@contextlib.contextmanager
def console_lines() -> Iterator[list[str]]:
    """The messages Lightning's logger prints to the console while the block runs."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def test_each_stage_is_announced_once_on_the_console_with_the_validation_note(tmp_path):
    with console_lines() as lines:
        run(tmp_path, max_epochs=8)
    stages = [line for line in lines if line.startswith("progressive learning: stage")]
    assert [line.split(":")[1] for line in stages] == [f" stage {i}/4 from epoch {2 * i - 2}" for i in (1, 2, 3, 4)]
    note = (
        "; val/acc1 is measured at the eval size with BN statistics of the train size, so it stays low until the"
        " last stage: expected, not a bug"
    )
    assert stages[0].startswith("progressive learning: stage 1/4 from epoch 0: image_size 16, dropout 0, ")
    assert all(line.endswith(note) for line in stages[:3])
    # the last stage: STAGES' targets and the network's own CutMix range (0 -> 0), and no note
    assert stages[3] == (
        "progressive learning: stage 4/4 from epoch 6: image_size 40, dropout 0.3, randaug_magnitude 6, mixup_alpha 0.3"
        ", cutmix_alpha 0"
    )


class StopAfterEpoch(L.Callback):
    def __init__(self, epoch):
        self.epoch, self.stopped = epoch, False

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop, self.stopped = True, True


def test_resume_in_the_middle_of_a_stage_continues_the_same_schedule(tmp_path):
    # First run: 8-epoch schedule stopped after epoch 2, i.e. in the middle of stage 1 (epochs 2-3).
    stopper = StopAfterEpoch(2)
    run(tmp_path, max_epochs=8, callbacks=[LastCheckpoint(str(tmp_path / "ckpt")), stopper], enable_checkpointing=True)
    assert stopper.stopped
    # Second run: a fresh trainer, datamodule and callbacks resume from last.ckpt.
    _, recorder = run(
        tmp_path,
        max_epochs=8,
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
        callbacks=[LastCheckpoint(str(tmp_path / "ckpt2"))],
        enable_checkpointing=True,
    )
    assert min(recorder.per_epoch(1)) == 3  # continues at epoch 3, still stage 1
    assert recorder.per_epoch(1) == {e: SIZES[e // 2] for e in range(3, 8)}
    assert recorder.per_epoch(2)[3] == pytest.approx(0.1)  # stage 1's dropout right after the resume
    assert recorder.per_epoch(5)[3] == pytest.approx(2.0)  # and its RandAugment
    # After the loader Lightning builds to count the steps (before the checkpoint is restored), new loaders come
    # only at the stage boundaries, epochs 4 and 6.
    builds = [count for _, count in recorder.builds]
    assert [count - builds[0] for count in builds] == [0, 1, 1, 2, 2]


def test_the_callbacks_defaults_are_four_stages_of_the_papers_rule_each_a_block_of_epochs():
    callback = ProgressiveLearning()
    assert callback.settings == dict(
        num_stages=4, rule="paper", mode="stages", image_size=None, dropout=None, drop_path_rate=None,
        randaug_magnitude=None, mixup_alpha=None, cutmix_alpha=None, size_multiple=8,
    )  # fmt: skip
    assert (callback.schedule.num_stages, callback.schedule.mode, callback.seed) == (4, "stages", None)


def test_the_callbacks_settings_are_checked_at_construction_and_reach_the_schedule_as_given():
    with pytest.raises(ConfigError):
        ProgressiveLearning(num_stages=0)
    callback = ProgressiveLearning(num_stages=3, image_size=[128, 300], size_multiple=16)
    assert callback.schedule.image_size == (128, 300)  # a YAML list, held as the pair
    resolved = callback.resolve(None, max_epochs=6)
    assert resolved.image_size == (128, 300) and resolved.size_multiple == 16


def test_random_resize_draws_with_the_callbacks_seed_else_the_seed_everything_one(monkeypatch):
    stages = dict(num_stages=3, mode="random_resize", image_size=(16, 32))
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")  # what L.seed_everything(7) leaves for the callbacks
    assert ProgressiveLearning(**stages, seed=3).resolve(None, max_epochs=2).seed == 3
    assert ProgressiveLearning(**stages).resolve(None, max_epochs=2).seed == 7
    monkeypatch.delenv("PL_GLOBAL_SEED")
    assert ProgressiveLearning(**stages).resolve(None, max_epochs=2).seed == 0


@pytest.mark.parametrize(
    ("num_stages", "max_epochs", "message"),
    [
        (2, None, r"^progressive learning splits trainer\.max_epochs into stages: set trainer\.max_epochs$"),
        (2, 0, r"^progressive learning splits trainer\.max_epochs into stages: set trainer\.max_epochs$"),
        (2, 1, r"^trainer\.max_epochs \(1\) must be at least progressive\.num_stages \(2\)$"),
        (4, 3, r"^trainer\.max_epochs \(3\) must be at least progressive\.num_stages \(4\)$"),
    ],
)
def test_stages_need_max_epochs_and_at_least_one_epoch_each(num_stages, max_epochs, message):
    with pytest.raises(ConfigError, match=message):
        ProgressiveLearning(num_stages=num_stages, image_size=(16, 32)).resolve(None, max_epochs)


def test_one_stage_or_random_resize_runs_without_max_epochs():
    assert ProgressiveLearning(num_stages=1, image_size=(16, 32)).resolve(None, None).num_stages == 1
    random_resize = ProgressiveLearning(num_stages=3, mode="random_resize", image_size=(16, 32))
    assert random_resize.resolve(None, None).mode == "random_resize"


class PlainModule(L.LightningModule):
    """A LightningModule that cannot take stage values (no apply_stage)."""


class PlainData(L.LightningDataModule):
    """A LightningDataModule that cannot follow a schedule."""


@pytest.mark.parametrize(
    ("stages", "module", "message"),
    [
        (dict(dropout=(0.1, 0.3)), PlainModule,
         "progressive.dropout is scheduled, but PlainModule cannot receive it (use "
         "lit_effnet.training.LitEfficientNet, which wraps any classifier)"),
        (dict(image_size=(16, 32)), lambda: tiny_module(model_kwargs={"width": 0.25, "depth": 0.25, "dropout": 0.0}),
         "progressive.image_size is scheduled, but the data (PlainData) cannot receive it (use "
         "lit_effnet.data.ImageDataModule)"),
    ],
)  # fmt: skip
def test_a_module_or_data_that_cannot_follow_the_schedule_stops_at_setup_naming_both(stages, module, message):
    callback = ProgressiveLearning(num_stages=2, **stages)
    trainer = SimpleNamespace(max_epochs=2, datamodule=PlainData(), accumulate_grad_batches=1)
    with pytest.raises(ConfigError) as error:
        callback.setup(trainer, module(), "fit")
    assert str(error.value) == message


def test_too_few_epochs_for_the_stages_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"progressive\.num_stages"):
        run(tmp_path, max_epochs=3)


def test_unscheduled_values_leave_the_model_and_data_settings_alone(tmp_path):
    datamodule = tiny_datamodule(image_size=24, randaug_magnitude=3.0)
    off = ProgressiveLearning(num_stages=1)  # no ranges given, and a V1 network has none: nothing scheduled
    recorder = Recorder()
    trainer = fast_trainer(tmp_path, max_epochs=2, callbacks=[off, recorder])
    v1 = tiny_module(name="efficientnet_b0", model_kwargs={"width": 0.25, "depth": 0.25, "dropout": 0.15})
    trainer.fit(v1, datamodule)
    assert recorder.per_epoch(1) == {0: 24, 1: 24} and recorder.per_epoch(2) == {0: 0.15, 1: 0.15}
    assert datamodule.train_stages(1) == ((24, 3.0),)
    assert trainer.callback_metrics["train/image_size"] == 24 and "train/dropout" not in trainer.callback_metrics


def test_the_models_table_6_ranges_fill_the_knobs_left_unset(tmp_path):
    # A V2-S network (narrowed, same spec row) gets Table 6's dropout 0.1 -> 0.3 without being told.
    module = LitEfficientNet("efficientnetv2_s", 10, model_kwargs={"width": 0.1, "depth": 0.1}, lr=1e-3)
    _, recorder = run(tmp_path, max_epochs=2, module=module, stages=dict(num_stages=2, image_size=(16, 24)))
    assert recorder.per_epoch(2) == pytest.approx({0: 0.1, 1: 0.3})
    assert recorder.per_epoch(3) == {0: 0.0, 1: 0.0}  # Table 6: mixup 0 -> 0 for V2-S


@pytest.mark.parametrize(
    "net",
    [
        pytest.param(lambda: timm.create_model("resnet18", num_classes=10), id="timm-resnet18"),
        pytest.param(lambda: torchvision.models.mobilenet_v3_small(num_classes=10), id="torchvision-mobilenet"),
    ],
)
def test_progressive_learning_drives_any_timm_or_torchvision_classifier(tmp_path, net):
    module = LitEfficientNet(net=net(), num_classes=10, lr=1e-3, optimizer="adamw", warmup_epochs=0)
    stages = dict(num_stages=2, image_size=(24, 32), dropout=(0.1, 0.5))
    _, recorder = run(tmp_path, max_epochs=2, module=module, stages=stages)
    assert recorder.per_epoch(1) == {0: 24, 1: 32}
    assert recorder.per_epoch(2) == pytest.approx({0: 0.1, 1: 0.5})
    assert live_dropouts(module.net) == {0.5}  # the live modules hold the last stage's rate


@pytest.mark.parametrize(
    ("net", "stages", "message"),
    [
        (lambda: timm.create_model("resnet18", num_classes=10), dict(drop_path_rate=(0.0, 0.2)),
         r"progressive\.drop_path_rate is scheduled, but ResNet has no drop-path .*drop_path_rate > 0"),
        (lambda: torchvision.models.resnet18(num_classes=10), dict(dropout=(0.1, 0.3)),
         r"progressive\.dropout is scheduled, but ResNet has no classifier dropout"),
    ],
)  # fmt: skip
def test_a_scheduled_knob_without_a_receiver_stops_at_setup_naming_knob_and_network(tmp_path, net, stages, message):
    module = LitEfficientNet(net=net(), num_classes=10, lr=1e-3)
    with pytest.raises(ConfigError, match=message):
        run(tmp_path, max_epochs=2, module=module, stages=dict(num_stages=2, image_size=(24, 32), **stages))


@pytest.mark.parametrize(
    ("module", "datamodule", "culprit"),
    [
        (lambda: tiny_module(), lambda: tiny_datamodule(image_size=32), "data.image_size"),
        (lambda: tiny_module(), lambda: tiny_datamodule(randaug_magnitude=2.0), "data.randaug_magnitude"),
        (lambda: tiny_module(mixup_alpha=0.2), lambda: tiny_datamodule(), "model.mixup_alpha"),
        (lambda: tiny_module(model_kwargs={"width": 0.25, "depth": 0.25, "dropout": 0.4}), lambda: tiny_datamodule(),
         "model.model_kwargs.dropout"),
    ],
)  # fmt: skip
def test_a_knob_set_both_in_the_schedule_and_elsewhere_stops_naming_both(tmp_path, module, datamodule, culprit):
    with pytest.raises(ConfigError, match=rf"progressive\.\w+ is scheduled and {culprit} is set"):
        run(tmp_path, max_epochs=4, module=module(), datamodule=datamodule())


def test_random_resize_draws_a_stage_per_step_with_its_regularization(tmp_path):
    stages = dict(num_stages=3, mode="random_resize", image_size=(16, 32), dropout=(0.0, 0.2), mixup_alpha=(0.0, 0.4))
    with console_lines() as lines:
        _, recorder = run(tmp_path, max_epochs=2, stages=stages, limit_train_batches=8)
    announced = [line for line in lines if line.startswith("progressive learning")]
    assert announced == ["progressive learning: random resize among 16, 24, 32 px, regularization following the size"]
    sizes = [row[1] for row in recorder.batches]
    assert set(sizes) == {16, 24, 32} and len(sizes) == 16  # all three sizes drawn over 16 steps
    by_size = {16: (0.0, 0.0), 24: (0.1, 0.2), 32: (0.2, 0.4)}  # (dropout, mixup) of the stage of that size
    assert all(row[2:4] == pytest.approx(by_size[row[1]]) for row in recorder.batches)
    _, again = run(tmp_path, max_epochs=2, stages=stages, limit_train_batches=8)
    assert [row[1] for row in again.batches] == sizes  # a pure function of (seed, step)


def test_progressive_learning_runs_with_compile_and_channels_last(tmp_path):
    module = tiny_module(compile=True, compile_backend="eager")
    trainer, recorder = run(tmp_path, max_epochs=4, module=module)
    assert recorder.per_epoch(1) == {e: SIZES[e] for e in range(4)}
    assert torch.isfinite(trainer.callback_metrics["train/loss_epoch"])
