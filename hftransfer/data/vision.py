"""Image pipeline: decode (grey -> RGB) and timm transforms built from the checkpoint's own pretrained config."""

from __future__ import annotations

import io
from typing import Any

from ..errors import DataError


def decode_image(value: Any):
    """A datasets Image value (PIL image or {'bytes', 'path'} dict) -> RGB PIL image, or a one-line DataError."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return value.convert("RGB")
    source = value.get("path") or "<in-memory bytes>"
    try:
        image = Image.open(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"])
        image.load()
    except Exception as error:
        raise DataError(f"cannot decode image {source}: {error}; remove or replace the file") from None
    return image.convert("RGB")


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


class ImageBatchTransform:
    """`dataset.with_transform` hook: raw rows -> {'pixel_values', 'labels'}; picklable for loader workers."""

    def __init__(self, transform, column: str):
        self.transform = transform
        self.column = column

    def __call__(self, batch: dict) -> dict:
        pixels = [self.transform(decode_image(v)) for v in batch[self.column]]
        return {"pixel_values": pixels, "labels": batch["label"]} if "label" in batch else {"pixel_values": pixels}


def prepare_image_splits(data, processor, *, hflip: float | None, crop_scale_min: float, verify: bool = True):
    """Attach on-the-fly transforms: augmentation for train, the processor's own eval transform elsewhere."""
    from datasets import Image

    if verify and not data.builtin:
        check_images_decode(data.splits, data.input_column)
    if hflip is None:
        hflip = 0.0 if data.flips_change_labels else 0.5
    train_transform, eval_transform = build_image_transforms(processor, hflip=hflip, crop_scale_min=crop_scale_min)
    splits = data.splits.cast_column(data.input_column, Image(decode=False))
    return {
        name: split.with_transform(
            ImageBatchTransform(train_transform if name == "train" else eval_transform, data.input_column)
        )
        for name, split in splits.items()
    }
