"""Batch Spectral Shrinkage (Chen et al., 2019): suppress the smallest singular directions of the features."""

from __future__ import annotations

import torch
from torch import Tensor

from hftransfer.errors import ConfigError

from .base import LOSS_COMPONENTS, AdaptationContext, LossComponent, float32_math


def batch_spectral_shrinkage(features: Tensor, k: int = 1) -> Tensor:
    """Sum of the ``k`` smallest squared singular values of the feature matrix [B, D] (float32 scalar)."""
    f = features.float().flatten(1)
    with float32_math(f):
        singular_values = torch.linalg.svdvals(f)  # descending, min(B, D) of them
        k = min(k, singular_values.shape[0])
        return singular_values[-k:].pow(2).sum()


@LOSS_COMPONENTS.register("bss")
class BSSLoss(LossComponent):
    """BSS on the source features; the paper's eta = 0.001 is the default weight."""

    name = "bss"
    needs_target = False

    def __init__(self, weight: float = 0.001, warmup: float = 0.0, k: int = 1):
        super().__init__(weight, warmup)
        if k < 1:
            raise ConfigError(f"bss: k must be >= 1, got {k}")
        self.k = int(k)

    def loss(self, ctx: AdaptationContext) -> Tensor:
        (fs,) = self._require(ctx, "features_source")
        return batch_spectral_shrinkage(fs, self.k)
