"""A uniform view of a classifier: its head, its pooled features, and ordered layer groups (input -> head)."""

from __future__ import annotations

import re
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass, field

import torch
from torch import nn

from .timm_layout import is_timm_wrapper

_HEAD_ATTRIBUTES = ("classifier", "score", "fc", "head")


@dataclass
class LayerGroup:
    name: str
    parameters: dict[str, nn.Parameter] = field(default_factory=dict)  # full parameter name -> parameter


def head_module(model: nn.Module) -> nn.Module:
    """The module that maps pooled features to logits (the part a new task replaces)."""
    if is_timm_wrapper(model):
        return model.timm_model.get_classifier()
    for name in _HEAD_ATTRIBUTES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return module
    raise ValueError(f"cannot find the classification head of {type(model).__name__}")


def trained_head(model: nn.Module) -> nn.Module:
    """`head_module`, or, in a peft model (LoRA), the copy of it that trains and is saved (`modules_to_save`)."""
    head = head_module(model)
    copies = getattr(head, "modules_to_save", None)
    return copies[head.active_adapter] if isinstance(copies, nn.ModuleDict) else head


def head_parameter_names(model: nn.Module) -> set[str]:
    """The new task head's parameters. One rule: everything outside the pretrained base model (`model.<base_model_prefix>`,
    e.g. `bert`, `distilbert`, `vit`) is task head, newly initialised when the checkpoint is loaded for classification:
    BERT's classifier, RoBERTa's two-layer head, DistilBERT's pre_classifier + classifier, DeBERTa-v2's pooler. For timm
    models (and anything without a base model) it is the classifier module."""
    base = _base_model(model)
    head_module_ids = {id(p) for p in head_module(model).parameters()}
    base_ids = {id(p) for p in base.parameters()} if base is not None else set()
    return {name for name, p in model.named_parameters()
            if id(p) in head_module_ids or (base is not None and id(p) not in base_ids)}


def head_module_names(model: nn.Module) -> list[str]:
    """The top-level modules that hold the head's parameters (outermost first), e.g. ['pre_classifier', 'classifier']."""
    names = head_parameter_names(model)
    modules = []
    for name, module in model.named_modules():
        params = [f"{name}.{n}" if name else n for n, _ in module.named_parameters()]
        if name and params and all(p in names for p in params) and not any(name.startswith(m + ".") for m in modules):
            modules.append(name)
    return modules


def _base_model(model: nn.Module) -> nn.Module | None:
    if is_timm_wrapper(model):
        return None
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if isinstance(prefix, str) and prefix else None
    return base if isinstance(base, nn.Module) and base is not model else None


def checkpoint_pooling(model: nn.Module) -> str:
    """How the checkpoint's authors pooled token states into one vector: 'mean', 'max' or 'cls' from a
    sentence-transformers Pooling config saved with it (modules.json), else 'head' (whatever the classifier reads).

    A sentence-transformers model (e.g. all-MiniLM-L6-v2) was trained so that the mean of its token states carries the
    sentence's meaning; its [CLS] pooler was never trained for that."""
    return _saved_pooling(str(getattr(model, "name_or_path", "") or ""))


@lru_cache(maxsize=64)
def _saved_pooling(folder_name: str) -> str:
    import json

    try:
        modules = json.loads(_checkpoint_file(folder_name, "modules.json"))
        pooling = next(m for m in modules if m.get("type", "").endswith("models.Pooling"))
        config = json.loads(_checkpoint_file(folder_name, f"{pooling.get('path', '')}/config.json".lstrip("/")))
    except (OSError, ValueError, TypeError, StopIteration, AttributeError):
        return "head"
    for mode in ("mean", "max", "cls"):
        if config.get(f"pooling_mode_{mode}_tokens") or config.get(f"pooling_mode_{mode}_token"):
            return mode
    return "mean" if config.get("pooling_mode_mean_sqrt_len_tokens") else "head"


