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


def parse_options(name: str, text: str | None) -> dict[str, Any]:
    """'alpha=0.01,schedule=false' -> {'alpha': 0.01, 'schedule': False}, typed by the component's defaults.

    A list-valued option takes its items separated by ';': 'multipliers=0.5;1;2'.
    """
    if not text:
        return {}
    parameters = inspect.signature(LOSS_COMPONENTS.get(name)).parameters
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in parameters:
            raise ConfigError(
                f"bad option {item!r} for {name!r}: use key=value with keys from {', '.join(parameters)}"
            )
        options[key] = _typed(raw.strip(), parameters[key].default, f"{name} option {key}")
    return options


def _typed(raw: str, default: Any, what: str) -> Any:
    try:
        if isinstance(default, (tuple, list)):
            return tuple(float(item) for item in raw.split(";") if item.strip())
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{what}: cannot read {raw!r} as a {type(default).__name__}") from None
    return raw


def components_from_args(args) -> list[LossComponent]:
    """Loss components named by recipe arguments: --method (AdaptationArguments) and --regularizer."""
    built = []
    method = getattr(args, "method", None)
    if method and method != "source_only":
        if method in LOSS_COMPONENTS and not LOSS_COMPONENTS.get(method).needs_target:
            raise ConfigError(f"{method!r} is a regularizer, not an adaptation method; pass it as --regularizer {method}")
        options = parse_options(method, args.method_options)
        built.append(build_component(method, weight=args.method_weight, warmup=args.method_warmup, **options))
    for name in filter(None, (part.strip() for part in (args.regularizer or "").split(","))):
        if LOSS_COMPONENTS.get(name).needs_target:
            raise ConfigError(f"{name!r} needs target-domain data; use recipes/domain_adapt.py --method {name}")
        built.append(build_component(name, weight=args.regularizer_weight, **parse_options(name, args.regularizer_options)))
    return built


__all__ = [
    "LOSS_COMPONENTS", "AdaptationContext", "LossComponent", "build_component", "components_from_args", "parse_options", "float32_math", "warmup_factor",
    "GradientReversal", "grad_reverse", "dann_coefficient",
    "BSSLoss", "CDANLoss", "CORALLoss", "DANNLoss", "InstanceWeighting", "L2SP", "MCCLoss", "MMDLoss",
    "mmd", "coral", "minimum_class_confusion", "batch_spectral_shrinkage", "clipped_unit_mean_weights",
]
