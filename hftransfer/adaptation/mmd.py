"""Multi-kernel MMD (DAN, Long et al., 2015) between source and target features."""

from __future__ import annotations

from dataclasses import dataclass

from typing import Sequence

import torch
from torch import Tensor

from hftransfer.errors import ConfigError

from .base import LOSS_COMPONENTS, ComponentConfig, AdaptationContext, LossComponent, float32_math

DEFAULT_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _squared_distances(z: Tensor) -> Tensor:
    sq = (z * z).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)).clamp_min(0.0)


def mmd(x: Tensor, y: Tensor, multipliers: Sequence[float] = DEFAULT_MULTIPLIERS, unbiased: bool = False,
        sigma2: float | Tensor | None = None) -> Tensor:
    """Squared multi-kernel MMD between samples ``x`` [n, d] and ``y`` [m, d] (float32 scalar).

    Kernels: ``k_i(a, b) = exp(-||a - b||^2 / (2 * m_i * sigma2))`` averaged over the multipliers
    ``m_i``. ``sigma2`` defaults to the median heuristic: the median squared pairwise distance of the
    pooled sample (off-diagonal pairs, no gradient). ``unbiased=True`` drops the diagonal terms of
    K_xx and K_yy (U-statistic, can be slightly negative); the default V-statistic is >= 0.
    """
    if len(multipliers) == 0:
        raise ConfigError("mmd needs at least one bandwidth multiplier")
    n, m = x.shape[0], y.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise ConfigError("the unbiased MMD estimator needs at least 2 samples per domain")
    x, y = x.float().flatten(1), y.float().flatten(1)
    with float32_math(x):
        z = torch.cat([x, y.to(x.device)], dim=0)
        d2 = _squared_distances(z)
        if sigma2 is None:
            with torch.no_grad():
                rows, cols = torch.triu_indices(n + m, n + m, offset=1, device=z.device)
                base = d2[rows, cols].median().clamp_min(1e-12)
        else:
            base = torch.as_tensor(sigma2, dtype=torch.float32, device=z.device)
        scales = torch.as_tensor(list(multipliers), dtype=torch.float32, device=z.device)
        gammas = 1.0 / (2.0 * scales * base)  # [K]
        kernel = torch.exp(-d2.unsqueeze(0) * gammas[:, None, None]).mean(dim=0)  # [n+m, n+m]
        k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
        if unbiased:
            term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
            term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        else:
            term_xx, term_yy = k_xx.mean(), k_yy.mean()
        return term_xx + term_yy - 2.0 * k_xy.mean()


@dataclass
class MMDConfig(ComponentConfig):
    multipliers: tuple[float, ...] = DEFAULT_MULTIPLIERS  # Gaussian bandwidths, multiples of the median distance
    unbiased: bool = False

    def __post_init__(self):
        super().__post_init__()
        if len(self.multipliers) == 0 or any(float(v) <= 0 for v in self.multipliers):
            raise ConfigError(f"multipliers must be a non-empty list of positive numbers, got {list(self.multipliers)}")
        self.multipliers = tuple(float(v) for v in self.multipliers)


@LOSS_COMPONENTS.register("mmd")
class MMDLoss(LossComponent):
    """DAN-style multi-kernel MMD between pooled source and target features (see :func:`mmd`)."""

    name = "mmd"
    needs_target = True
    config_class = MMDConfig

    def loss(self, ctx: AdaptationContext) -> Tensor:
        fs, ft = self._require(ctx, "features_source", "features_target")
        return mmd(fs, ft, self.multipliers, self.unbiased)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, multipliers={self.multipliers}, unbiased={self.unbiased}"
