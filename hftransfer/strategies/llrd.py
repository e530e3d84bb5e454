from . import STRATEGIES
from .base import Strategy


@STRATEGIES.register("llrd")
class LayerwiseLRDecay(Strategy):
    """Everything trains; the group at depth d from the head gets lr * layer_decay**d (BEiT/ELECTRA-style)."""

    name = "llrd"

    def __init__(self, layer_decay: float | None = None, **kw):
        super().__init__(layer_decay=0.75 if layer_decay is None else layer_decay, **kw)
