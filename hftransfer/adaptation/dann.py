"""DANN (Ganin et al., 2016): adversarial domain confusion through a gradient reversal layer."""

from __future__ import annotations

from dataclasses import dataclass

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import (LOSS_COMPONENTS, AdaptationContext, ComponentConfig, LossComponent, balanced_domain_bce,
                   default_dann_lr_scale, default_reversal_strength, domain_discriminator, module_device, warmup_factor)
from .grl import dann_coefficient, grad_reverse


@dataclass
class DANNConfig(ComponentConfig):
    """A domain discriminator behind a gradient reversal (DANN; CDAN's config extends it)."""

    hidden_dim: int = 256  # discriminator width
    num_layers: int = 2  # discriminator hidden layers
    batch_norm: bool = True
    dropout: float = 0.0
    schedule: bool = True  # the reversal ramps as 2 / (1 + exp(-gamma p)) - 1 (DANN)
    gamma: float = 10.0
    max_coefficient: float | None = None  # the reversal's full strength; None: by the model's family (setup)
    # the discriminator's LR, relative to DISCRIMINATOR_LR_SCALE x --learning_rate; None: by the model's family (setup)
    lr_scale: float | None = None


@LOSS_COMPONENTS.register("dann")
class DANNLoss(LossComponent):
    """A domain discriminator on gradient-reversed pooled features; its BCE is the term.

    The discriminator minimises the domain BCE, the feature extractor (through the reversal) maximises
    it. The reversal coefficient follows :func:`dann_coefficient` (``schedule=True``) scaled by
    ``max_coefficient``, or stays at ``max_coefficient``; ``warmup`` ramps it too (the discriminator's own loss keeps
    its full weight, so it learns to tell the domains apart from the first step). The discriminator is a new
    network: it learns at 10x ``--learning_rate`` (``DISCRIMINATOR_LR_SCALE``) times ``lr_scale`` (by default 1 for
    vision backbones and 0.1 for text encoders: :func:`default_dann_lr_scale`).
    """

    name = "dann"
    needs_target = True
    warmup_ramps_term = False  # the warm-up ramps the reversal (see coefficient); the discriminator learns from step 0
    config_class = DANNConfig
    confused_loss = math.log(2)  # the balanced domain BCE of a discriminator that cannot tell the domains apart

    def __init__(self, config: DANNConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self.discriminator: nn.Module | None = None

    def setup(self, model: nn.Module | None = None, feature_dim: int | None = None,
              num_classes: int | None = None, **kwargs: Any) -> None:
        if self.max_coefficient is None:
            self.max_coefficient = default_reversal_strength(model)
        if self.lr_scale is None:
            self.lr_scale = default_dann_lr_scale(model)
        if feature_dim is None:
            self._require_setup(False, "feature_dim")
        self.discriminator = domain_discriminator(int(feature_dim), self.hidden_dim, self.num_layers,
                                                  self.batch_norm, self.dropout)
        device = module_device(model)
        if device is not None:
            self.discriminator.to(device)

    def coefficient(self, progress: float) -> float:
        """The gradient reversal's strength: max_coefficient x the DANN schedule x the warm-up factor."""
        ramp = dann_coefficient(progress, self.gamma) if self.schedule else 1.0
        strength = 1.0 if self.max_coefficient is None else self.max_coefficient
        return strength * ramp * warmup_factor(progress, self.warmup)

    def loss(self, ctx: AdaptationContext) -> Tensor:
        self._require_setup(self.discriminator is not None, "discriminator")
        fs, ft = self._require(ctx, "features_source", "features_target")
        features = torch.cat([fs, ft.to(fs.dtype)], dim=0)
        domain_logits = self.discriminator(grad_reverse(features, self.coefficient(ctx.progress)))
        return balanced_domain_bce(domain_logits[: fs.shape[0]], domain_logits[fs.shape[0]:])
