"""Freezing and learning-rate strategies, one file each, selected by `--strategy NAME`."""

from ..registry import Registry

STRATEGIES = Registry("strategy")

from . import bitfit, full, gradual, linear_probe, llrd, lora, lp_ft, setfit  # noqa: E402,F401  (registrations)
from .base import Phase, Strategy  # noqa: E402


def build_strategy(args) -> Strategy:
    """StrategyArguments -> a Strategy; each strategy takes only the options it understands."""
    import inspect

    cls = STRATEGIES.get(args.strategy)
    accepted = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            accepted |= set(inspect.signature(klass.__init__).parameters) - {"self", "kw", "options"}
    options = {k: v for k, v in vars(args).items() if k in accepted and v is not None}
    return cls(**options)


__all__ = ["STRATEGIES", "Phase", "Strategy", "build_strategy"]
