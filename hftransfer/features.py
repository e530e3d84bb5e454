"""One eval-mode pass of a dataset through a checkpoint: pooled features, source-head probabilities, predictions.

`extract` feeds the transferability scores (hftransfer.ranking); `evaluate_classifier` scores a model on a split
with exactly the transform the saved processor applies at inference time (used by WiSE-FT interpolation).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
import torch

from .data.loading import ClassificationData, Modality
from .errors import DataError, ModelLoadError
from .models.groups import capture_pooled_features
from .models.loading import LoadedModel

__all__ = ["extract", "evaluate_classifier", "load_with_source_head", "prepare_eval_split"]


def load_with_source_head(
    name_or_path: str, *, image_size: int | None = None, trust_remote_code: bool = False
) -> tuple[LoadedModel, bool]:
    """Load a checkpoint keeping its own classification head (e.g. ImageNet's 1000 classes).

    Returns (loaded, has_head). A checkpoint without a head (a bare BertModel, a timm model with num_classes=0) gets
    a 1-class placeholder head so the pooled features can still be read at the head's input; has_head is False.
    """
    from transformers import AutoConfig

    from .models.loading import (
        _load_image_classifier, _load_text_classifier, hub_load_error, modality_of, resolve_model_source,
    )

    source = resolve_model_source(name_or_path)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise hub_load_error("model", name_or_path, error) from None
    modality = modality_of(config)
    if config.model_type == "timm_wrapper":
        has_head = config.num_labels > 0
        if config.model_args and "num_classes" in config.model_args:  # timm.save_for_hf writes it; TimmWrapper
            config.model_args = {k: v for k, v in config.model_args.items() if k != "num_classes"}  # passes its own
    else:
        kind = "ForImageClassification" if modality == "image" else "ForSequenceClassification"
        has_head = any(a.endswith(kind) for a in (config.architectures or []))
    if not has_head:
        config.num_labels = 1
        config.id2label, config.label2id = {0: "placeholder"}, {"placeholder": 0}
    load = _load_image_classifier if modality == "image" else _load_text_classifier
    try:
        model, processor = load(source, config, True, image_size, trust_remote_code)
    except OSError as error:
        raise hub_load_error("model", name_or_path, error) from None
    return LoadedModel(model=model, processor=processor, modality=modality, source=name_or_path), has_head


def prepare_eval_split(
    data: ClassificationData, split: str, processor, modality: Modality, *,
    max_samples: int | None = None, seed: int = 0, max_length: int = 128,
):
    """(dataset, collate_fn) for one split with the eval transform (no augmentation), optionally subsampled."""
    if split not in data.splits:
        raise DataError(f"dataset {data.name!r} has no split {split!r}; choose one of {', '.join(data.splits)}")
    chosen = data.splits[split]
    if max_samples is not None and len(chosen) > max_samples:
        chosen = chosen.shuffle(seed=seed).select(range(max_samples))
    from datasets import DatasetDict

    # any split name but "train" gets the eval transform in the data pipeline
    only = dataclasses.replace(data, splits=DatasetDict({"eval": chosen}))
    if modality == "image":
        from .data.vision import prepare_image_splits

        prepared = prepare_image_splits(only, processor, hflip=0.0, crop_scale_min=1.0, verify=False)["eval"]
        from transformers import default_data_collator

        return prepared, default_data_collator
    from .data.text import prepare_text_splits, text_collator

    # scoring reads what the model can take: a longer default is cut to the model's limit, not refused
    prepared = prepare_text_splits(only, processor, max_length=min(max_length, processor.model_max_length))["eval"]
    return prepared, text_collator(processor, on_gpu=torch.cuda.is_available())


def _forward(model, dataset, collate_fn, batch_size: int, desc: str, head_input: bool = False
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (pooled features, logits, labels) per batch, on the CPU, in dataset order (features: the checkpoint's
    pooling, or with `head_input` what its classification head reads)."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, leave=False):
            labels = batch.pop("labels", None)  # an unlabelled split (a domain-adaptation target): -1 per row
            batch = {k: v.to(device) for k, v in batch.items()}
            if labels is None:
                labels = torch.full((next(iter(batch.values())).shape[0],), -1, dtype=torch.long)
            with capture_pooled_features(model, None if head_input else batch.get("attention_mask")) as features:
                logits = model(**batch).logits
            yield features[0].flatten(1).float().cpu(), logits.float().cpu(), labels


def extract(
    model_name_or_path: str | LoadedModel,
    dataset: str | ClassificationData,
    split: str = "train",
    max_samples: int | None = None,
    batch_size: int = 64,
    image_size: int | None = None,
    *,
    seed: int = 0,
    max_length: int = 128,
    head_input: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(features [N, D] float32, source_probs [N, Z] or None, labels [N]) of one split through a checkpoint.

    Features are the input of the classification head (what a new head will see), or the pooling a sentence-transformers
    checkpoint was trained with (hftransfer.models.groups.checkpoint_pooling); source_probs are the softmax of the
    checkpoint's own head, None when it has none. ``head_input=True``: always the head's input. ``max_samples`` takes a seeded random subset, the same for every
    checkpoint, so scores of different candidates are computed on the same examples.
    """
    if isinstance(model_name_or_path, LoadedModel):
        loaded, has_head = model_name_or_path, True
    else:
        loaded, has_head = load_with_source_head(model_name_or_path, image_size=image_size)
    if isinstance(dataset, str):
        from .data.loading import load_classification_data

        dataset = load_classification_data(dataset, loaded.modality)
    ds, collate = prepare_eval_split(
        dataset, split, loaded.processor, loaded.modality, max_samples=max_samples, seed=seed, max_length=max_length
    )
    feats, probs, labels = [], [], []
    name = loaded.source if isinstance(loaded.source, str) else "model"
    for f, logits, y in _forward(loaded.model, ds, collate, batch_size, f"features {name}", head_input):
        feats.append(f)
        probs.append(torch.softmax(logits, dim=-1))
        labels.append(y)
    if not feats:
        raise DataError(f"split {split!r} of {dataset.name!r} is empty; nothing to extract")
    features = torch.cat(feats).numpy().astype(np.float32)
    if not np.all(np.isfinite(features)):
        raise ModelLoadError(f"{name!r} produced NaN/inf features on {dataset.name!r}; check the checkpoint weights")
    source_probs = torch.cat(probs).numpy().astype(np.float32) if has_head else None
    return features, source_probs, torch.cat(labels).numpy()


def evaluate_classifier(model, dataset, collate_fn, *, batch_size: int = 128, desc: str = "evaluating") -> dict[str, float]:
    """accuracy / f1 / precision / recall of ``model`` on a prepared split (the Trainer's metrics, no Trainer)."""
    from .metrics import ClassificationMetrics

    predictions, references = [], []
    for _, logits, labels in _forward(model, dataset, collate_fn, batch_size, desc):
        predictions.append(logits.argmax(-1))
        references.append(labels)
    return ClassificationMetrics().compute(
        predictions=torch.cat(predictions).numpy(), references=torch.cat(references).numpy()
    )
