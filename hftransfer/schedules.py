"""Learning-rate schedules the toolkit adds to transformers' `--lr_scheduler_type` choices.

    --lr_scheduler_type annealing                       # DANN/TLlib: lr * (1 + gamma * p) ** -power, p = progress
    --lr_scheduler_type annealing --lr_scheduler_kwargs '{"gamma": 10, "power": 0.75}'
    --lr_scheduler_type step                            # lr * 0.1 at 1/3 and 2/3 of the post-warm-up steps
    --lr_scheduler_type step --lr_scheduler_kwargs '{"milestones": [0.5, 0.75], "gamma": 0.1}'

Every schedule here is a multiplier of the step, so the trainer composes it with each layer group's strategy factor
exactly as it does transformers' own LambdaLR schedules.
"""

from __future__ import annotations

from typing import Callable

from .errors import ConfigError
from .registry import Registry

ScheduleFactory = Callable[..., Callable[[int], float]]
SCHEDULES: Registry[ScheduleFactory] = Registry("learning-rate schedule")


def _warmup(step: int, num_warmup_steps: int) -> float:
    """The linear warm-up every schedule here starts with (step < num_warmup_steps)."""
    return (step + 1) / (num_warmup_steps + 1)


@SCHEDULES.register("annealing")
def annealing(num_warmup_steps: int, num_training_steps: int, gamma: float = 10.0,
              power: float = 0.75) -> Callable[[int], float]:
    """Ganin et al. (2016) and TLlib's domain-adaptation schedule: linear warm-up, then lr * (1 + gamma * p) ** -power,
    p the fraction of the post-warm-up steps done (at the end of training, 10 and 0.75 leave 0.166 of the peak)."""
    if gamma < 0 or power < 0:
        raise ConfigError(f"annealing schedule needs gamma >= 0 and power >= 0, got {gamma} and {power}; "
                          "pass --lr_scheduler_kwargs '{\"gamma\": 10, \"power\": 0.75}'")
    decay_steps = max(1, num_training_steps - num_warmup_steps)

    def factor(step: int) -> float:
        if step < num_warmup_steps:
            return _warmup(step, num_warmup_steps)
        progress = min(1.0, (step - num_warmup_steps) / decay_steps)
        return (1.0 + gamma * progress) ** -power

    return factor


@SCHEDULES.register("step")
def step_decay(num_warmup_steps: int, num_training_steps: int, milestones: list[float] | None = None,
               gamma: float = 0.1) -> Callable[[int], float]:
    """Step decay (torch's MultiStepLR, the classic ImageNet/fine-tuning schedule): linear warm-up, then the rate is
    multiplied by gamma at each milestone, given as a fraction (0 < m < 1) of the post-warm-up steps, so the schedule
    means the same for any run length. Default milestones: 1/3 and 2/3."""
    milestones = [1 / 3, 2 / 3] if milestones is None else milestones
    if not isinstance(milestones, list) or not all(isinstance(m, (int, float)) and 0 < m < 1 for m in milestones):
        raise ConfigError(f"step schedule milestones must be fractions of training between 0 and 1, got {milestones!r}; "
                          "pass --lr_scheduler_kwargs '{\"milestones\": [0.5, 0.75]}'")
    if not 0 < gamma <= 1:
        raise ConfigError(f"step schedule gamma must be in (0, 1], got {gamma}; pass e.g. '{{\"gamma\": 0.1}}'")
    decay_steps = max(1, num_training_steps - num_warmup_steps)
    boundaries = sorted(num_warmup_steps + round(m * decay_steps) for m in milestones)

    def factor(step: int) -> float:
        if step < num_warmup_steps:
            return _warmup(step, num_warmup_steps)
        return gamma ** sum(step >= b for b in boundaries)

    return factor


def check_schedule_kwargs(name: str, kwargs: dict | str | None) -> None:
    """Bad --lr_scheduler_kwargs for one of these schedules (unknown names, values the schedule rejects) fail at parse
    time, not at the first step: the schedule is built once here, as the trainer will build it. From the command line
    the value is still the JSON text that TrainingArguments parses later."""
    import inspect
    import json

    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs) if kwargs.strip() else {}
        except ValueError:
            raise ConfigError(f"--lr_scheduler_kwargs {kwargs!r} is not JSON; write e.g. "
                              "'{\"gamma\": 10, \"power\": 0.75}'") from None
    kwargs = kwargs or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--lr_scheduler_kwargs must be a JSON object, got {kwargs!r}; "
                          "write e.g. '{\"gamma\": 10}'")
    factory = SCHEDULES.get(name)
    try:
        inspect.signature(factory).bind(0, 1, **kwargs)
    except TypeError:
        allowed = [p for p in inspect.signature(factory).parameters if not p.startswith("num_")]
        unknown = sorted(set(kwargs) - set(allowed))
        raise ConfigError(f"--lr_scheduler_kwargs has {', '.join(unknown)}, which the {name} schedule does not take; "
                          f"use {', '.join(allowed)}") from None
    factory(0, 1, **kwargs)


class PlateauWithFactors:
    """A ReduceLROnPlateau whose reductions act on each optimizer group's own learning rate, times a factor per group
    and step (a strategy's head scale, layer decay, 0 while frozen), which transformers' plateau schedule would drop.

    The plateau rule sees the unscaled rates (so a frozen group's 0 never sticks); :meth:`apply` sets each group's
    rate for the coming step."""

    def __new__(cls, optimizer, factors, **plateau_options):
        import torch

        class _Plateau(torch.optim.lr_scheduler.ReduceLROnPlateau):  # transformers steps it by this type, with metrics
            def __init__(self):
                super().__init__(optimizer, **plateau_options)
                self.factors = factors
                self.unscaled = [group["lr"] for group in optimizer.param_groups]
                self.current_step = 0
                self.apply(0)

            def step(self, metrics, epoch=None):  # type: ignore[override]
                for group, lr in zip(self.optimizer.param_groups, self.unscaled):
                    group["lr"] = lr
                super().step(metrics, epoch) if epoch is not None else super().step(metrics)
                self.unscaled = [group["lr"] for group in self.optimizer.param_groups]
                self.apply(self.current_step)

            def state_dict(self):  # the factors are functions of the strategy, rebuilt with it, not saved
                return {k: v for k, v in super().state_dict().items() if k != "factors"}

            def load_state_dict(self, state_dict):
                super().load_state_dict({k: v for k, v in state_dict.items() if k != "factors"})

            def apply(self, step: int) -> None:
                self.current_step = step
                for group, lr, factor in zip(self.optimizer.param_groups, self.unscaled, self.factors):
                    group["lr"] = lr * factor(step)

        return _Plateau()
