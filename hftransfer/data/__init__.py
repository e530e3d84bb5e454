"""Datasets through the `datasets` library: built-ins, local folders/files, Hub ids; image and text pipelines."""

from .builtin import BUILTIN_DATASETS, BuiltinDataset
from .domains import base_collator, load_domains, prepare_splits
from .loading import ClassificationData, load_classification_data, load_data_from_args
from .paired import PairedCollator, PairedDataset
from .text import prepare_text_splits, text_collator
from .vision import build_image_transforms, check_images_decode, decode_image, prepare_image_splits

__all__ = [
    "BUILTIN_DATASETS", "BuiltinDataset", "ClassificationData", "PairedCollator", "PairedDataset", "base_collator",
    "load_domains", "prepare_splits", "build_image_transforms", "check_images_decode",
    "decode_image", "load_classification_data", "load_data_from_args", "prepare_image_splits", "prepare_text_splits", "text_collator",
]
