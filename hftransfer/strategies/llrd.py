from dataclasses import dataclass

from . import STRATEGIES
from .base import Strategy, StrategyConfig


@dataclass
class LLRDConfig(StrategyConfig):
    layer_decay: float | None = 0.75


@STRATEGIES.register("llrd")
class LayerwiseLRDecay(Strategy):
    """Everything trains; the group at depth d from the head gets lr * layer_decay**d (BEiT/ELECTRA-style)."""

    name = "llrd"
    config_class = LLRDConfig
