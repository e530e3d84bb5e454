from dataclasses import dataclass, field

from . import STRATEGIES
from .base import Strategy, StrategyConfig, epochs_to_steps


@dataclass
class GradualConfig(StrategyConfig):
    unfreeze_every: float | None = field(
        default=None, metadata={"help": "gradual: unfreeze one more group every N units (default: the groups join at "
                                "even steps over the first half of the run, so all of them train for its second half)."},
    )
    unfreeze_unit: str = field(default="epoch", metadata={"help": "gradual: 'epoch' or 'step'."})
    groups_per_phase: int = field(default=1, metadata={"help": "gradual: groups unfrozen at each phase change."})

    def __post_init__(self):
        super().__post_init__()
        if self.unfreeze_unit not in ("epoch", "step"):
            from ..errors import ConfigError

            raise ConfigError(f"--unfreeze_unit must be 'epoch' or 'step', not {self.unfreeze_unit!r}; pick one of the two")


@STRATEGIES.register("gradual")
class GradualUnfreezing(Strategy):
    """ULMFiT-style: the head first, then one more layer group from the top at each phase change.

    By default the phase changes are spread evenly over the first half of the run, so every group trains for the
    second half whatever the run's length; `unfreeze_every` N (epochs, or steps with `unfreeze_unit step`) fixes the
    phase length instead (ULMFiT: one epoch)."""

    name = "gradual"
    config_class = GradualConfig

    def phase(self, step: int) -> int:
        """How many phase changes have happened by this step."""
        if self.unfreeze_every is not None:
            length = int(self.unfreeze_every) if self.unfreeze_unit == "step" else epochs_to_steps(self, self.unfreeze_every)
            return step // max(1, length)
        below_head = len(self.groups) - 1 - min(self.freeze_groups, len(self.groups) - 1)
        changes = -(-below_head // self.groups_per_phase)
        half = max(1, self.max_steps // 2)
        return min(changes, step * changes // half)

    def trainable_at(self, step):
        count = len(self.groups)
        unfrozen = 1 + self.phase(step) * self.groups_per_phase  # counted from the head
        return [i >= count - unfrozen for i in range(count)]
