"""Domain-adaptation and regularizer loss components, looked up by name.

``build_component("mmd", weight=0.5)`` -> a :class:`LossComponent`; call ``setup(model, feature_dim,
num_classes)`` once, then ``component(AdaptationContext(...))`` every step for its weighted term.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any

from hftransfer.errors import ConfigError

from .base import LOSS_COMPONENTS, AdaptationContext, ComponentConfig, LossComponent, float32_math, warmup_factor
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


def build_component(name: str, **options: Any) -> LossComponent:
    """Instantiate the registered component ``name`` from its config class; bad options raise ConfigError."""
    return LOSS_COMPONENTS.get(name)(**options)


def parse_options(name: str, text: str | None, reserved: dict[str, str] | None = None) -> dict[str, Any]:
    """'alpha=0.01,schedule=false' -> {'alpha': 0.01, 'schedule': False}, typed by the component's config class.

    A list-valued option takes its items separated by ';': 'multipliers=0.5;1;2'. Booleans read true/false, yes/no,
    1/0; an option that may be None (CDAN's `randomized`: automatic) also reads 'none'. ``reserved`` maps the keys a
    recipe flag sets (weight, warmup) to that flag. Anything else is a one-line ConfigError.
    """
    if not text:
        return {}
    config_class = LOSS_COMPONENTS.get(name).config_class
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    annotations = typing.get_type_hints(config_class)
    reserved = reserved or {}
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad option {item!r} for {name}: not key=value; write it as key=value, "
                              f"e.g. {next(iter(k for k in defaults if k not in reserved), 'key')}=...")
        if key in reserved:
            raise ConfigError(f"bad option {item!r} for {name}: set by {reserved[key]}; pass {reserved[key]} instead")
        if key not in defaults:
            keys = ", ".join(k for k in defaults if k not in reserved)
            raise ConfigError(f"bad option {item!r} for {name}: no option {key!r}; use one of {keys}")
        options[key] = _typed(raw.strip(), annotations.get(key), defaults[key], f"{name} option {key}")
    return options


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _typed(raw: str, annotation: Any, default: Any, what: str) -> Any:
    """``raw`` read as ``annotation`` (or, where there is none, as the type of ``default``)."""
    kinds = []
    if annotation is not None:
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        kinds = list(typing.get_args(annotation)) if union else [annotation]
    elif default is not dataclasses.MISSING and default is not None:
        kinds = [type(default)]
    optional = type(None) in kinds or (annotation is None and default is None)
    kinds = [k for k in kinds if k is not type(None)]
    if optional and raw.lower() == "none":
        return None
    kind = kinds[0] if len(kinds) == 1 else (str if not kinds else None)
    origin = typing.get_origin(kind) or kind
    if kind is bool:
        if raw.lower() in _TRUE or raw.lower() in _FALSE:
            return raw.lower() in _TRUE
        raise ConfigError(f"{what}: cannot read {raw!r} as a boolean; use true or false")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{what}: cannot read {raw!r} as an integer; use a whole number such as 64") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{what}: cannot read {raw!r} as a number; use a number such as 0.5") from None
    if isinstance(origin, type) and origin is not str and issubclass(origin, collections.abc.Sequence):
        try:
            return tuple(float(item) for item in raw.split(";") if item.strip())
        except ValueError:
            raise ConfigError(f"{what}: cannot read {raw!r} as numbers; separate numbers by ';', "
                              "e.g. 0.5;1;2") from None
    if kind is str:
        return raw
    raise ConfigError(f"{what}: this option cannot be set from the command line; build the component in Python")


def method_names(method: str | None) -> list[str]:
    """--method as the components it names: 'cdan,mcc' -> ['cdan', 'mcc']; 'source_only' (or nothing) -> []."""
    names = [part.strip() for part in (method or "").split(",") if part.strip()]
    return [] if names == ["source_only"] else names


def split_method_options(text: str | None, methods: list[str]) -> dict[str, str]:
    """--method_options for each of several methods: 'mcc.temperature=2,randomized=false' gives mcc its temperature
    and each method that has an option `randomized` that one (an option none of them has: a one-line ConfigError)."""
    per_method: dict[str, list[str]] = {method: [] for method in methods}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        prefix, dot, rest = item.partition(".")
        if dot and prefix.strip() in per_method and "=" not in prefix:
            per_method[prefix.strip()].append(rest)
            continue
        key = item.partition("=")[0].strip()
        takers = [m for m in methods if key in {f.name for f in dataclasses.fields(LOSS_COMPONENTS.get(m).config_class)}]
        if not takers and len(methods) > 1:
            raise ConfigError(f"bad option {item!r}: none of {', '.join(methods)} has an option {key!r}; use an "
                              f"option of one of them, prefixed with its name where it is ambiguous (mcc.temperature=2)")
        for method in takers or methods:  # a single method without the option: its parse names the problem
            per_method[method].append(item)
    return {method: ",".join(items) for method, items in per_method.items()}


def components_from_args(args) -> list[LossComponent]:
    """Loss components named by recipe arguments: --method (AdaptationArguments) and --regularizer."""
    built = []
    methods = method_names(getattr(args, "method", None))
    for method in methods:
        if method in LOSS_COMPONENTS and not LOSS_COMPONENTS.get(method).needs_target:
            raise ConfigError(f"{method!r} is a regularizer, not an adaptation method; pass it as --regularizer {method}")
    option_texts = split_method_options(args.method_options, methods) if methods else {}
    for method in methods:
        options = parse_options(method, option_texts[method],
                                reserved={"weight": "--method_weight", "warmup": "--method_warmup"})
        weight = {} if args.method_weight is None else {"weight": args.method_weight}  # else its config's
        built.append(build_component(method, **weight, warmup=args.method_warmup, **options))
    for name in filter(None, (part.strip() for part in (args.regularizer or "").split(","))):
        if LOSS_COMPONENTS.get(name).needs_target:
            raise ConfigError(f"{name!r} needs target-domain data; use recipes/domain_adapt.py --method {name}")
        options = parse_options(name, args.regularizer_options, reserved={"weight": "--regularizer_weight"})
        weight = {} if args.regularizer_weight is None else {"weight": args.regularizer_weight}  # else its config's
        built.append(build_component(name, **weight, **options))
    return built


__all__ = [
    "LOSS_COMPONENTS", "AdaptationContext", "ComponentConfig", "LossComponent", "build_component", "components_from_args", "method_names", "parse_options", "float32_math", "warmup_factor",
    "GradientReversal", "grad_reverse", "dann_coefficient",
    "BSSLoss", "CDANLoss", "CORALLoss", "DANNLoss", "InstanceWeighting", "L2SP", "MCCLoss", "MMDLoss",
    "mmd", "coral", "minimum_class_confusion", "batch_spectral_shrinkage", "clipped_unit_mean_weights",
]
