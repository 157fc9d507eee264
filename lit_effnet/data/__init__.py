"""Datasets in torchvision's on-disk layouts, albumentations pipelines and the stage-aware DataModule."""

from lit_effnet.data.datamodule import ImageDataModule
from lit_effnet.data.datasets import DATASETS, load_splits
from lit_effnet.data.randaugment import RandAugment

__all__ = ["DATASETS", "ImageDataModule", "RandAugment", "load_splits"]
