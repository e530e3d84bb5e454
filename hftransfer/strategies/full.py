from . import STRATEGIES
from .base import Strategy


@STRATEGIES.register("full")
class FullFineTune(Strategy):
    """Everything trains; `head_lr_scale` gives the new head a larger LR (discriminative LR, e.g. 10x)."""

    name = "full"
