"""Image pipeline: decode (grey -> RGB) and timm transforms built from the checkpoint's own pretrained config."""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Any

from ..errors import DataError


def decode_image(value: Any):
    """A datasets Image value (PIL image or {'bytes', 'path'} dict) -> upright 8-bit RGB PIL image, or a DataError.

    Upright: the EXIF orientation is applied, as transformers' `load_image` does at inference.
    """
    from PIL import Image

    if isinstance(value, Image.Image):
        return _upright_rgb(value)
    source = value.get("path") or "<in-memory bytes>"
    try:
        image = Image.open(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"])
        image.load()
    except Exception as error:
        raise DataError(f"cannot decode image {source}: {error}; remove or replace the file") from None
    return _upright_rgb(image)


_EXIF_ORIENTATION = 0x0112


def _upright_rgb(image):
    from PIL import ImageOps

    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return _to_8_bits(image).convert("RGB")


def _to_8_bits(image):
    """16-bit (and 32-bit) grey scaled to 0..255: Pillow's own conversion clips them, so most pixels turn white."""
    import numpy as np
    from PIL import Image

    if image.mode.startswith("I;16"):
        pixels = np.asarray(image).astype(np.uint16) >> 8
    elif image.mode == "I":  # 32-bit integers: 16-bit data (older Pillow opens 16-bit PNGs so) or plain 0..255
        pixels = np.clip(np.asarray(image), 0, 65535)
        pixels = pixels >> 8 if pixels.max() > 255 else pixels
    elif image.mode == "F":  # floats: 0..1 or 0..255
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float32))
        pixels = np.clip(np.rint(pixels * 255 if pixels.max() <= 1.0 else pixels), 0, 255)
    else:
        return image
    return Image.fromarray(pixels.astype(np.uint8))


def check_images_decode(splits, column: str) -> None:
    """Decode every image once before training, so a corrupt file fails fast instead of inside a loader worker."""
    from datasets import Image

    for split in splits.values():
        raw = split.cast_column(column, Image(decode=False))
        for batch in raw.iter(batch_size=256):
            for value in batch[column]:
                decode_image(value)


def data_config_for(processor) -> dict:
    """timm-style data config (input_size, mean, std, interpolation, crop_pct, crop_mode) for any image processor."""
    if hasattr(processor, "data_config"):  # TimmWrapperImageProcessor
        return dict(processor.data_config)
    size = processor.size
    height = size.get("height") or size.get("shortest_edge")
    width = size.get("width") or height
    crop = getattr(processor, "crop_size", None) or {}
    return {
        "input_size": (3, crop.get("height", height), crop.get("width", width)),
        "mean": tuple(processor.image_mean),
        "std": tuple(processor.image_std),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
    }


def build_image_transforms(processor, *, hflip: float, crop_scale_min: float):
    """(train, eval) callables PIL -> tensor. Eval is exactly what the saved processor does at inference time."""
    from timm.data import create_transform

    config = data_config_for(processor)
    eval_transform = getattr(processor, "val_transforms", None) or create_transform(**config, is_training=False)
    train_transform = create_transform(
        input_size=config["input_size"],
        is_training=True,
        mean=config["mean"],
        std=config["std"],
        interpolation=config["interpolation"],
        scale=(crop_scale_min, 1.0),
        hflip=hflip,
    )
    return train_transform, eval_transform


ROW_COLUMN = "__hftransfer_row__"  # the row number of each training example: its augmentation's key


