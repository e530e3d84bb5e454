"""`--streaming`: a dataset read as a stream (datasets.IterableDataset), for training data past one disk.

The train split stays a stream: shuffled through a buffer with its files in a seeded order, cut to
`--max_train_samples`, repeated without end (`--max_steps` is the budget; every pass in the same order), and shared
between processes by Accelerate (one file
shard per rank when there are at least as many files as ranks, as `datasets.distributed.split_dataset_by_node`
does; otherwise each rank keeps its slice of every global batch). Accelerate shards a datasets IterableDataset
itself when each rank reads its own batches (`prepare_data_loader`, accelerate 1.x), so splitting it by node here
as well would leave each of 2 ranks a quarter. Validation and test are read into memory, as every evaluation needs
them whole.

A stream cannot be split at random or have its labels listed without reading all of it, so the dataset brings its
own validation and test splits, and its label names (a ClassLabel feature, or `--class_names`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .builtin import BUILTIN_DATASETS
from .loading import (
    _FILE_FORMATS, _SPLIT_ALIASES, ClassificationData, Modality, _check_texts, _find_column, _first_line,
    _input_column, _LABEL_COLUMNS, input_column_arg,
)

SHUFFLE_BUFFER = 10_000  # examples held for shuffling the train stream (datasets' default is 1,000)


def load_streaming_data(data_args, modality: Modality, seed: int) -> ClassificationData:
    """The recipe's dataset as a train stream plus in-memory validation and test, checked before any model loads."""
    name = data_args.dataset
    streams = _named_streams(_open_stream(name, data_args.dataset_config), name)
    train = streams["train"]
    first = next(iter(train.take(1)), None)
    if first is None:
        raise DataError(f"split 'train' of dataset {name!r} is empty; add examples or drop the split")
    features = train.features
    label_column = _find_column(_Columns(first), data_args.label_column, _LABEL_COLUMNS, "label", name)
    label_names = _label_names(features, label_column, getattr(data_args, "class_names", None), name)
    input_column = _input_column(_Columns(first, features), modality, input_column_arg(data_args, modality), name)
    if modality == "image":  # decoded later by hftransfer.data.vision (EXIF, bit depth), not by the stream
        from datasets import Image

        streams = {k: v.cast_column(input_column, Image(decode=False)) for k, v in streams.items()}
        train = streams["train"]
    pair_column = getattr(data_args, "text_pair_column", None)
    inputs = [input_column, pair_column] if pair_column else [input_column]
    encode = _LabelEncoder(label_column, label_names, name)

    held_out = {}
    for split in ("validation", "test"):
        stream = streams[split].select_columns([*inputs, label_column])
        if data_args.max_eval_samples:
            stream = stream.take(data_args.max_eval_samples)
        held_out[split] = _in_memory(stream.map(encode, batched=True), features, label_column, label_names, name, split)
    train = train.select_columns([*inputs, label_column]).map(encode, batched=True)
    if label_column != "label":
        train = train.rename_column(label_column, "label")
    train = train.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
    if data_args.max_train_samples:
        train = train.take(data_args.max_train_samples)
    # one endless pass: the Trainer's epoch never ends, so a resumed run skips exactly the batches it trained (its
    # skip counts batches from the epoch start), and a rank whose shard runs out first starts it again instead of
    # leaving the others waiting in a gradient all-reduce. Repeated after the shuffle: each pass holds every example
    # once, in the same order (shuffling after the repeat let a small stream's buffer hold copies from many passes,
    # measured: 37 distinct examples in a rank's 48)
    train = train.repeat(None)
    if modality == "text":
        for column in inputs:
            _check_texts(held_out, column, name)
    return ClassificationData({"train": train, **held_out}, label_names, input_column, name, pair_column=pair_column,
                              streamed=True)


