"""Gradient reversal layer (Ganin & Lempitsky, 2015) and DANN's coefficient schedule."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, coefficient: float) -> Tensor:  # type: ignore[override]
        ctx.coefficient = float(coefficient)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        return grad_output * (-ctx.coefficient), None


def grad_reverse(x: Tensor, coefficient: float = 1.0) -> Tensor:
    """Identity in the forward pass; multiplies the incoming gradient by ``-coefficient``."""
    return _GradientReversal.apply(x, coefficient)


def dann_coefficient(progress: float, gamma: float = 10.0) -> float:
    """DANN's ramp ``2 / (1 + exp(-gamma * p)) - 1``: 0 at p = 0, about 1 at p = 1 (gamma = 10)."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; ``forward(x, coefficient=None)`` uses ``self.coefficient`` by default."""

    def __init__(self, coefficient: float = 1.0):
        super().__init__()
        self.coefficient = float(coefficient)

    def forward(self, x: Tensor, coefficient: float | None = None) -> Tensor:
        return grad_reverse(x, self.coefficient if coefficient is None else coefficient)

    def extra_repr(self) -> str:
        return f"coefficient={self.coefficient}"
