"""Load a classification model from a Hub id, a local save_pretrained folder or a built-in alias, with a new head."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelLoadError
from .builtin import BUILTIN_MODELS

Modality = Literal["image", "text"]


@dataclass
class LoadedModel:
    model: Any  # transformers.PreTrainedModel with a freshly sized classification head
    processor: Any  # image processor or tokenizer; saved next to the model
    modality: Modality
    source: str  # what the user asked for: alias, Hub id or path (the card's base_model)


def resolve_model_source(name_or_path: str) -> str:
    """A built-in alias becomes its local folder; a path must exist; anything else with a slash is a Hub id."""
    if name_or_path in BUILTIN_MODELS:
        return str(BUILTIN_MODELS.get(name_or_path)())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model folder {name_or_path!r} has no config.json; pass a save_pretrained output folder")
        return str(path)
    if _looks_like_path(name_or_path):
        raise ModelLoadError(f"model path {name_or_path!r} does not exist; pass an existing folder, a Hub id or a built-in")
    if "/" not in name_or_path:
        raise ModelLoadError(
            f"unknown built-in model {name_or_path!r}; built-ins are {', '.join(BUILTIN_MODELS.names())}, "
            "or pass a Hub id (org/name) or a local folder"
        )
    return name_or_path


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", "")


def hub_load_error(what: str, name: str, error: Exception) -> ModelLoadError:
    """Turn a Hub/cache failure into one line saying how to make the thing available."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return ModelLoadError(
            f"{what} {name!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1 is set; "
            f"run `hf download {name}` where the Hub is reachable (or copy the cache), or pass a local folder"
        )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelLoadError(f"could not load {what} {name!r}: {first_line}")


POOLING_CHOICES = ("auto", "head", "checkpoint")  # hftransfer.arguments.ModelArguments.pooling
IMAGE_POOLING_ERROR = "--pooling checkpoint applies to sentence-transformers text models; drop it"


def load_classifier(
    name_or_path: str,
    label_names: list[str],
    modality: Modality,
    *,
    pretrained: bool = True,
    image_size: int | None = None,
    trust_remote_code: bool = False,
    pooling: str = "head",
) -> LoadedModel:
    source = resolve_model_source(name_or_path)
    config = _read_config(source, name_or_path, trust_remote_code)
    # the dataset's labels, set after loading: as from_pretrained kwargs, num_labels warns against a checkpoint's own
    # id2label, and a timm config's num_classes overrides id2label (num_labels follows id2label when set like this)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}

    if config.model_type == "timm_wrapper" and config.model_args:
        # timm >= 1.0.2x exports record num_classes in model_args too; TimmWrapper passes num_labels as well
        config.model_args = {k: v for k, v in config.model_args.items() if k != "num_classes"}
    found = modality_of(config)
    if found != modality:
        recipe = "image_cls.py" if found == "image" else "text_cls.py"
        raise ModelLoadError(f"model {name_or_path!r} is a {found} model; use recipes/{recipe} for it")

    if pooling not in POOLING_CHOICES:
        raise ModelLoadError(f"--pooling {pooling!r} is not one of {', '.join(POOLING_CHOICES)}; pass one of them")
    if pooling == "checkpoint" and modality != "text":
        raise ModelLoadError(IMAGE_POOLING_ERROR)
    load = _load_image_classifier if modality == "image" else _load_text_classifier
    try:
        model, processor = load(source, config, pretrained, image_size, trust_remote_code)
    except OSError as error:
        raise hub_load_error("model", name_or_path, error) from None
    if pooling != "head" and modality == "text":
        from .pooling_layer import build_checkpoint_pooling

        build_checkpoint_pooling(model, source, required=pooling == "checkpoint")
    return LoadedModel(model=model, processor=processor, modality=modality, source=name_or_path)


def model_modality(name_or_path: str, trust_remote_code: bool = False) -> Modality:
    """'image' or 'text' for a built-in alias, local folder or cached Hub id, from its config alone."""
    return model_families(name_or_path, trust_remote_code)[0]


def model_families(name_or_path: str, trust_remote_code: bool = False) -> list[str]:
    """The families a model belongs to, the general one first, from its config alone: ['text'], ['image'], or
    ['image', 'timm'] for a timm checkpoint (only timm models take --image_size)."""
    config = _read_config(resolve_model_source(name_or_path), name_or_path, trust_remote_code)
    return [modality_of(config), *(["timm"] if config.model_type == "timm_wrapper" else [])]


def _read_config(source: str, name_or_path: str, trust_remote_code: bool):
    """The checkpoint's config (no label changes), or one line saying why it cannot be read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        if source != name_or_path or Path(source).exists():
            raise ModelLoadError(f"cannot read the model config in {name_or_path!r}: {error}") from None
        raise hub_load_error("model", name_or_path, error) from None


def modality_of(config) -> Modality:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    if config.model_type == "timm_wrapper" or config.model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        return "image"
    return "text"


def _load_image_classifier(source, config, pretrained, image_size, trust_remote_code):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    if pretrained:
        model = AutoModelForImageClassification.from_pretrained(
            source, config=config, ignore_mismatched_sizes=True, trust_remote_code=trust_remote_code
        )
    else:
        model = AutoModelForImageClassification.from_config(config, trust_remote_code=trust_remote_code)
    if config.model_type == "timm_wrapper":
        from .timm_layout import set_timm_input_size, timm_image_processor

        if image_size:
            set_timm_input_size(model, image_size)
        return model, timm_image_processor(model.config)
    if image_size:
        raise ModelLoadError("--image_size is supported for timm checkpoints only; drop it for this model")
    return model, AutoImageProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)


def _load_text_classifier(source, config, pretrained, image_size, trust_remote_code):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if image_size:
        raise ModelLoadError("--image_size applies to image models only; drop it for a text model")
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if pretrained:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, config=config, ignore_mismatched_sizes=True, trust_remote_code=trust_remote_code
        )
    else:
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
    _cap_model_max_length(tokenizer, config)
    return model, tokenizer


def _cap_model_max_length(tokenizer, config) -> None:
    """A tokenizer may allow more tokens than the model has position embeddings for: keep the smaller limit."""
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and 0 < positions < tokenizer.model_max_length:
        tokenizer.model_max_length = positions
