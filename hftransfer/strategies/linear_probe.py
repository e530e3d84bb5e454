from . import STRATEGIES
from .base import Strategy


@STRATEGIES.register("linear_probe")
class LinearProbe(Strategy):
    """Only the head trains; the backbone is out of autograd and its BatchNorm statistics stay fixed."""

    name = "linear_probe"
    default_head_init = "fit"  # the head starts at the logistic-regression optimum on the frozen features

    def trainable_at(self, step):
        return [i == len(self.groups) - 1 for i in range(len(self.groups))]

    def frozen_forever(self):
        return [i < len(self.groups) - 1 for i in range(len(self.groups))]
