"""Batch Spectral Shrinkage (Chen et al., 2019): suppress the smallest singular directions of the features."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hftransfer.errors import ConfigError

from .base import LOSS_COMPONENTS, ComponentConfig, AdaptationContext, LossComponent, float32_math


def batch_spectral_shrinkage(features: Tensor, k: int = 1) -> Tensor:
    """Sum of the ``k`` smallest squared singular values of the feature matrix [B, D] (float32 scalar)."""
    f = features.float().flatten(1)
    with float32_math(f):
        singular_values = torch.linalg.svdvals(f)  # descending, min(B, D) of them
        k = min(k, singular_values.shape[0])
        return singular_values[-k:].pow(2).sum()


@dataclass
class BSSConfig(ComponentConfig):
    weight: float = 0.001  # the paper's eta
    k: int = 1  # how many of the smallest singular values are shrunk

    def __post_init__(self):
        super().__post_init__()
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")


@LOSS_COMPONENTS.register("bss")
class BSSLoss(LossComponent):
    """BSS on the source features; the paper's eta = 0.001 is the default weight."""

    name = "bss"
    needs_target = False
    config_class = BSSConfig

    def loss(self, ctx: AdaptationContext) -> Tensor:
        (fs,) = self._require(ctx, "features_source")
        return batch_spectral_shrinkage(fs, self.k)
