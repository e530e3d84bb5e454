"""Freezing and learning-rate strategies, one file each, selected by `--strategy NAME`."""

from ..registry import Registry

STRATEGIES = Registry("strategy")

from . import bitfit, full, gradual, linear_probe, llrd, lora, lp_ft, setfit  # noqa: E402,F401  (registrations)
from .base import Phase, Strategy, StrategyConfig  # noqa: E402


def build_strategy(args) -> Strategy:
    """StrategyArguments -> a Strategy built from its config class. A flag left at its default is not passed (the
    strategy's own default applies); a flag set for an option the chosen strategy does not have is an error."""
    from dataclasses import fields

    from ..errors import ConfigError

    cls = STRATEGIES.get(args.strategy)
    own = {f.name for f in fields(cls.config_class)}
    set_flags = {f.name for f in fields(args) if f.name != "strategy" and getattr(args, f.name) != f.default}
    foreign = sorted(set_flags - own)
    if foreign:
        owners = [n for n in STRATEGIES.names() if foreign[0] in {f.name for f in fields(STRATEGIES.get(n).config_class)}]
        raise ConfigError(f"--{foreign[0]} is an option of --strategy {' / '.join(owners)}, not of {args.strategy}; "
                          f"drop it or pass --strategy {owners[0]}")
    return cls(cls.config_class(**{name: getattr(args, name) for name in set_flags}))


__all__ = ["STRATEGIES", "Phase", "Strategy", "StrategyConfig", "build_strategy"]
