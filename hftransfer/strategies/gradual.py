from . import STRATEGIES
from .base import Strategy, epochs_to_steps


@STRATEGIES.register("gradual")
class GradualUnfreezing(Strategy):
    """ULMFiT-style: the head first, then one more layer group from the top every `unfreeze_every` epochs (or steps)."""

    name = "gradual"

    def __init__(self, unfreeze_every: float = 1.0, unfreeze_unit: str = "epoch", groups_per_phase: int = 1, **kw):
        if unfreeze_unit not in ("epoch", "step"):
            from ..errors import ConfigError

            raise ConfigError(f"unfreeze_unit must be 'epoch' or 'step', not {unfreeze_unit!r}")
        super().__init__(unfreeze_every=unfreeze_every, unfreeze_unit=unfreeze_unit,
                         groups_per_phase=groups_per_phase, **kw)
        self.unfreeze_every = unfreeze_every
        self.unfreeze_unit = unfreeze_unit
        self.groups_per_phase = groups_per_phase

    def phase_length(self) -> int:
        if self.unfreeze_unit == "step":
            return max(1, int(self.unfreeze_every))
        return max(1, epochs_to_steps(self, self.unfreeze_every))

    def trainable_at(self, step):
        phase = step // self.phase_length()
        count = len(self.groups)
        unfrozen = 1 + phase * self.groups_per_phase  # counted from the head
        return [i >= count - unfrozen for i in range(count)]
