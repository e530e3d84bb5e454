"""hftransfer: transfer learning on the Hugging Face stack.

Public API (heavy modules load on first use, so `import hftransfer` and the CLI start fast):
    TransferTrainer, TransferTrainingArguments            training
    load_classifier, layer_groups, capture_pooled_features models
    load_classification_data                               data
    STRATEGIES, build_strategy                             freezing / learning-rate strategies
    LOSS_COMPONENTS, build_component                       domain adaptation and regularizers
    SCORES, score_all                                      transferability ranking
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "TransferTrainer": "hftransfer.trainer",
    "TransferTrainingArguments": "hftransfer.training_args",
    "load_classifier": "hftransfer.models",
    "layer_groups": "hftransfer.models",
    "capture_pooled_features": "hftransfer.models",
    "load_classification_data": "hftransfer.data",
    "STRATEGIES": "hftransfer.strategies",
    "build_strategy": "hftransfer.strategies",
    "LOSS_COMPONENTS": "hftransfer.adaptation",
    "build_component": "hftransfer.adaptation",
    "SCORES": "hftransfer.ranking",
    "score_all": "hftransfer.ranking",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hftransfer' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