def example_seed(seed: int, epoch: int, stream: int, key: int) -> int:
    """A 64-bit seed for one example's augmentation, from (run seed, epoch, stream, example key)."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}:{epoch}:{stream}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class ImageBatchTransform:
    """`dataset.with_transform` hook: raw rows -> {'pixel_values', 'labels'}; picklable for loader workers.

    `augment=True` (the training split): each example's random augmentation is seeded from (seed, epoch, stream, its
    key) and leaves the global torch/python/numpy random state as it was. Its key is the row number (ROW_COLUMN), or
    what `augmentation_keys` sets. So an example is augmented the same way whichever process, loader worker or batch
    position fetches it, and a run resumed mid-epoch sees exactly the batches the uninterrupted run saw. (seed,
    epoch, stream) live in shared memory, set by the trainer at each epoch start (`set_augmentation_epoch`), so
    persistent loader workers see the new epoch too.
    """

    def __init__(self, transform, column: str, augment: bool = False, plain_transform=None):
        self.transform = transform
        self.plain_transform = plain_transform  # the same rows without augmentation (`unaugmented`)
        self.column = column
        self.seeding = None
        if augment:
            import torch

            self.seeding = torch.zeros(3, dtype=torch.int64).share_memory_()  # seed, epoch, stream
        self.keys: list[int] | None = None

    def set_epoch(self, seed: int, epoch: int, stream: int = 0) -> None:
        import torch

        self.seeding.copy_(torch.tensor([seed, epoch, stream], dtype=torch.int64))

    def __call__(self, batch: dict) -> dict:
        values = batch[self.column]
        keys = self.keys if self.keys is not None else batch.get(ROW_COLUMN)
        if self.seeding is None or keys is None:
            pixels = [self.transform(decode_image(v)) for v in values]
        else:
            pixels = self._seeded(values, [int(k) for k in keys])
        return {"pixel_values": pixels, "labels": batch["label"]} if "label" in batch else {"pixel_values": pixels}

    def _seeded(self, values: list, keys: list[int]) -> list:
        import random

        import numpy as np
        import torch

        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} augmentation keys for {len(values)} images")
        seed, epoch, stream = self.seeding.tolist()
        python_state, numpy_state = random.getstate(), np.random.get_state()
        pixels = []
        try:
            with torch.random.fork_rng(devices=[]):
                for value, key in zip(values, keys):
                    example = example_seed(seed, epoch, stream, key)
                    torch.default_generator.manual_seed(example)
                    random.seed(example)
                    np.random.seed(example % 2**32)
                    pixels.append(self.transform(decode_image(value)))
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
        return pixels


class _StreamKeys:
    """Batched `IterableDataset.map` with indices: a streamed batch through an ImageBatchTransform, keyed by place."""

    def __init__(self, transform: ImageBatchTransform):
        self.transform = transform

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        return self.transform({**batch, ROW_COLUMN: indices})


def _augmenting_transform(dataset) -> ImageBatchTransform | None:
    """The seeded ImageBatchTransform a datasets.Dataset applies (`with_transform`), or that a streamed split
    carries (`augmenting_transform`), if any."""
    if isinstance(getattr(dataset, "augmenting_transform", None), ImageBatchTransform):
        return dataset.augmenting_transform
    try:
        transform = dataset.format["format_kwargs"].get("transform")
    except (AttributeError, KeyError, TypeError):
        return None
    return transform if isinstance(transform, ImageBatchTransform) and transform.seeding is not None else None


def set_augmentation_epoch(dataset, seed: int, epoch: int, stream: int = 0) -> None:
    """Key a training dataset's augmentation to (seed, epoch): its own `set_augmentation_epoch` (PairedDataset), or
    the seeded ImageBatchTransform of a datasets.Dataset; anything else (text, plain tensors) has none."""
    hook = getattr(dataset, "set_augmentation_epoch", None)
    if callable(hook):
        hook(seed, epoch)
        return
    transform = _augmenting_transform(dataset)
    if transform is not None:
        transform.set_epoch(seed, epoch, stream)


@contextmanager
def augmentation_keys(dataset, keys: list[int]):
    """Within the block, `dataset[rows]` augments its rows with these keys instead of their row numbers (used by
    PairedDataset, whose shorter side repeats rows within an epoch: each repeat gets its own augmentation)."""
    transform = _augmenting_transform(dataset)
    if transform is None:
        yield
        return
    transform.keys = list(keys)
    try:
        yield
    finally:
        transform.keys = None


@contextmanager
def unaugmented(dataset):
    """Within the block, a training dataset's rows come as the evaluation transform makes them (no augmentation)."""
    from .paired import PairedDataset

    parts = [dataset.source, dataset.target] if isinstance(dataset, PairedDataset) else [dataset]
    transforms = [t for t in map(_augmenting_transform, parts) if t is not None and t.plain_transform is not None]
    saved = [t.transform for t in transforms]
    for t in transforms:
        t.transform = t.plain_transform
    try:
        yield
    finally:
        for t, transform in zip(transforms, saved):
            t.transform = transform


def prepare_image_splits(data, processor, *, hflip: float | None, crop_scale_min: float, verify: bool = True):
    """Attach on-the-fly transforms: augmentation for train, the processor's own eval transform elsewhere."""
    from datasets import Image

    if verify and not data.builtin:
        check_images_decode({k: v for k, v in data.splits.items() if not data.streamed or k != "train"},
                            data.input_column)
    if hflip is None:
        hflip = 0.0 if data.flips_change_labels else 0.5
    train_transform, eval_transform = build_image_transforms(processor, hflip=hflip, crop_scale_min=crop_scale_min)
    splits = {k: v if data.streamed and k == "train" else v.cast_column(data.input_column, Image(decode=False))
              for k, v in data.splits.items()}  # a stream is cast as it is opened (hftransfer.data.streaming)
    prepared = {}
    for name, split in splits.items():
        if name == "train" and data.streamed:  # keyed to the example's place in this process's stream
            transform = ImageBatchTransform(train_transform, data.input_column, augment=True,
                                            plain_transform=eval_transform)
            prepared[name] = split.map(_StreamKeys(transform), batched=True, with_indices=True,
                                       remove_columns=[data.input_column, "label"])
            prepared[name].augmenting_transform = transform
        elif name == "train":  # each training row's augmentation is keyed to its row number
            split = split.add_column(ROW_COLUMN, list(range(len(split))))
            prepared[name] = split.with_transform(ImageBatchTransform(train_transform, data.input_column, augment=True,
                                                                      plain_transform=eval_transform))
        else:
            prepared[name] = split.with_transform(ImageBatchTransform(eval_transform, data.input_column))
    return prepared
