"""Argument precedence and the shipped YAML configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO

from hftransfer.arguments import ImageDataArguments, ModelArguments, StrategyArguments, TextDataArguments
from hftransfer.config import parse_recipe_args
from hftransfer.errors import ConfigError
from hftransfer.training_args import TransferTrainingArguments

IMAGE = (ModelArguments, ImageDataArguments, StrategyArguments, TransferTrainingArguments)
TEXT = (ModelArguments, TextDataArguments, StrategyArguments, TransferTrainingArguments)


def test_precedence_defaults_then_recipe_then_yaml_then_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 0.5\nnum_train_epochs: 7\n")
    model, data, strategy, training = parse_recipe_args(
        IMAGE, {"learning_rate": 0.1, "num_train_epochs": 2, "image_size": 48},
        ["--config", str(config), "--num_train_epochs", "9", "--output_dir", str(tmp_path / "o")],
    )
    assert (training.learning_rate, training.num_train_epochs, data.image_size) == (0.5, 9, 48)
    assert training.eval_strategy == "epoch" and training.logging_nan_inf_filter is False


def test_unrecognised_flag_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unrecognised arguments: --learning_rat"):
        parse_recipe_args(IMAGE, {}, ["--learning_rat", "1", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("path", sorted((REPO / "recipes" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse_and_name_their_command(path: Path):
    first_line = path.read_text().splitlines()[0]
    recipe = "image_cls" if "image_cls.py" in first_line else "text_cls"
    assert first_line.startswith("# accelerate launch recipes/") and f"--config recipes/configs/{path.name}" in first_line
    parse_recipe_args(IMAGE if recipe == "image_cls" else TEXT, {}, ["--config", str(path)])


@pytest.mark.parametrize("launcher, flags, bf16", [
    ("bf16", [], True),            # accelerate launch --mixed_precision bf16: on, even where ours would say off (CPU)
    ("no", [], False),
    ("bf16", ["--bf16", "false"], False),  # a recipe flag still wins over the launcher
    (None, [], False),             # no launcher, no flag: ours (off on a CPU-only machine)
])
def test_mixed_precision_follows_the_launcher_unless_a_flag_says_otherwise(launcher, flags, bf16, monkeypatch,
                                                                           tmp_path):
    from transformers import HfArgumentParser

    from hftransfer.training_args import TransferTrainingArguments

    if launcher is None:
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    else:
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    (args,) = HfArgumentParser(TransferTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--use_cpu", "true", *flags])
    assert args.bf16 is bf16


def test_checkpoint_pooling_on_an_image_recipe_is_refused_while_parsing(tmp_path):
    """Refused with the arguments, before a dataset or a checkpoint is read; a text recipe may ask for it."""
    with pytest.raises(ConfigError, match="--pooling checkpoint applies to sentence-transformers text models"):
        parse_recipe_args(IMAGE, {}, ["--pooling", "checkpoint", "--output_dir", str(tmp_path)])
    (model, *_) = parse_recipe_args(TEXT, {}, ["--pooling", "checkpoint", "--output_dir", str(tmp_path)])
    assert model.pooling == "checkpoint"


def test_setfit_on_an_image_recipe_is_refused_while_parsing(tmp_path):
    """SetFit's cosine-0 target for other-class pairs is out of reach of non-negative image features (README, SetFit);
    refused with the arguments, while a text recipe takes it."""
    with pytest.raises(ConfigError, match="--strategy setfit contrasts text embeddings"):
        parse_recipe_args(IMAGE, {}, ["--strategy", "setfit", "--output_dir", str(tmp_path)])
    (_, _, strategy, *_) = parse_recipe_args(TEXT, {}, ["--strategy", "setfit", "--output_dir", str(tmp_path)])
    assert strategy.strategy == "setfit"
