"""Domain-adaptation and regularizer loss components, looked up by name.

``build_component("mmd", weight=0.5)`` -> a :class:`LossComponent`; call ``setup(model, feature_dim,
num_classes)`` once, then ``component(AdaptationContext(...))`` every step for its weighted term.
"""

from __future__ import annotations

import inspect
from typing import Any

from hftransfer.errors import ConfigError

from .base import LOSS_COMPONENTS, AdaptationContext, LossComponent, float32_math, warmup_factor
from .grl import GradientReversal, dann_coefficient, grad_reverse

# one registration per module; importing them fills LOSS_COMPONENTS
from .bss import BSSLoss, batch_spectral_shrinkage  # noqa: E402
from .cdan import CDANLoss  # noqa: E402
from .coral import CORALLoss, coral  # noqa: E402
from .dann import DANNLoss  # noqa: E402
from .instance_weighting import InstanceWeighting, clipped_unit_mean_weights  # noqa: E402
from .l2sp import L2SP  # noqa: E402
from .mcc import MCCLoss, minimum_class_confusion  # noqa: E402
from .mmd import MMDLoss, mmd  # noqa: E402


def build_component(name: str, **kwargs: Any) -> LossComponent:
    """Instantiate the registered component ``name`` with its options; bad options raise ConfigError."""
    cls = LOSS_COMPONENTS.get(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError:
        options = [p for p in inspect.signature(cls).parameters]
        unknown = sorted(set(kwargs) - set(options))
        raise ConfigError(
            f"loss component {name!r} got unknown option(s) {', '.join(unknown) or '?'}; its options are: {', '.join(options)}"
        ) from None
    return cls(**kwargs)


__all__ = [
    "LOSS_COMPONENTS", "AdaptationContext", "LossComponent", "build_component", "float32_math", "warmup_factor",
    "GradientReversal", "grad_reverse", "dann_coefficient",
    "BSSLoss", "CDANLoss", "CORALLoss", "DANNLoss", "InstanceWeighting", "L2SP", "MCCLoss", "MMDLoss",
    "mmd", "coral", "minimum_class_confusion", "batch_spectral_shrinkage", "clipped_unit_mean_weights",
]
