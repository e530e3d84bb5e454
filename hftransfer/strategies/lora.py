from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from . import STRATEGIES
from .base import Strategy, StrategyConfig
from ..models.groups import LayerGroup, head_module_names


@dataclass
class LoRAConfig(StrategyConfig):
    lora_r: int = field(default=8, metadata={"help": "lora: adapter rank."})
    lora_alpha: int = field(default=16, metadata={"help": "lora: scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "lora: adapter dropout."})
    lora_target: str | None = field(
        default=None, metadata={"help": "lora: comma-separated module names (default: backbone linears/1x1 convs)."}
    )


@STRATEGIES.register("lora")
class LoRA(Strategy):
    """peft LoRA adapters on the backbone's linear/1x1-conv layers; the new head trains in full and is saved.

    The output folder holds the merged plain model (loads anywhere) and the adapter itself under `adapter/`.
    """

    name = "lora"
    config_class = LoRAConfig
    default_head_init = "fit"  # the adapters start at zero (the frozen features): the head starts at their fit

    def prepare_model(self, model: nn.Module) -> nn.Module:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            from ..errors import ConfigError

            raise ConfigError("--strategy lora needs peft; install it with `pip install 'hftransfer[lora]'`") from None
        head_names = head_module_names(model)  # the new head, e.g. DistilBERT's pre_classifier and classifier
        targets = self.lora_target.split(",") if self.lora_target else _default_targets(model, head_names)
        config = LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                            target_modules=targets, modules_to_save=head_names)
        return get_peft_model(model, config)

    def attach(self, trainer) -> None:
        self._trainer = trainer
        self._distributed = trainer.args.world_size > 1
        named = dict(trainer.model.named_parameters())
        lora = {n: p for n, p in named.items() if "lora_" in n}
        head = {n: p for n, p in named.items() if "modules_to_save" in n}
        self.groups = [LayerGroup("lora_adapters", lora), LayerGroup("head", head)]
        self._scheduled = [False, False]
        from .base import _StrategyCallback

        trainer.add_callback(_StrategyCallback(self))

    def export_model(self, model: nn.Module) -> nn.Module:
        """A plain transformers model with the adapters merged in (the trained model is left untouched)."""
        import copy

        return copy.deepcopy(model).merge_and_unload()

    def finalize(self, trainer, output_dir) -> None:
        if trainer.is_world_process_zero():
            model = trainer.accelerator.unwrap_model(trainer.model)
            model.save_pretrained(Path(output_dir) / "adapter")
            from ..redact import public_adapter_files

            public_adapter_files(Path(output_dir) / "adapter")  # (checkpoints: TransferTrainer._save)
        super().finalize(trainer, output_dir)


def _default_targets(model: nn.Module, head_names: list[str]) -> list[str]:
    """Attention/MLP linears of transformers, 1x1 and dense convs of CNNs; never the head or depthwise convs."""
    targets = []
    for name, module in model.named_modules():
        if any(name == head or name.startswith(head + ".") for head in head_names):
            continue
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1):
            targets.append(name)
    return targets
