"""Model loading (Hub id, local folder, built-in alias) and a uniform view of heads, features and layer groups."""

from .builtin import BUILTIN_MODELS
from .groups import LayerGroup, capture_pooled_features, head_module, head_parameter_names, layer_groups
from .loading import LoadedModel, load_classifier, model_modality, resolve_model_source
from .timm_layout import is_timm_wrapper

__all__ = [
    "BUILTIN_MODELS", "LayerGroup", "LoadedModel", "capture_pooled_features", "head_module",
    "head_parameter_names", "is_timm_wrapper", "layer_groups", "load_classifier", "model_modality", "resolve_model_source",
]