def _checkpoint_file(folder_name: str, filename: str) -> str | None:
    """A file of a local checkpoint folder, or of a Hub model repo through the HF cache (offline: cached files
    only), found as transformers finds a model's optional files; None when it has no such file."""
    from pathlib import Path

    from transformers.utils import cached_file

    path = cached_file(folder_name, filename, _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False, _raise_exceptions_for_gated_repo=False)
    return Path(path).read_text() if path else None


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """[B, T, D] token states -> [B, D] by the checkpoint's pooling, padding excluded."""
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


@contextmanager
def capture_pooled_features(model: nn.Module, attention_mask: torch.Tensor | None = None):
    """Within the block, `features[0]` holds the pooled features of that forward: the last input of the head, or,
    for a text checkpoint saved with a sentence-transformers pooling (see :func:`checkpoint_pooling`) and given the
    batch's `attention_mask`, its encoder's token states pooled that way."""
    features: list[torch.Tensor] = []
    pooling = checkpoint_pooling(model) if attention_mask is not None else "head"
    encoder = getattr(model, getattr(model, "base_model_prefix", ""), None) if pooling != "head" else None

    if isinstance(encoder, nn.Module):
        def hook(_module, _args, output):
            hidden = output[0]  # last_hidden_state, in a tuple or a ModelOutput
            features[:] = [pool_tokens(hidden, attention_mask, pooling)]

        handle = encoder.register_forward_hook(hook)
    else:
        def hook(_module, args):
            features[:] = [args[0]]

        handle = head_module(model).register_forward_pre_hook(hook)
    try:
        yield features
    finally:
        handle.remove()


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """Parameters split into groups ordered from the input to the head; the head is always the last group."""
    head_names = head_parameter_names(model)
    named = dict(model.named_parameters())
    if is_timm_wrapper(model):
        groups = _timm_groups(model)
    elif getattr(model, "base_model_prefix", "") and hasattr(model, model.base_model_prefix):
        groups = _transformer_groups(model)
    else:
        groups = [LayerGroup(name, {f"{name}.{n}": p for n, p in child.named_parameters()})
                  for name, child in model.named_children()]
    groups = [LayerGroup(g.name, {n: p for n, p in g.parameters.items() if n not in head_names}) for g in groups]
    groups = [g for g in groups if g.parameters]
    groups.append(LayerGroup("head", {n: named[n] for n in named if n in head_names}))
    covered = {n for g in groups for n in g.parameters}
    missing = [n for n in named if n not in covered]
    if missing:  # anything the matcher did not place trains with the group just below the head
        groups[-2 if len(groups) > 1 else -1].parameters.update({n: named[n] for n in missing})
    return groups


def _timm_groups(model) -> list[LayerGroup]:
    from timm.models import group_parameters

    timm_model = model.timm_model
    grouped = group_parameters(timm_model, timm_model.group_matcher(coarse=True))
    named = dict(model.named_parameters())
    groups = []
    for index, names in sorted(grouped.items()):
        first = names[0].split(".")[0]
        label = f"{first}.{names[0].split('.')[1]}" if first in ("blocks", "stages", "layers", "layer") else first
        groups.append(LayerGroup(label if index else "stem", {f"timm_model.{n}": named[f"timm_model.{n}"] for n in names}))
    return groups


def _transformer_groups(model) -> list[LayerGroup]:
    """BERT-style: embeddings, each encoder layer in order, then pooler and anything else of the base model."""
    prefix = model.base_model_prefix + "."
    groups: dict[tuple[int, int, str], LayerGroup] = {}
    for name, param in model.named_parameters():
        rest = name.removeprefix(prefix)
        # BERT encoder.layer.N, DistilBERT transformer.layer.N, GPT h.N, ConvNeXt/ResNet encoder.stages.N, Swin layers.N
        layer = re.match(r"(?:encoder\.|transformer\.)?(?:layer|layers|h|block|stages)\.(\d+)\.", rest)
        if layer:
            key = (1, int(layer.group(1)), f"layer.{int(layer.group(1))}")
        elif rest.startswith("embed"):  # embeddings (BERT, ViT), embedder (ResNet)
            key = (0, 0, rest.split(".")[0])
        else:
            key = (2, 0, rest.split(".")[0])
        groups.setdefault(key, LayerGroup(key[2])).parameters[name] = param
    return [groups[k] for k in sorted(groups)]
