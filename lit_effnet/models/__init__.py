"""Plain-PyTorch EfficientNet and EfficientNetV2 (no Lightning here)."""

from lit_effnet.models.efficientnet import EfficientNet
from lit_effnet.models.factory import compound_spec, create_model, list_models, resolve_spec
from lit_effnet.models.specs import VARIANTS, VariantSpec

__all__ = ["VARIANTS", "EfficientNet", "VariantSpec", "compound_spec", "create_model", "list_models", "resolve_spec"]
