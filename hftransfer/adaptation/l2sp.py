"""L2-SP (Li, Grandvalet & Davoine, 2018): keep fine-tuned weights near the pretrained starting point."""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any, Iterable

import torch
from torch import Tensor, nn

from hftransfer.errors import ConfigError

from .base import LOSS_COMPONENTS, ComponentConfig, AdaptationContext, LossComponent, float32_math

DEFAULT_HEAD_MARKERS = ("classifier", "head", "fc.")


def default_is_head(name: str) -> bool:
    return any(marker in name for marker in DEFAULT_HEAD_MARKERS)


@dataclass
class L2SPConfig(ComponentConfig):
    alpha: float = 0.01  # pull of the backbone toward its starting weights
    beta: float = 0.01  # plain L2 on the new head

    def __post_init__(self):
        super().__post_init__()
        if self.alpha < 0 or self.beta < 0:
            raise ConfigError(f"alpha and beta must be >= 0, got {self.alpha}, {self.beta}")


@LOSS_COMPONENTS.register("l2sp")
class L2SP(LossComponent):
    """``alpha/2 * ||w - w0||^2`` over backbone parameters + ``beta/2 * ||w||^2`` over new-head parameters.

    ``setup(model, head_param_names=...)`` snapshots the backbone (non-persistent buffers that follow
    the component across devices and are not saved). Head parameters: ``head_param_names`` or, by
    default, names containing 'classifier', 'head' or 'fc.'; parameters absent from the snapshot
    count as head. Frozen parameters (``requires_grad=False``) are skipped at each step.
    """

    name = "l2sp"
    needs_target = False
    config_class = L2SPConfig

    def __init__(self, config: L2SPConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self._buffer_of: dict[str, str] = {}  # parameter name -> buffer name of its starting value
        self._setup_model: tuple[nn.Module, ...] = ()  # a tuple, so the model is not registered as a child

    def setup(self, model: nn.Module | None = None, feature_dim: int | None = None,
              num_classes: int | None = None, head_param_names: Iterable[str] | None = None, **kwargs: Any) -> None:
        if model is None:
            raise ConfigError("loss component 'l2sp' needs the model in setup() to snapshot its starting weights")
        head = set(head_param_names) if head_param_names is not None else None
        for buffer_name in list(self._buffer_of.values()):
            delattr(self, buffer_name)
        self._buffer_of = {}
        for index, (param_name, param) in enumerate(model.named_parameters()):
            is_head = param_name in head if head is not None else default_is_head(param_name)
            if is_head:
                continue
            buffer_name = f"_start_{index}"
            self.register_buffer(buffer_name, param.detach().clone(), persistent=False)
            self._buffer_of[param_name] = buffer_name
        self._setup_model = (model,)

    def loss(self, ctx: AdaptationContext) -> Tensor:
        model = ctx.model if ctx.model is not None else (self._setup_model[0] if self._setup_model else None)
        if model is None or not self._setup_model:
            self._require_setup(False, "snapshot of the starting weights")
        backbone_terms: list[Tensor] = []
        head_terms: list[Tensor] = []
        reference = None
        for param_name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            reference = param
            with float32_math(param):
                buffer_name = self._buffer_of.get(param_name)
                if buffer_name is not None:
                    start = getattr(self, buffer_name)
                    if start.shape != param.shape:
                        raise ConfigError(f"l2sp: parameter {param_name} changed shape since setup(); call setup() again")
                    if self.alpha > 0:
                        backbone_terms.append((param.float() - start.float()).pow(2).sum())
                elif self.beta > 0:
                    head_terms.append(param.float().pow(2).sum())
        if reference is None:
            return self._zero(ctx)
        total = reference.new_zeros((), dtype=torch.float32)
        if backbone_terms:
            total = total + 0.5 * self.alpha * torch.stack(backbone_terms).sum()
        if head_terms:
            total = total + 0.5 * self.beta * torch.stack(head_terms).sum()
        return total

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}, beta={self.beta}, snapshot={len(self._buffer_of)} tensors"
