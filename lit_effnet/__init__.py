"""lit-effnet: EfficientNet and EfficientNetV2 with PyTorch Lightning."""

from lit_effnet.models import create_model, list_models

__all__ = ["create_model", "list_models"]
__version__ = "0.1.0"
