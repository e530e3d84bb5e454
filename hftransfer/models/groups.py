"""A uniform view of a classifier: its head, its pooled features, and ordered layer groups (input -> head)."""

from __future__ import annotations

import re
from contextlib import contextmanager
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


def head_parameter_names(model: nn.Module) -> set[str]:
    head_ids = {id(p) for p in head_module(model).parameters()}
    return {name for name, p in model.named_parameters() if id(p) in head_ids}


@contextmanager
def capture_pooled_features(model: nn.Module):
    """Within the block, `features[0]` holds the last input of the head: the pooled features of that forward."""
    features: list[torch.Tensor] = []

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
        layer = re.match(r"(?:encoder\.)?(?:layer|layers|h|block)\.(\d+)\.", rest)
        if layer:
            key = (1, int(layer.group(1)), f"layer.{int(layer.group(1))}")
        elif rest.startswith("embeddings"):
            key = (0, 0, "embeddings")
        else:
            key = (2, 0, rest.split(".")[0])
        groups.setdefault(key, LayerGroup(key[2])).parameters[name] = param
    return [groups[k] for k in sorted(groups)]
