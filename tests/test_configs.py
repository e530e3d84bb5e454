"""Every strategy and loss component through its config class: the recipe flags / method options are exactly its
fields, a value set there reaches the object and its record (card), and a wrong option is one ConfigError line."""

from __future__ import annotations

import dataclasses

import pytest

from hftransfer.adaptation import LOSS_COMPONENTS, ComponentConfig, build_component, parse_options
from hftransfer.arguments import StrategyArguments
from hftransfer.errors import ConfigError
from hftransfer.strategies import STRATEGIES, StrategyConfig, build_strategy


def changed_value(value, annotation):
    """A valid value different from the default, by the field's type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if isinstance(value, tuple):
        return value[:1]
    return None


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_option_is_a_recipe_flag_that_reaches_the_strategy_and_its_record(name):
    config_class = STRATEGIES.get(name).config_class
    assert dataclasses.is_dataclass(config_class) and issubclass(config_class, StrategyConfig)
    flags = {f.name: f for f in dataclasses.fields(StrategyArguments)}
    for option in dataclasses.fields(config_class):
        assert option.name in flags and flags[option.name].metadata.get("help"), option.name
    built = build_strategy(StrategyArguments(strategy=name))
    assert set(built.describe()) - {"contrastive_phase"} == {"name"} | {f.name for f in dataclasses.fields(config_class)}
    own = [f for f in dataclasses.fields(config_class) if f not in dataclasses.fields(StrategyConfig)]
    for option in own:  # each of the strategy's own options, set from the command line, reaches it and its record
        new = changed_value(getattr(built.config, option.name), option.type)
        if new is None:
            continue
        strategy = build_strategy(StrategyArguments(strategy=name, **{option.name: new}))
        assert getattr(strategy, option.name) == new and strategy.describe()[option.name] == new


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_an_option_of_another_strategy_is_refused_before_anything_loads(name):
    others = {f.name: owner for owner in STRATEGIES.names() for f in dataclasses.fields(STRATEGIES.get(owner).config_class)
              if f.name not in {g.name for g in dataclasses.fields(STRATEGIES.get(name).config_class)}}
    for option, owner in others.items():
        default = next(f.default for f in dataclasses.fields(StrategyArguments) if f.name == option)
        value = changed_value(default, None)
        if value is None:
            value = "x"
        with pytest.raises(ConfigError, match=f"--{option} is an option of --strategy .*{owner}.*, not of {name}"):
            build_strategy(StrategyArguments(strategy=name, **{option: value}))
    with pytest.raises(ConfigError, match=f"--strategy {name} has no option 'lora_rank'"):
        STRATEGIES.get(name)(lora_rank=4)


@pytest.mark.parametrize("name", LOSS_COMPONENTS.names())
def test_every_component_option_parses_from_text_reaches_the_component_and_its_card_record(name):
    config_class = LOSS_COMPONENTS.get(name).config_class
    assert dataclasses.is_dataclass(config_class) and issubclass(config_class, ComponentConfig)
    defaults = config_class()
    reserved = {"weight": "--method_weight", "warmup": "--method_warmup"}
    for option in dataclasses.fields(config_class):
        if option.name in reserved:
            continue
        value = changed_value(getattr(defaults, option.name), option.type)
        if value is None:  # None-able options (CDAN's randomized, the reversal strength): any value of their type
            value = True if option.name == "randomized" else 0.5
        text = ";".join(map(str, value)) if isinstance(value, tuple) else str(value).lower()
        options = parse_options(name, f"{option.name}={text}", reserved=reserved)
        assert options == {option.name: value}, option.name
        component = build_component(name, weight=2.0, **options)
        record = component.describe()
        assert record["name"] == name and record["weight"] == 2.0 and record[option.name] == value
        assert set(record) - {"name", "confused_loss"} == {f.name for f in dataclasses.fields(config_class)}
    with pytest.raises(ConfigError, match=f"bad option 'nonsense=1' for {name}: no option 'nonsense'"):
        parse_options(name, "nonsense=1")
    with pytest.raises(ConfigError, match=f"loss component {name!r} got unknown option"):
        build_component(name, nonsense=1)
    with pytest.raises(ConfigError, match=f"{name}: weight must be >= 0"):
        build_component(name, weight=-1.0)


def test_a_regularizer_without_a_weight_flag_keeps_its_own_default_weight():
    """`--regularizer bss` used to get --regularizer_weight's 1.0, 1000x the paper's eta (BSSConfig: 0.001)."""
    from hftransfer.adaptation import components_from_args
    from hftransfer.arguments import RegularizerArguments

    built = components_from_args(RegularizerArguments(regularizer="l2sp,bss"))
    assert {c.name: c.weight for c in built} == {"l2sp": 1.0, "bss": 0.001}
    built = components_from_args(RegularizerArguments(regularizer="l2sp,bss", regularizer_weight=0.5))
    assert {c.name: c.weight for c in built} == {"l2sp": 0.5, "bss": 0.5}


def test_a_method_without_a_weight_flag_keeps_its_own_default_weight():
    """MCC's default weight is 0.3 (at TLlib's 1 the image pairs' target predictions turned confident and wrong:
    README, MCC); before, --method_weight's 1.0 replaced every method's own."""
    from hftransfer.adaptation import components_from_args
    from hftransfer.recipes import load_recipe

    recipe = load_recipe("domain_adapt")
    weights = {method: components_from_args(recipe.parse(["--method", method])[2])[0].weight
               for method in ("mcc", "dann", "cdan")}
    assert weights == {"mcc": 0.3, "dann": 1.0, "cdan": 1.0}
    (mcc,) = components_from_args(recipe.parse(["--method", "mcc", "--method_weight", "1"])[2])
    assert mcc.weight == 1.0 and mcc.describe()["weight"] == 1.0
