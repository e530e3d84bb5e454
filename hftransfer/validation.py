"""Argument checks that need no data: a bad value becomes one ConfigError line before anything is loaded."""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Callable, Iterable

from .errors import ConfigError

EVAL_METRICS = ("accuracy", "f1", "precision", "recall", "loss")  # what TransferTrainer's evaluation reports

Rule = tuple[str, Callable[[object], bool], str]  # (field, test, what a good value is)


def validate_recipe_args(*parsed) -> None:
    """Check every parsed recipe dataclass; the first bad value raises ConfigError (`problem; fix`)."""
    from transformers import TrainingArguments

    from .arguments import (
        DataArguments, DatasetArguments, ImageDataArguments, MaxLengthArguments, RegularizerArguments,
        StrategyArguments,
    )

    checks = (
        (DatasetArguments, _check_dataset), (DataArguments, _check_data), (ImageDataArguments, _check_image_data),
        (MaxLengthArguments, _check_text_data),
        (StrategyArguments, _check_strategy), (RegularizerArguments, _check_loss_components),
        (TrainingArguments, _check_training),
    )
    for args in parsed:
        for kind, check in checks:
            if isinstance(args, kind):
                check(args)
    _check_streaming(parsed)
    _check_text_only_options(parsed)


def suggest(value: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' for a near miss, else the list of choices."""
    choices = list(choices)
    close = difflib.get_close_matches(str(value), choices, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; choose one of: {', '.join(choices)}" if len(choices) <= 12 else "; see --help for the choices"


def check_choice(flag: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"unknown {flag} {value!r}{suggest(value, choices)}")


# ---- rules -----------------------------------------------------------------------------------------------------


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _optional(test: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or test(value)


def _at_least(low: float) -> Callable[[object], bool]:
    return lambda value: _number(value) and value >= low


def _above(low: float) -> Callable[[object], bool]:
    return lambda value: _number(value) and value > low


def _within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Callable[[object], bool]:
    def test(value) -> bool:
        if not _number(value):
            return False
        return (value > low if low_open else value >= low) and (value < high if high_open else value <= high)

    return test


_FRACTION = _within(0, 1, low_open=True, high_open=True)
_PROBABILITY = _within(0, 1)

DATASET_RULES: tuple[Rule, ...] = (
    ("validation_size", _FRACTION, "a fraction strictly between 0 and 1, e.g. 0.1"),
    ("test_size", _FRACTION, "a fraction strictly between 0 and 1, e.g. 0.2"),
    ("max_train_samples", _optional(_count), "a count of at least 1, or leave it unset to use every example"),
    ("max_eval_samples", _optional(_count), "a count of at least 1, or leave it unset to use every example"),
)
DATA_RULES: tuple[Rule, ...] = (
    ("samples_per_class", _optional(_count), "a count of at least 1, or leave it unset to use every example"),
)
IMAGE_RULES: tuple[Rule, ...] = (
    ("image_size", _optional(_count), "a size in pixels of at least 1, e.g. 64, or leave it unset"),
    ("hflip", _optional(_PROBABILITY), "a probability between 0 and 1"),
    ("crop_scale_min", _within(0, 1, low_open=True), "an area fraction above 0 and at most 1, e.g. 0.5"),
)
TEXT_RULES: tuple[Rule, ...] = (("max_length", _count, "a token count of at least 1, e.g. 128"),)
STRATEGY_RULES: tuple[Rule, ...] = (
    ("head_lr_scale", _at_least(0), "a multiplier of at least 0, e.g. 10"),
    ("layer_decay", _optional(_within(0, 1, low_open=True)), "a factor above 0 and at most 1, e.g. 0.75"),
    ("unfreeze_every", _optional(_above(0)), "a positive number of epochs or steps, or leave it unset"),
    ("groups_per_phase", _count, "a count of at least 1"),
    ("lp_epochs", _optional(_at_least(0)), "a number of epochs of at least 0, or leave it unset"),
    ("ft_lr_scale", _at_least(0), "a multiplier of at least 0, e.g. 0.1"),
    ("lora_r", _count, "a rank of at least 1, e.g. 8"),
    ("lora_alpha", _above(0), "a positive scaling alpha, e.g. 16"),
    ("lora_dropout", _within(0, 1, high_open=True), "a probability of at least 0 and below 1"),
)
REGULARIZER_RULES: tuple[Rule, ...] = (
    ("regularizer_weight", _optional(_at_least(0)), "a weight of at least 0, or leave it unset for each one's own"),
)
ADAPTATION_RULES: tuple[Rule, ...] = (
    ("method_weight", _optional(_at_least(0)), "a weight of at least 0, or leave it unset for the method's own"),
    ("method_warmup", _PROBABILITY, "a fraction of training between 0 and 1"),
)
TRAINING_RULES: tuple[Rule, ...] = (
    ("per_device_train_batch_size", _count, "a batch size of at least 1"),
    ("per_device_eval_batch_size", _count, "a batch size of at least 1"),
    ("gradient_accumulation_steps", _count, "a step count of at least 1"),
    ("learning_rate", _above(0), "a positive learning rate, e.g. 0.001"),
    ("weight_decay", _at_least(0), "a weight decay of at least 0"),
    ("warmup_steps", _at_least(0), "at least 0 (a fraction of training below 1, or a step count)"),
)


def _apply(args, rules: tuple[Rule, ...]) -> None:
    for name, test, good in rules:
        value = getattr(args, name)
        if not test(value):
            raise ConfigError(f"--{name} {value!r} is out of range; pass {good}")


# ---- per dataclass ----------------------------------------------------------------------------------------------


def _check_dataset(args) -> None:
    _apply(args, DATASET_RULES)


def _check_data(args) -> None:
    _apply(args, DATA_RULES)


def _check_streaming(parsed) -> None:
    """--streaming reads the train split once, in order, never whole: what needs all of it is refused here."""
    from transformers import TrainingArguments

    from .arguments import DatasetArguments, DomainDataArguments, StrategyArguments

    data = next((a for a in parsed if isinstance(a, DatasetArguments)), None)
    if data is None:
        return
    if not data.streaming:
        if data.class_names:
            raise ConfigError("--class_names is for --streaming, where classes cannot be read from the data; drop it")
        return
    if isinstance(data, DomainDataArguments):
        raise ConfigError("--streaming is not supported by domain adaptation, which pairs two datasets in memory; "
                          "drop --streaming")
    if getattr(data, "samples_per_class", None):
        raise ConfigError("--samples_per_class picks from every training example, which a stream does not hold; use "
                          "--max_train_samples or drop --streaming")
    training = next(a for a in parsed if isinstance(a, TrainingArguments))
    if training.max_steps <= 0:
        raise ConfigError("--streaming needs --max_steps N: a stream's length is unknown, so epochs cannot be counted; "
                          "pass --max_steps")
    strategy_args = next((a for a in parsed if isinstance(a, StrategyArguments)), None)
    if strategy_args is not None:
        from .strategies import build_strategy

        strategy = build_strategy(strategy_args)
        if strategy.head_init == "fit" or strategy_args.strategy == "setfit":
            raise ConfigError(f"--strategy {strategy_args.strategy} reads every training example before training "
                              "(a fitted head, or sentence pairs), which a stream does not hold; pass --head_init "
                              "random, another --strategy, or drop --streaming")


SETFIT_ON_IMAGES_ERROR = (
    "--strategy setfit contrasts text embeddings toward cosine 0 across classes, which non-negative image features "
    "cannot reach (UCI digits, 10 labels per class, seed 0: 0.594 test accuracy against 0.836 for logistic "
    "regression on the frozen features); use --strategy linear_probe or lp_ft")


def _check_text_only_options(parsed) -> None:
    """An image-only recipe with an option for text models (--pooling checkpoint, --strategy setfit): refused here,
    before the data is read."""
    from .arguments import ImageDataArguments, ModelArguments, StrategyArguments, TextDataArguments
    from .models.loading import IMAGE_POOLING_ERROR

    if not any(isinstance(a, ImageDataArguments) and not isinstance(a, TextDataArguments) for a in parsed):
        return
    model = next((a for a in parsed if isinstance(a, ModelArguments)), None)
    if model is not None and model.pooling == "checkpoint":
        raise ConfigError(IMAGE_POOLING_ERROR)
    strategy = next((a for a in parsed if isinstance(a, StrategyArguments)), None)
    if strategy is not None and strategy.strategy == "setfit":
        raise ConfigError(SETFIT_ON_IMAGES_ERROR)


def _check_image_data(args) -> None:
    _apply(args, IMAGE_RULES)


def _check_text_data(args) -> None:
    _apply(args, TEXT_RULES)


def _check_strategy(args) -> None:
    from .strategies import STRATEGIES
    from .strategies.base import HEAD_INITS

    check_choice("--strategy", args.strategy, STRATEGIES.names())
    _apply(args, STRATEGY_RULES)
    if args.norm_statistics is not None:
        check_choice("--norm_statistics", args.norm_statistics, ("update", "pretrained"))
    if args.head_init is not None:
        check_choice("--head_init", args.head_init, HEAD_INITS)
    check_choice("--unfreeze_unit", args.unfreeze_unit, ("epoch", "step"))
    from .strategies import build_strategy

    build_strategy(args)  # built as the recipe will build it: every option it checks fails here, before any loading


def _check_loss_components(args) -> None:
    """Names first (with a suggestion), then build the components as the recipe will: options fail here, not later."""
    from .adaptation import LOSS_COMPONENTS, components_from_args

    names = [part.strip() for part in (args.regularizer or "").split(",") if part.strip()]
    regularizers = [n for n in LOSS_COMPONENTS.names() if not LOSS_COMPONENTS.get(n).needs_target]
    for name in names:
        if name in LOSS_COMPONENTS and LOSS_COMPONENTS.get(name).needs_target:
            raise ConfigError(f"{name!r} needs target-domain data; use recipes/domain_adapt.py --method {name}")
        check_choice("--regularizer", name, regularizers)
    _apply(args, REGULARIZER_RULES)
    if args.regularizer_options and not names:
        raise ConfigError(
            "--regularizer_options is set but there is no --regularizer; add --regularizer NAME or drop it"
        )
    if hasattr(args, "method"):
        _check_method(args, LOSS_COMPONENTS)
    components_from_args(args)


def _check_method(args, components) -> None:
    names = [part.strip() for part in (args.method or "").split(",")]
    methods = ["source_only", *(n for n in components.names() if components.get(n).needs_target)]
    for name in names:
        if name in components and not components.get(name).needs_target:
            raise ConfigError(f"{name!r} is a regularizer, not an adaptation method; pass it as --regularizer {name}")
        check_choice("--method", name, methods)
    if len(names) > 1 and "source_only" in names:
        raise ConfigError(f"--method {args.method}: source_only combines with nothing; pass it alone or drop it")
    if len(set(names)) < len(names):
        raise ConfigError(f"--method {args.method} names a method twice; name each once")
    _apply(args, ADAPTATION_RULES)
    check_choice("--select_on", args.select_on, ("source", "target"))
    if args.method == "source_only" and args.method_options:
        raise ConfigError("--method_options is set but --method source_only takes none; drop it or pick a method")


def _check_training(args) -> None:
    _apply(args, TRAINING_RULES)
    _check_training_length(args)
    _check_best_model_selection(args)
    _check_wise_ft(args)
    check_output_dir(args.output_dir)


def _check_training_length(args) -> None:
    if args.max_steps == 0:
        raise ConfigError("--max_steps 0 trains nothing; pass a positive step count, or -1 to train --num_train_epochs")
    if args.max_steps < 0 and not (_number(args.num_train_epochs) and args.num_train_epochs > 0):
        raise ConfigError(
            f"--num_train_epochs {args.num_train_epochs} trains nothing; pass a positive number of epochs"
        )


def _check_best_model_selection(args) -> None:
    check_choice("--best_model_ties", getattr(args, "best_model_ties", "earlier"), ("earlier", "later"))
    if args.load_best_model_at_end and str(getattr(args.eval_strategy, "value", args.eval_strategy)) == "no":
        raise ConfigError(
            "--eval_strategy no leaves nothing to pick the best model on (--load_best_model_at_end is on by default); "
            "evaluate with --eval_strategy epoch, or pass --load_best_model_at_end false"
        )
    if args.load_best_model_at_end or getattr(args, "wise_ft_alphas", None):
        metric = str(args.metric_for_best_model or "loss")
        bare = metric[len("eval_"):] if metric.startswith("eval_") else metric
        if bare not in EVAL_METRICS:
            raise ConfigError(f"unknown --metric_for_best_model {metric!r}{suggest(bare, EVAL_METRICS)}")


def _check_wise_ft(args) -> None:
    alphas = getattr(args, "wise_ft_alphas", None)
    if alphas is None:
        return
    if not isinstance(alphas, (list, tuple)) or not alphas:
        raise ConfigError(f"--wise_ft_alphas takes a list of mixing weights, got {alphas!r}; e.g. 0.5 0.75 1")
    bad = [a for a in alphas if not _number(a)]
    if bad:
        raise ConfigError(
            f"--wise_ft_alphas value {bad[0]!r} is not a finite number; pass mixing weights such as 0.5 0.75 1"
        )


def check_max_length(max_length: int, tokenizer) -> None:
    """Checked once the tokenizer is loaded: --max_length may not exceed what the model reads."""
    limit = tokenizer.model_max_length
    if limit < 1_000_000 and max_length > limit:  # transformers' "no limit" is a huge sentinel
        raise ConfigError(f"--max_length {max_length} is more than this model takes ({limit} tokens); "
                          f"pass --max_length {limit} or less")


def check_output_dir(output_dir: str) -> None:
    """The run must be able to create output_dir (and a sibling beside it): checked without creating anything."""
    out = Path(output_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output_dir {output_dir!r} is an existing file; choose a folder path")
    ancestor = _nearest_existing(out.parent)
    if not ancestor.is_dir():
        raise ConfigError(
            f"--output_dir {output_dir!r} sits under {str(ancestor)!r}, which is a file, not a folder; "
            "choose another path"
        )
    for folder in (out, ancestor) if out.exists() else (ancestor,):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write to {str(folder)!r} (permission denied); choose a writable --output_dir")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
