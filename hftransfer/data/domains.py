"""Source and target domains for domain adaptation, and modality-neutral split preparation."""

from __future__ import annotations

from ..errors import ConfigError, DataError
from .loading import ClassificationData, input_column_arg, load_classification_data, load_data_from_args
from .text import prepare_text_splits, text_collator
from .vision import prepare_image_splits


def load_domains(data_args, adapt_args, modality: str, seed: int) -> tuple[ClassificationData, ClassificationData]:
    """Labelled source and (possibly unlabelled) target sharing one label space; target labels only report."""
    if data_args.dataset is not None:
        raise ConfigError("domain_adapt.py takes --source and --target instead of --dataset; rename the flag")
    source = load_data_from_args(data_args, modality, seed=seed, dataset=adapt_args.source)
    target = load_classification_data(
        adapt_args.target, modality, config_name=data_args.dataset_config,
        input_column=input_column_arg(data_args, modality),
        validation_size=data_args.validation_size, test_size=data_args.test_size, seed=seed,
        max_train_samples=data_args.max_train_samples, max_eval_samples=data_args.max_eval_samples,
        pair_column=getattr(data_args, "text_pair_column", None),
        require_labels=False,  # class-balanced sampling (samples_per_class) would use target labels: not offered
    )
    if target.label_names and target.label_names != source.label_names:
        raise DataError(
            f"target {target.name!r} has labels {target.label_names} but source {source.name!r} has "
            f"{source.label_names}; domain adaptation needs one label space (same names, same order)"
        )
    if adapt_args.select_on == "target" and not target.label_names:
        raise ConfigError(f"--select_on target needs a labelled validation split in {target.name!r}; use --select_on source")
    return source, target


def prepare_splits(data: ClassificationData, processor, modality: str, data_args) -> dict:
    """Model-ready splits: image transforms (augmented train) or tokenised text."""
    if modality == "image":
        return prepare_image_splits(
            data, processor, hflip=data_args.hflip, crop_scale_min=data_args.crop_scale_min,
            verify=data_args.verify_images,
        )
    return prepare_text_splits(data, processor, max_length=data_args.max_length)


def base_collator(modality: str, processor, on_gpu: bool):
    if modality == "image":
        from transformers import default_data_collator

        return default_data_collator
    return text_collator(processor, on_gpu=on_gpu)
