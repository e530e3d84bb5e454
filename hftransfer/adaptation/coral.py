"""Deep CORAL (Sun & Saenko, 2016): match second-order statistics of source and target features."""

from __future__ import annotations

from torch import Tensor

from .base import LOSS_COMPONENTS, AdaptationContext, LossComponent, float32_math


def _covariance(x: Tensor) -> Tensor:
    centered = x - x.mean(dim=0, keepdim=True)
    return centered.T @ centered / max(x.shape[0] - 1, 1)


def coral(x: Tensor, y: Tensor) -> Tensor:
    """``||C_x - C_y||_F^2 / (4 d^2)`` with unbiased feature covariances (float32 scalar)."""
    x, y = x.float().flatten(1), y.float().flatten(1)
    d = x.shape[1]
    with float32_math(x):
        diff = _covariance(x) - _covariance(y)
        return (diff * diff).sum() / (4.0 * d * d)


@LOSS_COMPONENTS.register("coral")
class CORALLoss(LossComponent):
    """CORAL between pooled source and target features (see :func:`coral`)."""

    name = "coral"
    needs_target = True

    def loss(self, ctx: AdaptationContext) -> Tensor:
        fs, ft = self._require(ctx, "features_source", "features_target")
        return coral(fs, ft)
