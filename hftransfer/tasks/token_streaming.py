"""`--streaming` for token classification: the train split of word-tagged data read as a stream, as
hftransfer.data.streaming does for sentence classification (the same stream rules: a seeded shuffle buffer, cut to
`--max_train_samples`, repeated without end under `--max_steps`, shared between ranks by Accelerate; validation and
test read whole). A stream cannot be read through to list its tags, so they come from the tag column's ClassLabel
feature or from `--class_names` (O,B-PER,I-PER,...)."""

from __future__ import annotations

from ..data.streaming import SHUFFLE_BUFFER, _Columns, _named_streams, _open_stream, stream_class_names
from ..errors import DataError


def load_token_stream(args, seed: int):
    """TokenData with a train stream (columns `tokens`, `ner_tags`) and in-memory validation and test."""
    from ..data.loading import _find_column
    from .token_classification import _TAG_COLUMNS, _TOKEN_COLUMNS, TokenData

    name = args.dataset
    streams = _named_streams(_open_stream(name, args.dataset_config), name)
    first = next(iter(streams["train"].take(1)), None)
    if first is None:
        raise DataError(f"split 'train' of dataset {name!r} is empty; add examples or drop the split")
    tokens = _find_column(_Columns(first), args.tokens_column, _TOKEN_COLUMNS, "tokens", name)
    tags = _find_column(_Columns(first), args.tags_column, _TAG_COLUMNS, "tags", name)
    label_names = _tag_names(streams["train"].features, tags, args.class_names, name)
    encode = _TagEncoder(tokens, tags, label_names, name)

    splits = {}
    for split in ("validation", "test"):
        stream = streams[split].select_columns([tokens, tags])
        if args.max_eval_samples:
            stream = stream.take(args.max_eval_samples)
        splits[split] = _in_memory(stream.map(encode, batched=True, remove_columns=[tokens, tags]), label_names,
                                   name, split)
    train = streams["train"].select_columns([tokens, tags]).map(encode, batched=True, remove_columns=[tokens, tags])
    train = train.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
    if args.max_train_samples:
        train = train.take(args.max_train_samples)
    splits["train"] = train.repeat(None)  # one endless pass: see hftransfer.data.streaming
    return TokenData(splits, label_names, name, streamed=True)


def _tag_names(features, column: str, given: str | None, name: str) -> list[str]:
    sequence = (features or {}).get(column)
    return stream_class_names(getattr(sequence, "feature", None), given, f"the tag column {column!r}", name, "tags",
                              "O,B-PER,I-PER")


class _TagEncoder:
    """Batched `map`: each row's words and their tags as ids into `label_names`, one tag per word."""

    def __init__(self, tokens: str, tags: str, label_names: list[str], name: str):
        self.tokens, self.tags, self.label_names, self.name = tokens, tags, label_names, name
        self.index = {n: i for i, n in enumerate(label_names)}

    def __call__(self, batch: dict) -> dict:
        rows = list(zip(batch[self.tokens], batch[self.tags]))
        for words, tags in rows:
            if not isinstance(words, list) or not isinstance(tags, list):
                raise DataError(f"streamed dataset {self.name!r}: tokens and tags must be lists (one tag per word)")
            if len(words) != len(tags):
                raise DataError(f"a row of streamed dataset {self.name!r} has {len(words)} words but {len(tags)} tags; "
                                "give one tag per word")
        return {"tokens": [words for words, _ in rows], "ner_tags": [[self._id(t) for t in tags] for _, tags in rows]}

    def _id(self, value) -> int:
        if isinstance(value, str) and value in self.index:
            return self.index[value]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(self.label_names):
            return value
        raise DataError(f"tag {value!r} in streamed dataset {self.name!r} is not one of the tags {self.label_names}; "
                        "fix the tag or --class_names")


def _in_memory(stream, label_names: list[str], name: str, split: str):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    rows = list(stream)
    if not rows:
        raise DataError(f"split {split!r} of dataset {name!r} is empty; add examples or drop the split")
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=label_names))})
    return Dataset.from_dict({k: [row[k] for row in rows] for k in ("tokens", "ner_tags")}, features=features)
