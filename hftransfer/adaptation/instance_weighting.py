"""Importance weighting of the source loss by a domain classifier (covariate-shift correction).

A small classifier learns source-vs-target on detached features (its BCE is this component's
term, so only the classifier learns from it). Source sample x then gets the weight
``p(target | x) / p(source | x)`` (the density ratio up to a constant), clipped and normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import math
from typing import Any

import torch
from torch import Tensor, nn

from hftransfer.errors import ConfigError

from .base import (LOSS_COMPONENTS, ComponentConfig, AdaptationContext, LossComponent, balanced_domain_bce, float32_math, module_device,
                   warmup_factor)

_BISECTION_STEPS = 40


def clipped_unit_mean_weights(log_ratio: Tensor, min_weight: float, max_weight: float) -> Tensor:
    """Weights ``clamp(c * exp(log_ratio), min_weight, max_weight)`` with ``c`` chosen so their mean is 1.

    ``mean(clamp(c * r))`` is continuous and non-decreasing in ``c`` and spans [min_weight,
    max_weight], so for ``min_weight <= 1 <= max_weight`` a fixed number of bisection steps on
    ``log c`` (tensor ops only, no host sync) gives weights that respect both the clip and mean 1.
    """
    lr = log_ratio.float()
    lo_w, hi_w = math.log(min_weight), math.log(max_weight)
    lower = lo_w - lr.max()  # every weight at min_weight: mean <= 1
    upper = hi_w - lr.min()  # every weight at max_weight: mean >= 1
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lower + upper)
        too_small = torch.exp((lr + mid).clamp(lo_w, hi_w)).mean() < 1.0
        lower = torch.where(too_small, mid, lower)
        upper = torch.where(too_small, upper, mid)
    return torch.exp((lr + 0.5 * (lower + upper)).clamp(lo_w, hi_w))


@dataclass
class InstanceWeightingConfig(ComponentConfig):
    hidden_dim: int = 0  # 0: a logistic domain classifier; else one hidden layer of this width
    min_weight: float = 0.1  # source-loss weights are clipped to [min_weight, max_weight]
    max_weight: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.min_weight <= 1.0 <= self.max_weight:
            raise ConfigError(f"need 0 < min_weight <= 1 <= max_weight, got {self.min_weight}, "
                              f"{self.max_weight}")


@LOSS_COMPONENTS.register("instance_weighting")
class InstanceWeighting(LossComponent):
    """Domain classifier on detached features + density-ratio weights for the source task loss.

    ``hidden_dim=0`` (default) makes the classifier a logistic layer, otherwise a one-hidden-layer
    MLP. Its last layer starts at zero, so before it has learned anything every weight is 1.
    ``warmup`` ramps the source-loss weights: they move linearly from 1 to the estimated ones, while the
    classifier's own loss (scaled by ``weight`` alone) trains it from the first step.
    """

    name = "instance_weighting"
    needs_target = True
    warmup_ramps_term = False  # the warm-up ramps the source weights; the classifier learns from step 0
    config_class = InstanceWeightingConfig

    def __init__(self, config: InstanceWeightingConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self.classifier: nn.Module | None = None

    def setup(self, model: nn.Module | None = None, feature_dim: int | None = None,
              num_classes: int | None = None, **kwargs: Any) -> None:
        if feature_dim is None:
            raise ConfigError("loss component 'instance_weighting' needs feature_dim in setup()")
        if self.hidden_dim > 0:
            last = nn.Linear(self.hidden_dim, 1)
            self.classifier = nn.Sequential(nn.Linear(int(feature_dim), self.hidden_dim), nn.ReLU(), last)
        else:
            last = nn.Linear(int(feature_dim), 1)
            self.classifier = last
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        device = module_device(model)
        if device is not None:
            self.classifier.to(device)

    def domain_logits(self, features: Tensor) -> Tensor:
        """Logit of 'target' for each row, float32 [B] (classifier run in float32)."""
        self._require_setup(self.classifier is not None, "domain classifier")
        x = features.float()
        with float32_math(x):
            return self.classifier(x).reshape(-1)

    def loss(self, ctx: AdaptationContext) -> Tensor:
        fs, ft = self._require(ctx, "features_source", "features_target")
        # labels here: target = 1, so pass (target, source) to the source-is-1 helper
        return balanced_domain_bce(self.domain_logits(ft.detach()), self.domain_logits(fs.detach()))

    @torch.no_grad()
    def source_loss_weights(self, ctx: AdaptationContext) -> Tensor | None:
        (fs,) = self._require(ctx, "features_source")
        ramp = warmup_factor(ctx.progress, self.warmup)
        # logit of p(target|x) is log p(target|x) - log p(source|x): the log density ratio up to a constant
        weights = clipped_unit_mean_weights(self.domain_logits(fs.detach()), self.min_weight, self.max_weight)
        if ramp < 1.0:
            weights = 1.0 + ramp * (weights - 1.0)
        return weights
