"""Strategy machinery: layer groups, per-group learning-rate scales and a step-indexed freezing schedule.

A strategy is a pure function of the training step: which layer groups train, and each group's learning-rate
scale. Everything else follows from that, which is what makes it correct under DDP and after resume:
- the optimizer holds every parameter from the start (HF's default optimizer skips frozen ones, so a group
  unfrozen later would never train);
- parameters frozen forever get `requires_grad=False` before DDP wraps the model (no backward through them);
- parameters frozen only for a while keep `requires_grad=True` under DDP (DDP never syncs a parameter that was
  frozen when it wrapped the model) and are held still by dropping their gradients before clipping and the
  optimizer step; in a single process they are also switched off in autograd to save the backward;
- learning-rate scales live in per-group LambdaLR factors multiplied onto the HF schedule, so they survive
  linear/cosine warm-up schedules (a plain `lr_scale` key is ignored by them);
- after resume, the phase is recomputed from the restored global step: nothing is re-frozen; the phases before
  the checkpoint come back from it (TransferTrainer keeps `state_dict()` in each checkpoint).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback

from ..models.groups import LayerGroup, layer_groups

HEAD_INITS = ("random", "fit", "fit_if_lengthened")


@dataclass
class Phase:
    start_step: int
    trainable: list[str]  # group names
    lr_scales: dict[str, float] = field(default_factory=dict)


@dataclass
class StrategyConfig:
    """The options every strategy takes. A strategy with options of its own registers a subclass as its
    `config_class`; the recipes' `--flags` (hftransfer.arguments.StrategyArguments), YAML keys and the model card's
    strategy record all come from these fields."""

    head_lr_scale: float = field(default=1.0, metadata={"help": "LR multiplier of the new head (e.g. 10)."})
    layer_decay: float | None = field(
        default=None, metadata={"help": "Layer-wise LR decay per group from the head (llrd default 0.75; composes)."}
    )
    norm_statistics: str | None = field(
        default=None,
        metadata={"help": "BatchNorm running statistics of trained layers: 'update' or 'pretrained' (kept in "
                  "inference mode throughout, as Keras's fine-tuning guide advises). Default: 'pretrained' for "
                  "lp_ft and bitfit, 'update' otherwise."},
    )
    head_init: str | None = field(
        default=None,
        metadata={"help": "How the new head starts: 'fit' (multinomial logistic regression on the frozen backbone's "
                  "features, by L-BFGS, before the first step), 'random', or 'fit_if_lengthened' ('fit' when "
                  "--min_train_steps lengthens the run, i.e. small data; 'random' otherwise). Default: 'fit' for "
                  "linear_probe, lp_ft, bitfit, lora and setfit; 'fit_if_lengthened' for the other strategies of "
                  "text_cls.py; 'random' otherwise."},
    )
    head_fit_c: float = field(
        default=1.0, metadata={"help": "head_init fit: inverse L2 strength, as scikit-learn LogisticRegression's C."}
    )
    freeze_groups: int = field(
        default=0,
        metadata={"help": "Keep the first N layer groups (from the input; never the head) frozen for the whole run, with "
                  "any strategy. A finished run's card suggests N from how far each group moved."},
    )

    def __post_init__(self):
        from ..errors import ConfigError

        if self.norm_statistics not in (None, "update", "pretrained"):
            raise ConfigError(f"--norm_statistics must be 'update' or 'pretrained', got {self.norm_statistics!r}; "
                              "pick one of the two")
        if self.head_init not in (None, *HEAD_INITS):
            raise ConfigError(f"--head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}; pick one")
        if not self.head_fit_c > 0:
            raise ConfigError(f"--head_fit_c must be a positive number, got {self.head_fit_c!r}; pass e.g. 1 "
                              "(scikit-learn's default C) or drop it")
        if self.freeze_groups < 0:
            raise ConfigError(f"--freeze_groups must be 0 or more, got {self.freeze_groups}; pass the number of layer "
                              "groups from the input to keep frozen")


class Strategy:
    """Base: everything trains at scale 1. Subclasses override `trainable_at` / `lr_scale` / `frozen_forever`, and
    set `config_class` when they take options of their own (every field becomes an attribute of the strategy)."""

    name = "base"
    config_class: type[StrategyConfig] = StrategyConfig
    default_norm_statistics = "update"  # BatchNorm running statistics of training layers move with the data
    default_head_init = "random"  # or "fit": logistic regression on the frozen features first (hftransfer.head_fit)

    def __init__(self, config: StrategyConfig | None = None, **options):
        if config is None:
            config = build_config(self.config_class, options, f"--strategy {self.name}")
        elif options:
            raise TypeError("pass either a config or options, not both")
        # the defaults that depend on the strategy are resolved here, so the record shows what the run used
        self.config = replace(config, norm_statistics=config.norm_statistics or self.default_norm_statistics,
                              head_init=config.head_init or self.default_head_init)
        for option in fields(self.config):
            setattr(self, option.name, getattr(self.config, option.name))
        self.head_fit: dict | None = None  # what the fit did, for the record
        self.groups: list[LayerGroup] = []
        self.steps_per_epoch = 1.0
        self.max_steps = 1
        self.phases: list[Phase] = []
        self._trainer = None
        self._distributed = False
        self._scheduled: list[bool] = []

    # ---- what subclasses describe ----

    def trainable_at(self, step: int) -> list[bool]:
        """One flag per group (input -> head) for the given optimizer step."""
        return [True] * len(self.groups)

    def lr_scale(self, group_index: int, step: int) -> float:
        depth = len(self.groups) - 1 - group_index  # head = 0
        scale = self.head_lr_scale if depth == 0 else 1.0
        if self.layer_decay is not None:
            scale *= self.layer_decay**depth
        return scale

    def frozen_forever(self) -> list[bool]:
        """Groups that never train at any step of any schedule length (safe to take out of autograd up front)."""
        return [False] * len(self.groups)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def settle_head_init(self, lengthened: bool) -> None:
        """'fit_if_lengthened' becomes 'fit' when --min_train_steps lengthened the run (small data) and 'random'
        otherwise, in the record too, before the head is fitted."""
        if self.head_init == "fit_if_lengthened":
            self.head_init = "fit" if lengthened else "random"
            self.config = replace(self.config, head_init=self.head_init)

    def before_training(self, trainer) -> None:
        """Once before the first optimizer step of a fresh run (not after a resume), before the head fit."""

    def describe(self) -> dict:
        """Every option of the run (its config, with the strategy's defaults resolved), for the record and the card."""
        return {"name": self.name, **asdict(self.config)}

    # ---- machinery ----

    def trains(self, step: int) -> list[bool]:
        """`trainable_at`, with the first `freeze_groups` groups (from the input; never the head) frozen throughout."""
        return [t and not self.held_still(i) for i, t in enumerate(self.trainable_at(step))]

    def _frozen_for_good(self) -> list[bool]:
        return [f or self.held_still(i) for i, f in enumerate(self.frozen_forever())]

    def held_still(self, index: int) -> bool:
        """Whether `--freeze_groups` keeps this group frozen throughout (phases before training included)."""
        return index < min(self.freeze_groups, len(self.groups) - 1)

    def attach(self, trainer) -> None:
        self._trainer = trainer
        self._distributed = trainer.args.world_size > 1
        model = trainer.model
        self.groups = layer_groups(model)
        if self.freeze_groups >= len(self.groups):
            from ..errors import ConfigError

            raise ConfigError(f"--freeze_groups {self.freeze_groups} would freeze the head too: this model has "
                              f"{len(self.groups) - 1} layer groups before it; pass at most {len(self.groups) - 2}, or "
                              "--strategy linear_probe")
        forever, at_start = self._frozen_for_good(), self.trains(0)
        for group, frozen in zip(self.groups, forever):
            if frozen:
                for p in group.parameters.values():
                    p.requires_grad_(False)
        # groups that start frozen and unfreeze later: the only ones whose autograd flag ever changes
        self._scheduled = [not frozen and not trainable for frozen, trainable in zip(forever, at_start)]
        trainer.add_callback(_StrategyCallback(self))

    def param_groups(self, model: nn.Module, args) -> list[dict]:
        decay = set(self._trainer.get_decay_parameter_names(model)) if self._trainer else set()
        groups = []
        for index, group in enumerate(self.groups):
            for wd_name, members in (("decay", True), ("no_decay", False)):
                params = [p for n, p in group.parameters.items() if (n in decay) == members and p.requires_grad]
                if params:
                    groups.append({
                        "params": params, "lr": args.learning_rate, "layer_group": index,
                        "weight_decay": args.weight_decay if members else 0.0, "name": f"{group.name}/{wd_name}",
                    })
        return groups

    def scheduler_factor(self, layer_group: int):
        return lambda step: self.lr_scale(layer_group, step) * (1.0 if self.trains(step)[layer_group] else 0.0)

    def apply_step(self, step: int, model: nn.Module | None = None) -> None:
        """Set autograd flags and norm-layer modes for this step; log a phase change."""
        flags = self.trains(step)
        for group, trainable, scheduled in zip(self.groups, flags, self._scheduled):
            if scheduled and not self._distributed:
                for p in group.parameters.values():
                    p.requires_grad_(trainable)
        trainable_names = [g.name for g, t in zip(self.groups, flags) if t]
        if not self.phases or self.phases[-1].trainable != trainable_names:
            scales = {g.name: round(self.lr_scale(i, step), 6) for i, g in enumerate(self.groups) if flags[i]}
            self.phases.append(Phase(step, trainable_names, scales))
            self._report(step, flags)

    def freeze_norm_statistics(self, model: nn.Module, step: int) -> None:
        """Norm layers of frozen groups stay in eval mode: their running statistics do not move either. With
        norm_statistics="pretrained", every backbone BatchNorm does (its affine weights may still train)."""
        flags = self.trains(step)
        if self.norm_statistics == "pretrained":
            flags = [False] * (len(self.groups) - 1) + [flags[-1]]
        frozen_params = {id(p) for g, t in zip(self.groups, flags) if not t for p in g.parameters.values()}
        if not frozen_params:
            return
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(
                id(p) in frozen_params for p in module.parameters(recurse=False)
            ):
                module.eval()

    def drop_frozen_gradients(self, step: int) -> None:
        """Gradients of groups frozen at this step are removed before clipping and the optimizer step."""
        for group, trainable in zip(self.groups, self.trains(step)):
            if not trainable:
                for p in group.parameters.values():
                    p.grad = None

    def _report(self, step: int, flags: list[bool]) -> None:
        trainer = self._trainer
        if trainer is None or not trainer.is_world_process_zero():
            return
        lines = [f"[hftransfer] strategy {self.name}: phase from step {step}"]
        for index, (group, trainable) in enumerate(zip(self.groups, flags)):
            count = sum(p.numel() for p in group.parameters.values())
            state = f"trains, lr x{self.lr_scale(index, step):.4g}" if trainable else "frozen"
            lines.append(f"    {group.name:<24} {count:>12,d} params  {state}")
        total = sum(p.numel() for g, t in zip(self.groups, flags) if t for p in g.parameters.values())
        lines.append(f"    trainable parameters: {total:,d}")
        print("\n".join(lines), flush=True)

    def finalize(self, trainer, output_dir: str | Path) -> None:
        """After the final save: record the strategy and its phases next to the model (read by the model card)."""
        if trainer.is_world_process_zero():
            self.save(output_dir)

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the phases so far, so a resumed run's record and model card list every phase."""
        return {"phases": [asdict(p) for p in self.phases], "head_fit": self.head_fit}

    def load_state_dict(self, state: dict) -> None:
        """Restore the phases of the run before its checkpoint (the step-indexed schedule itself needs nothing)."""
        self.phases = [Phase(**p) for p in state.get("phases", [])]
        self.head_fit = state.get("head_fit")

    def save(self, output_dir: str | Path) -> None:
        record = {"strategy": self.describe(), "phases": [asdict(p) for p in self.phases],
                  "groups": [g.name for g in self.groups], "head_fit": self.head_fit}
        Path(output_dir, "transfer_strategy.json").write_text(json.dumps(record, indent=2) + "\n")


class _StrategyCallback(TrainerCallback):
    def __init__(self, strategy: Strategy):
        self.strategy = strategy

    def on_train_begin(self, args, state, control, **kwargs):
        self.strategy.max_steps = max(1, state.max_steps)
        epochs = state.num_train_epochs or args.num_train_epochs
        stretched = getattr(self.strategy._trainer, "lengthened_epoch_steps", None)  # --min_train_steps
        self.strategy.steps_per_epoch = stretched or max(1.0, state.max_steps / max(epochs, 1e-9))
        self.strategy.apply_step(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self.strategy.apply_step(state.global_step)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.strategy.drop_frozen_gradients(state.global_step)


def build_config(config_class: type[StrategyConfig], options: dict, owner: str) -> StrategyConfig:
    """`config_class(**options)`, with an unknown option as one ConfigError line naming the ones there are."""
    known = [f.name for f in fields(config_class)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(f"{owner} has no option {unknown[0]!r}; its options are: {', '.join(known)}")
    return config_class(**options)


def epochs_to_steps(strategy: Strategy, epochs: float) -> int:
    return int(math.ceil(epochs * strategy.steps_per_epoch))


def norm_or_bias(name: str, param: torch.Tensor) -> bool:
    return name.endswith(".bias") or param.ndim <= 1
