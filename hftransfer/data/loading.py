"""Load a labelled classification dataset from a built-in, a local folder/file or the Hub as train/validation/test."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import DataError
from .builtin import BUILTIN_DATASETS, builtin_names

Modality = Literal["image", "text"]

_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}
_LABEL_COLUMNS = ("label", "labels", "target", "class")
_TEXT_COLUMNS = ("text", "sentence", "content", "review", "document")
_FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class ClassificationData:
    splits: "datasets.DatasetDict"  # noqa: F821  train / validation / test, label column "label" (ClassLabel)
    label_names: list[str]
    input_column: str  # the image or text column
    name: str  # what the user asked for, for the model card
    flips_change_labels: bool = False
    builtin: bool = False
    pair_column: str | None = None  # sentence-pair classification: the second text of each pair
    streamed: bool = False  # --streaming: splits["train"] is a datasets.IterableDataset (hftransfer.data.streaming)


def load_classification_data(
    name: str,
    modality: Modality,
    *,
    config_name: str | None = None,
    label_column: str | None = None,
    input_column: str | None = None,
    validation_size: float = 0.1,
    test_size: float = 0.2,
    seed: int = 42,
    max_train_samples: int | None = None,
    samples_per_class: int | None = None,
    max_eval_samples: int | None = None,
    require_labels: bool = True,
    pair_column: str | None = None,
) -> ClassificationData:
    """Every check that can fail on bad data runs here, before any model is built or output written.

    `require_labels=False` (a domain-adaptation target) accepts a dataset without a label column: it then has
    no `label` column and no label names.
    """
    raw, builtin = _load_raw(name, config_name)
    splits = _named_splits(raw, name)
    labelled = require_labels or label_column or any(c in splits["train"].column_names for c in _LABEL_COLUMNS)
    label_names: list[str] = []
    if labelled:
        label_column = _label_column(splits["train"], label_column, name, modality)
        if label_column != "label":
            splits = splits.rename_column(label_column, "label")
        splits, label_names = _encode_labels(splits, name)  # before carving splits, so carving can stratify
    column = _input_column(splits["train"], modality, input_column, name)
    if modality == "text" and pair_column is None and input_column is None:
        pair_column = "sentence2" if {"sentence1", "sentence2"} <= set(splits["train"].column_names) else None
        column = "sentence1" if pair_column else column  # GLUE-style pairs, as transformers' run_glue.py reads them
    if pair_column is not None:
        if modality != "text":
            raise DataError(f"--text_pair_column applies to text datasets; drop it for {name!r}")
        pair_column = _input_column(splits["train"], modality, pair_column, name)
        if pair_column == column:
            raise DataError(f"--text_pair_column {pair_column!r} is also the text column; pass the pair's second column")
    if modality == "text":
        for text_column in filter(None, (column, pair_column)):
            _check_texts(splits, text_column, name)
    splits = _carve_missing_splits(splits, validation_size, test_size, seed)
    _check_not_empty(splits, name)
    if labelled:
        _check_classes(splits, label_names, name)
    inputs = [column, pair_column] if pair_column else [column]
    splits = splits.select_columns([*inputs, "label"] if labelled else inputs)
    splits = _subsample(splits, max_train_samples, samples_per_class, max_eval_samples, seed, label_names)
    flips = BUILTIN_DATASETS.get(name).flips_change_labels if builtin else False
    return ClassificationData(splits, label_names, column, name, flips, builtin, pair_column)


def load_data_from_args(data_args, modality: Modality, seed: int, dataset: str | None = None) -> ClassificationData:
    """`load_classification_data` driven by a recipe's DataArguments (dataset overridable, e.g. a DA target); with
    --streaming, the train split as a stream (hftransfer.data.streaming)."""
    if getattr(data_args, "streaming", False):
        from .streaming import load_streaming_data

        return load_streaming_data(data_args, modality, seed)
    return load_classification_data(
        dataset or data_args.dataset, modality, config_name=data_args.dataset_config,
        label_column=data_args.label_column,
        input_column=input_column_arg(data_args, modality),
        validation_size=data_args.validation_size, test_size=data_args.test_size, seed=seed,
        max_train_samples=data_args.max_train_samples, samples_per_class=data_args.samples_per_class,
        max_eval_samples=data_args.max_eval_samples, pair_column=getattr(data_args, "text_pair_column", None),
    )


def input_column_arg(data_args, modality: Modality) -> str | None:
    """The --image_column or --text_column the user gave, whichever this modality reads."""
    return getattr(data_args, "image_column" if modality == "image" else "text_column", None)


def _refuse_other_tasks_builtin(name: str, task: str) -> None:
    from ..tasks import recipes_reading

    owner = recipes_reading(name)
    if owner is not None and owner[0] != task:
        kind, recipes = owner
        raise DataError(f"built-in {name!r} is a {kind} dataset; use {' or '.join(recipes)} for it, "
                        f"or pass a {task} one ({', '.join(builtin_names(task))})")


def _load_raw(name: str, config_name: str | None, task: str = "classification"):
    """The raw DatasetDict and whether it is a built-in; a built-in of another task names its recipe, an unknown
    built-in name lists the built-ins of `task` (a `BuiltinDataset.task` kind)."""
    import datasets

    if name in BUILTIN_DATASETS and BUILTIN_DATASETS.get(name).task == task:
        return BUILTIN_DATASETS.get(name).build(), True
    path = Path(name).expanduser()
    if "/" not in name and (name in BUILTIN_DATASETS or not path.exists()):  # perhaps another task's built-in
        _refuse_other_tasks_builtin(name, task)
    if path.exists():
        try:
            if path.is_file():
                fmt = _FILE_FORMATS.get(path.suffix.lower())
                if fmt is None:
                    raise DataError(f"cannot read {name!r}: use a folder or a {'/'.join(sorted(_FILE_FORMATS))} file")
                extra = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
                return datasets.load_dataset(fmt, data_files={"train": str(path)}, **extra), False
            return datasets.load_dataset(str(path), config_name), False
        except DataError:
            raise
        except Exception as error:  # datasets raises many types for unreadable local data
            empty = re.search(r'Instruction "(\w+)" corresponds to no data', str(error))
            if empty:
                raise DataError(f"split {empty.group(1)!r} of dataset {name!r} is empty; add examples or drop the split") from None
            raise DataError(f"cannot read dataset {name!r}: {_first_line(error)}") from None
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise DataError(f"dataset path {name!r} does not exist; pass an existing folder or file, a Hub id or a built-in")
    if "/" not in name:
        raise DataError(
            f"unknown built-in dataset {name!r}; built-ins are {', '.join(builtin_names(task))}, "
            "or pass a Hub dataset id (org/name) or a local folder/file"
        )
    try:
        return datasets.load_dataset(name, config_name), False
    except Exception as error:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE:
            raise DataError(
                f"dataset {name!r} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 is set; load it once where "
                "the Hub is reachable (or copy the cache), or pass a local folder"
            ) from None
        raise DataError(f"could not load dataset {name!r}: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _named_splits(raw, name: str):
    """The splits present under their standard names (known aliases renamed); train is required and non-empty."""
    from datasets import DatasetDict

    found = {}
    for standard, aliases in _SPLIT_ALIASES.items():
        for alias in aliases:
            if alias in raw:
                found[standard] = raw[alias]
                break
    if "train" not in found:
        raise DataError(f"dataset {name!r} has no train split (found {', '.join(raw)}); name one split 'train'")
    splits = DatasetDict(found)
    _check_not_empty(splits, name)
    return splits


def _check_not_empty(splits, name: str) -> None:
    for split_name, split in splits.items():
        if len(split) == 0:
            raise DataError(f"split {split_name!r} of dataset {name!r} is empty; add examples or drop the split")


def _carve_missing_splits(splits, validation_size: float, test_size: float, seed: int):
    """Hold out a missing test, then validation, split from train with a fixed seed (stratified when labelled)."""
    from datasets import DatasetDict

    found = dict(splits)
    train = found["train"]
    if "test" not in found:
        train, found["test"] = _split_off(train, test_size, seed)
    if "validation" not in found:
        train, found["validation"] = _split_off(train, validation_size, seed)
    found["train"] = train
    return DatasetDict({k: found[k] for k in ("train", "validation", "test")})


def _split_off(dataset, fraction: float, seed: int):
    from datasets import ClassLabel

    if len(dataset) < 2:
        raise DataError("the train split has fewer than 2 examples, too few to hold out validation/test examples; "
                        "add examples or provide validation and test splits")
    labelled = "label" in dataset.column_names and isinstance(dataset.features["label"], ClassLabel)
    try:
        parts = dataset.train_test_split(
            test_size=fraction, seed=seed, stratify_by_column="label" if labelled else None
        )
    except ValueError:  # too few examples of some class to stratify
        parts = dataset.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def _find_column(split, requested, candidates, what: str, name: str) -> str:
    import difflib

    columns = split.column_names
    if requested:
        if requested not in columns:
            close = difflib.get_close_matches(requested, columns, n=1)
            hint = f"did you mean --{what}_column {close[0]}?" if close else f"pass one of {columns} to --{what}_column"
            raise DataError(f"dataset {name!r} has no {what} column {requested!r}; {hint}")
        return requested
    for candidate in candidates:
        if candidate in columns:
            return candidate
    raise DataError(
        f"dataset {name!r} has no {what} column (looked for {', '.join(candidates)}); columns are {columns}; "
        f"pass --{what}_column NAME"
    )


def _label_column(train, requested: str | None, name: str, modality: Modality) -> str:
    unlabelled = not requested and not any(c in train.column_names for c in _LABEL_COLUMNS)
    if unlabelled and modality == "image" and Path(name).expanduser().is_dir():
        # datasets' imagefolder labels images by sub-folder only when there are at least two
        raise DataError(
            f"dataset {name!r} has no labels: an imagefolder needs one sub-folder per class, at least two "
            f"(e.g. {name}/cat/*.png and {name}/dog/*.png); move each class's images into its own sub-folder"
        )
    return _find_column(train, requested, _LABEL_COLUMNS, "label", name)


def _encode_labels(splits, name: str):
    """Labels become ClassLabel ids shared by all splits; names come from the train split."""
    from datasets import ClassLabel, Value

    feature = splits["train"].features["label"]
    if isinstance(feature, ClassLabel):
        label_names = list(feature.names)
    else:
        for split_name, split in splits.items():
            if None in split.unique("label"):
                raise DataError(f"split {split_name!r} of {name!r} has missing labels; give every example a label")
        values = splits["train"].unique("label")
        if all(isinstance(v, str) for v in values):
            label_names = sorted(values)
            splits = splits.map(
                lambda b: {"label": [_label_id(v, label_names, name) for v in b["label"]]}, batched=True
            ).cast_column("label", Value("int64"))
        elif all(isinstance(v, int) for v in values):
            label_names = _integer_label_names(values, name)
        else:
            raise DataError(f"labels of {name!r} must be all integers or all strings; found {sorted(map(repr, values))[:5]}")
    _require_two_classes(set(splits["train"].unique("label")), label_names, name)
    num_labels = len(label_names)
    for split_name, split in splits.items():
        values = split.unique("label")
        bad = sorted(v for v in values if not isinstance(v, int) or not 0 <= v < num_labels)
        if bad:
            raise DataError(
                f"label {bad[0]} in split {split_name!r} of {name!r} is outside 0..{num_labels - 1} "
                f"(num_labels={num_labels}, from the train split); fix the labels or add that class to train"
            )
    splits = splits.cast_column("label", ClassLabel(names=label_names))
    return splits, label_names


def _integer_label_names(values: list[int], name: str) -> list[str]:
    """Integer labels are class ids 0..N-1, every one seen in train: a gap would be a class the head never learns."""
    low, high = min(values), max(values)
    if low != 0:
        fix = f"subtract {low} from every label" if low > 0 else "renumber them from 0"
        raise DataError(f"integer labels of {name!r} must be 0..N-1; found {low}..{high}; {fix}, or use string labels")
    missing = sorted(set(range(high + 1)) - set(values))
    if missing:
        raise DataError(
            f"integer labels of {name!r} must be 0..N-1 with every class in the train split; class {missing[0]} has "
            "no training examples; renumber the labels without gaps, add examples of it, or use string labels"
        )
    return [str(i) for i in range(high + 1)]


def _label_id(value, label_names: list[str], name: str) -> int:
    try:
        return label_names.index(value)
    except ValueError:
        raise DataError(
            f"label {value!r} in {name!r} does not occur in the train split (labels: {label_names}); "
            "fix the labels or add that class to train"
        ) from None


def _require_two_classes(in_train: set[int], label_names: list[str], name: str) -> None:
    if len(in_train) < 2:
        only = ", ".join(repr(label_names[c]) for c in in_train)
        raise DataError(
            f"the train split of {name!r} has a single class ({only}); classification needs at least two, "
            "so add examples of another class"
        )


def _check_classes(splits, label_names: list[str], name: str) -> None:
    """At least two classes to train on, and nothing to predict that training never saw."""
    in_train = set(splits["train"].unique("label"))
    _require_two_classes(in_train, label_names, name)
    for split_name in ("validation", "test"):
        absent = sorted(set(splits[split_name].unique("label")) - in_train)
        if absent:
            raise DataError(
                f"class {label_names[absent[0]]!r} occurs in split {split_name!r} of {name!r} but not in its train "
                "split; add training examples of it, or remove it from that split"
            )


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_IMAGE_DATA_HINT = "use an imagefolder (one sub-folder per class) or a dataset with an Image feature"


def _input_column(split, modality: Modality, requested: str | None, name: str) -> str:
    from datasets import Image, Value

    if modality == "image":
        images = [c for c, f in split.features.items() if isinstance(f, Image)]
        column = _find_column(split, requested, (), "image", name) if requested else (images[0] if images else None)
        if column is None or column not in images:
            raise DataError(_not_images_message(split, column, name))
        return column
    if requested:
        column = _find_column(split, requested, (), "text", name)
        feature = split.features[column]
        if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
            raise DataError(
                f"column {column!r} of {name!r} holds {feature}, not text; pass a text column to --text_column"
            )
        return column
    for candidate in _TEXT_COLUMNS:
        if candidate in split.column_names:
            return candidate
    strings = [c for c, f in split.features.items() if isinstance(f, Value) and f.dtype in ("string", "large_string")]
    if not strings:
        raise DataError(f"dataset {name!r} has no text column (columns: {split.column_names}); pass --text_column")
    return strings[0]


def _not_images_message(split, column: str | None, name: str) -> str:
    """Why there are no images to read, and what would help (a column flag would not)."""
    paths = [c for c in split.column_names if _holds_image_paths(split, c)]
    if paths:
        return (f"column {paths[0]!r} of {name!r} holds image file paths, but a CSV of image paths is not read as "
                f"images; {_IMAGE_DATA_HINT}")
    if column is not None:
        return f"column {column!r} of {name!r} holds {split.features[column]}, not images; {_IMAGE_DATA_HINT}"
    return f"dataset {name!r} has no images (columns: {split.column_names}); {_IMAGE_DATA_HINT}"


def _holds_image_paths(split, column: str) -> bool:
    first = split[0][column] if len(split) else None
    return isinstance(first, str) and first.lower().endswith(_IMAGE_SUFFIXES)


def _check_texts(splits, column: str, name: str) -> None:
    """An empty or missing text would be tokenised to nothing (or crash the tokenizer) mid-run."""
    for split_name, split in splits.items():
        empty = [i for i, text in enumerate(split[column]) if not isinstance(text, str) or not text.strip()]
        if empty:
            raise DataError(
                f"split {split_name!r} of {name!r} has {len(empty)} empty text(s) in column {column!r} (first: row "
                f"{empty[0]}); fill in or remove those rows"
            )


def _subsample(splits, max_train: int | None, per_class: int | None, max_eval: int | None, seed: int,
               label_names: list[str]):
    import numpy as np

    if per_class:
        labels = np.asarray(splits["train"]["label"])
        _check_samples_per_class(labels, per_class, label_names)
        rng = np.random.default_rng(seed)
        classes = range(len(label_names))
        keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes])
        splits["train"] = splits["train"].select(np.sort(keep))
    if max_train and len(splits["train"]) > max_train:
        splits["train"] = splits["train"].shuffle(seed=seed).select(range(max_train))
    if max_eval:
        for split in ("validation", "test"):
            if len(splits[split]) > max_eval:
                splits[split] = splits[split].shuffle(seed=seed).select(range(max_eval))
    return splits


def _check_samples_per_class(labels, per_class: int, label_names: list[str]) -> None:
    """Few-label sampling is class-balanced only if every class has that many training examples."""
    import numpy as np

    counts = np.bincount(labels, minlength=len(label_names))
    smallest = min((c for c in range(len(label_names)) if counts[c]), key=lambda c: counts[c])
    if per_class > counts[smallest]:
        raise DataError(
            f"--samples_per_class {per_class} is more than class {label_names[smallest]!r} has "
            f"({counts[smallest]} training examples); pass at most {counts[smallest]}"
        )
