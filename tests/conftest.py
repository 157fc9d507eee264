import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L
import pytest
import torch

from lit_effnet.data import ImageDataModule
from lit_effnet.training import LitEfficientNet

TINY_NET = {"width": 0.25, "depth": 0.25, "bn_momentum": 0.1, "drop_path_rate": 0.0}


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


def tiny_module(**kwargs) -> LitEfficientNet:
    """A ~100k-parameter EfficientNetV2-B0 for the 10 digit classes."""
    defaults = dict(
        name="efficientnetv2_b0",
        num_classes=10,
        model_kwargs=TINY_NET,
        optimizer="adamw",
        lr=0.005,
        lr_schedule="constant",
        warmup_epochs=0,
    )
    return LitEfficientNet(**{**defaults, **kwargs})


def tiny_datamodule(**kwargs) -> ImageDataModule:
    defaults = dict(name="digits", batch_size=32, num_workers=0, eval_size=32, crop_pct=1.0, hflip=False)
    return ImageDataModule(**{**defaults, **kwargs})


def fast_trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=4,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return L.Trainer(**{**defaults, **kwargs})
