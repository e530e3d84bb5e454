from . import STRATEGIES
from .base import Strategy, norm_or_bias


@STRATEGIES.register("bitfit")
class BitFit(Strategy):
    """BitFit (Ben Zaken et al. 2022): only bias terms (and, by default, norm weights) of the backbone, plus the head."""

    name = "bitfit"
    default_norm_statistics = "pretrained"  # the backbone's features stay what the head is fitted to

    def __init__(self, bitfit_norms: bool = True, **kw):
        super().__init__(bitfit_norms=bitfit_norms, **kw)
        self.bitfit_norms = bitfit_norms

    def attach(self, trainer):
        super().attach(trainer)
        for group in self.groups[:-1]:
            for name, param in group.parameters.items():
                keep = name.endswith(".bias") or (self.bitfit_norms and norm_or_bias(name, param))
                param.requires_grad_(keep)
