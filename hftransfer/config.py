"""Recipe argument parsing: dataclass defaults < recipe defaults < YAML --config < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys
from pathlib import Path

from .errors import ConfigError


def parse_recipe_args(dataclass_types: tuple, recipe_defaults: dict, argv: list[str] | None = None,
                      family_defaults: dict[str, dict] | None = None):
    """Parse, then check every value (hftransfer.validation): bad input is one ConfigError line, never a usage block.

    ``family_defaults`` maps a model family ('image', 'text', and 'timm' within 'image') to defaults that apply when
    the chosen model is of that family (a recipe that takes either, like domain_adapt.py: a text encoder does not train
    at a CNN's learning rate; only a timm model takes an --image_size); the families are read from the model's config
    before anything heavy is loaded, and the more specific one wins."""
    from .validation import validate_recipe_args

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _recipe_parser(dataclass_types)
    from_file = _config_file_values(argv, dataclass_types, parser)
    defaults = dict(recipe_defaults)
    if family_defaults:
        for family in _model_families(argv, {**recipe_defaults, **from_file}):
            defaults.update(family_defaults.get(family, {}))
    parser.set_defaults(**{**defaults, **from_file})
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as error:  # TrainingArguments.__post_init__ rejects some combinations with ValueError
        raise ConfigError(_value_error_line(error)) from None
    if remaining:
        raise ConfigError(f"unrecognised arguments: {' '.join(remaining)}; see --help")
    parsed = tuple(parsed[: len(dataclass_types)])  # drop the namespace holding --config
    validate_recipe_args(*parsed)
    return parsed


def _model_families(argv: list[str], defaults: dict) -> list[str]:
    from .models.loading import model_families

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default=defaults.get("model"))
    pre.add_argument("--trust_remote_code", default=str(defaults.get("trust_remote_code", False)))
    pre.error = _raise_config_error
    known, _ = pre.parse_known_args(argv)
    return model_families(known.model, str(known.trust_remote_code).lower() in ("true", "1", "yes"))


def _recipe_parser(dataclass_types: tuple):
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types, allow_abbrev=False)  # a typo must not pass as an abbreviation
    parser.add_argument("--config", help="YAML file of arguments; command-line flags override it.")
    parser.error = _raise_config_error  # argparse would print its whole usage block and exit
    return parser


def _config_file_values(argv: list[str], dataclass_types: tuple, parser) -> dict:
    """The values of the --config YAML file, if one is given, checked as argparse checks flags."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.error = _raise_config_error
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return {}
    valid = {f.name for t in dataclass_types for f in dataclasses.fields(t) if f.init}
    values = load_yaml_config(known.config, valid)
    check_yaml_values(values, parser, known.config)
    return values


def _raise_config_error(message: str):
    """argparse's `error` hook: one line naming the flag and the fix instead of a usage block."""
    from .validation import suggest

    flag_and_detail = re.match(r"argument (--[\w-]+)(?:/--[\w-]+)*: (.*)", message)
    if not flag_and_detail:
        raise ConfigError(f"{message}; see --help")
    flag, detail = flag_and_detail.groups()
    choice = re.match(r"invalid choice: '(.*)' \(choose from (.*)\)$", detail)
    if choice:
        value, listed = choice.groups()
        choices = re.findall(r"'([^']*)'", listed)
        raise ConfigError(f"unknown {flag} {value!r}{suggest(value, choices)}")
    raise ConfigError(f"{flag}: {detail.rstrip('.')}; see --help for the values it takes")


def _value_error_line(error: ValueError) -> str:
    text = " ".join(str(error).split())
    strategies = re.search(r"Evaluation strategy: \w+\.(\w+).*Save strategy: \w+\.(\w+)", text)
    if "load_best_model_at_end requires" in text and strategies:
        evaluation, save = (s.lower() for s in strategies.groups())
        if evaluation == "no":
            return ("--eval_strategy no leaves nothing to pick the best model on (--load_best_model_at_end is on by "
                    "default); evaluate with --eval_strategy epoch, or pass --load_best_model_at_end false")
        return (f"--load_best_model_at_end (on by default) needs --save_strategy to match --eval_strategy, got "
                f"eval {evaluation!r} and save {save!r}; make them match, or pass --load_best_model_at_end false")
    return f"{text}; see --help"


def check_yaml_values(values: dict, parser, path: str) -> None:
    """YAML values bypass argparse's checks: a list where one value goes (or the reverse) and bad choices fail here."""
    actions = {action.dest: action for action in parser._actions}
    for key, value in values.items():
        action = actions.get(key)
        if action is None or value is None:
            continue
        takes_list = action.nargs in ("+", "*")
        if takes_list and not isinstance(value, list):
            raise ConfigError(f"config key {key!r} in {path} takes a list, got {value!r}; write {key}: [{value}]")
        if not takes_list and isinstance(value, (list, dict)):
            raise ConfigError(f"config key {key!r} in {path} takes one value, got {value!r}; write a single value")
        for item in value if takes_list else [value]:
            _check_yaml_item(key, item, action, path)


def _check_yaml_item(key: str, item, action, path: str) -> None:
    from .validation import suggest

    if action.type in (int, float) and not isinstance(item, str):  # strings are converted (and checked) by argparse
        number = isinstance(item, int if action.type is int else (int, float)) and not isinstance(item, bool)
        if not number:
            wanted = "an integer" if action.type is int else "a number"
            raise ConfigError(f"config key {key!r} in {path} takes {wanted}, got {item!r}; fix the value")
    if action.choices is not None and isinstance(item, str) and item not in action.choices:
        raise ConfigError(f"config key {key!r} in {path} has unknown value {item!r}{suggest(item, action.choices)}")


def load_yaml_config(path: str, valid_keys: set[str]) -> dict:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist; pass an existing YAML file to --config")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0]
        raise ConfigError(f"config file {path!r} is not valid YAML: {first_line}; fix the syntax") from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"config file {path!r} is not a mapping of argument names to values; write one `name: value` per line"
        )
    for key in values:
        if key not in valid_keys:
            close = difflib.get_close_matches(str(key), sorted(valid_keys), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; see --help for valid keys"
            raise ConfigError(f"unknown config key {key!r} in {path}{hint}")
    return values
