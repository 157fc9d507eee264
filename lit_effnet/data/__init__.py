"""Datasets in torchvision's on-disk layouts, albumentations pipelines and the stage-aware DataModule."""

from lit_effnet.data.datamodule import ImageDataModule
from lit_effnet.data.datasets import CorruptImageError, DatasetNotFoundError, load_splits

__all__ = ["CorruptImageError", "DatasetNotFoundError", "ImageDataModule", "load_splits"]