def _open_stream(name: str, config_name: str | None):
    import datasets

    if name in BUILTIN_DATASETS:
        raise DataError(f"built-in {name!r} is small and read into memory; drop --streaming, or stream a Hub id or a "
                        "local folder")
    path = Path(name).expanduser()
    try:
        if path.is_file():
            fmt = _FILE_FORMATS.get(path.suffix.lower())
            if fmt is None:
                raise DataError(f"cannot read {name!r}: use a folder or a {'/'.join(sorted(_FILE_FORMATS))} file")
            return datasets.load_dataset(fmt, data_files={"train": str(path)}, streaming=True)
        if path.exists() or "/" in name:
            return datasets.load_dataset(str(path) if path.exists() else name, config_name, streaming=True)
    except DataError:
        raise
    except Exception as error:  # datasets raises many types for unreadable or unreachable data
        raise DataError(f"cannot stream dataset {name!r}: {_first_line(error)}") from None
    raise DataError(f"dataset path {name!r} does not exist; pass an existing folder or file, or a Hub id")


def _named_streams(raw, name: str) -> dict:
    found = {}
    for standard, aliases in _SPLIT_ALIASES.items():
        alias = next((a for a in aliases if a in raw), None)
        if alias is not None:
            found[standard] = raw[alias]
    missing = [s for s in ("train", "validation", "test") if s not in found]
    if missing:
        raise DataError(
            f"streamed dataset {name!r} has no {' or '.join(missing)} split (found {', '.join(raw)}); a stream cannot "
            "be split at random without reading all of it: give it train, validation and test splits (e.g. "
            "train/, validation/ and test/ folders or files), or drop --streaming"
        )
    return found


class _Columns:
    """The little of a datasets split that the column finders read, from a stream's first example."""

    def __init__(self, example: dict, features=None):
        self.column_names = list(example)
        self.features = features if features is not None else {}
        self._example = example

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        return self._example


def _label_names(features, label_column: str, given: str | None, name: str) -> list[str]:
    return stream_class_names((features or {}).get(label_column), given, f"the label column {label_column!r}", name)


def stream_class_names(feature, given: str | None, column: str, name: str, kind: str = "classes",
                       example: str = "neg,pos") -> list[str]:
    """The class (or tag) names of a stream: `--class_names`, checked against a ClassLabel `feature` when there is
    one, else the feature's names; neither is one line saying what to pass."""
    from datasets import ClassLabel

    if given:
        names = [part.strip() for part in given.split(",") if part.strip()]
        if len(set(names)) != len(names) or len(names) < 2:
            raise DataError(f"--class_names {given!r} must list at least two distinct {kind}, comma-separated")
        if isinstance(feature, ClassLabel) and list(feature.names) != names:
            raise DataError(f"--class_names {given!r} differs from the dataset's own {kind} {feature.names}; drop it")
        return names
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    raise DataError(
        f"{column} of streamed dataset {name!r} does not list its {kind} (no ClassLabel feature), and a stream cannot "
        f"be read through to find them; pass --class_names, e.g. --class_names {example}"
    )


class _LabelEncoder:
    """Batched `map`: labels become ids into `label_names` (strings by name, integers checked to be in range)."""

    def __init__(self, column: str, label_names: list[str], name: str):
        self.column, self.label_names, self.name = column, label_names, name

    def __call__(self, batch: dict) -> dict:
        return {self.column: [self._id(v) for v in batch[self.column]]}

    def _id(self, value) -> int:
        if isinstance(value, str):
            if value in self.label_names:
                return self.label_names.index(value)
        elif isinstance(value, int) and 0 <= value < len(self.label_names):
            return value
        raise DataError(f"label {value!r} in streamed dataset {self.name!r} is not one of the classes "
                        f"{self.label_names}; fix the label or --class_names")


def _in_memory(stream, features, label_column: str, label_names: list[str], name: str, split: str):
    """A held-out split read whole into a datasets.Dataset, its labels a ClassLabel column named 'label'."""
    from datasets import ClassLabel, Dataset, Features

    rows = list(stream)
    if not rows:
        raise DataError(f"split {split!r} of dataset {name!r} is empty; add examples or drop the split")
    columns = {k: [row[k] for row in rows] for k in rows[0]}
    kept = {k: v for k, v in (features or {}).items() if k in columns and k != label_column}
    dataset = Dataset.from_dict(columns, features=Features({**kept, label_column: ClassLabel(names=label_names)})
                                if len(kept) == len(columns) - 1 else None)
    if label_column != "label":
        dataset = dataset.rename_column(label_column, "label")
    if not isinstance(dataset.features["label"], ClassLabel):
        dataset = dataset.cast_column("label", ClassLabel(names=label_names))
    return dataset
