from dataclasses import dataclass, field

from . import STRATEGIES
from .base import Strategy, StrategyConfig, norm_or_bias


@dataclass
class BitFitConfig(StrategyConfig):
    bitfit_norms: bool = field(default=True, metadata={"help": "bitfit: also train normalisation weights."})


@STRATEGIES.register("bitfit")
class BitFit(Strategy):
    """BitFit (Ben Zaken et al. 2022): only bias terms (and, by default, norm weights) of the backbone, plus the head."""

    name = "bitfit"
    config_class = BitFitConfig
    default_norm_statistics = "pretrained"  # the backbone's features stay what the head is fitted to
    default_head_init = "fit"  # few parameters move the features: start the head at their logistic-regression fit

    def attach(self, trainer):
        super().attach(trainer)
        for group in self.groups[:-1]:
            for name, param in group.parameters.items():
                keep = name.endswith(".bias") or (self.bitfit_norms and norm_or_bias(name, param))
                param.requires_grad_(keep)
