"""Recipe argument parsing: dataclass defaults < recipe defaults < YAML --config < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from pathlib import Path

from .errors import ConfigError


def parse_recipe_args(dataclass_types: tuple, recipe_defaults: dict, argv: list[str] | None = None):
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(argv)

    valid = {f.name for t in dataclass_types for f in dataclasses.fields(t) if f.init}
    defaults = dict(recipe_defaults)
    if known.config:
        defaults.update(load_yaml_config(known.config, valid))

    parser = HfArgumentParser(dataclass_types, allow_abbrev=False)  # a typo must not pass as an abbreviation
    parser.add_argument("--config", help="YAML file of arguments; command-line flags override it.")
    parser.set_defaults(**defaults)
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        raise ConfigError(f"unrecognised arguments: {' '.join(remaining)}; see --help")
    return tuple(parsed[: len(dataclass_types)])  # drop the namespace holding --config


def load_yaml_config(path: str, valid_keys: set[str]) -> dict:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist; pass an existing YAML file to --config")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path!r} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path!r} must be a mapping of argument names to values")
    for key in values:
        if key not in valid_keys:
            close = difflib.get_close_matches(str(key), sorted(valid_keys), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; see --help for valid keys"
            raise ConfigError(f"unknown config key {key!r} in {path}{hint}")
    return values
