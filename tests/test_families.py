"""Every common checkpoint family with every strategy: layer groups run from the input to the head, and every newly
initialised module (the task head: whatever lies outside the pretrained base model) trains in every phase."""

from __future__ import annotations

import re

import pytest
import torch
import transformers as T

from hftransfer.arguments import StrategyArguments
from hftransfer.models.groups import head_parameter_names, layer_groups
from hftransfer.strategies import STRATEGIES, build_strategy
from hftransfer.trainer import TransferTrainer
from hftransfer.training_args import TransferTrainingArguments

TEXT = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
FAMILIES = {
    "bert": lambda: T.BertForSequenceClassification(T.BertConfig(**TEXT)),
    "distilbert": lambda: T.DistilBertForSequenceClassification(
        T.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64)),
    "roberta": lambda: T.RobertaForSequenceClassification(T.RobertaConfig(**TEXT)),
    "deberta-v2": lambda: T.DebertaV2ForSequenceClassification(T.DebertaV2Config(**TEXT)),
    "electra": lambda: T.ElectraForSequenceClassification(T.ElectraConfig(embedding_size=16, **TEXT)),
    "albert": lambda: T.AlbertForSequenceClassification(T.AlbertConfig(embedding_size=16, **TEXT)),
    "xlm-roberta": lambda: T.XLMRobertaForSequenceClassification(T.XLMRobertaConfig(**TEXT)),
    "vit": lambda: T.ViTForImageClassification(T.ViTConfig(image_size=32, patch_size=8, **TEXT)),
    "convnext": lambda: T.ConvNextForImageClassification(T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)),
    "swin": lambda: T.SwinForImageClassification(
        T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=2)),
    "resnet": lambda: T.ResNetForImageClassification(T.ResNetConfig(hidden_sizes=[8, 16], depths=[1, 1], embedding_size=8)),
    **{f"timm-{arch}": (lambda arch=arch: _timm(arch)) for arch in ("resnet18", "efficientnet_b0", "convnext_atto", "vit_tiny_patch16_224")},
}
NEW_HEAD = {  # modules a classification checkpoint initialises afresh, beyond the final linear layer
    "distilbert": {"pre_classifier"}, "deberta-v2": {"pooler"}, "roberta": {"classifier.dense"},
    "electra": {"classifier.dense"}, "xlm-roberta": {"classifier.dense"},
}


def _timm(arch: str):
    import timm

    timm_model = timm.create_model(arch, pretrained=False, num_classes=3, img_size=32) if arch.startswith("vit") \
        else timm.create_model(arch, pretrained=False, num_classes=3)
    config = T.TimmWrapperConfig(architecture=arch, num_labels=3)
    model = T.TimmWrapperForImageClassification(config)
    model.timm_model = timm_model
    return model


def _batch(model, n: int = 4) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (n,), generator=generator)
    if model.config.model_type in ("vit", "convnext", "swin", "resnet", "timm_wrapper"):
        return {"pixel_values": torch.randn(n, 3, 32, 32, generator=generator), "labels": labels}
    return {"input_ids": torch.randint(5, 100, (n, 12), generator=generator), "attention_mask": torch.ones(n, 12, dtype=torch.long),
            "labels": labels}


def _is_new(name: str, model) -> bool:
    """Written independently of the code under test: outside the base model (transformers), the classifier (timm); under
    LoRA, the trainable copies peft keeps of those modules."""
    if "lora_" in name or ".original_module." in name:
        return False
    name = name.removeprefix("base_model.model.")
    if model.config.model_type == "timm_wrapper":
        return name.startswith("timm_model.fc.") or name.startswith("timm_model.head.")
    return not name.startswith(model.base_model_prefix + ".")


class OneBatch(torch.utils.data.Dataset):
    def __init__(self, batch):
        self.batch = batch

    def __len__(self):
        return len(self.batch["labels"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.batch.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_groups_run_from_input_to_head_and_the_head_is_everything_new(family):
    torch.manual_seed(0)
    model = FAMILIES[family]()
    groups = layer_groups(model)
    names = [g.name for g in groups]
    assert names[-1] == "head" and len(groups) >= 3, names  # at least an input group, a layer, the head
    indices = [int(m.group(1)) for n in names if (m := re.fullmatch(r"(?:layer|blocks|stages|layers|layer\d?)\.?(\d+)", n))]
    assert indices == sorted(indices), names  # per-layer groups, in depth order
    assert len(indices) >= 2 or family == "albert", names  # ALBERT's layers share one set of weights: one group
    head = set(groups[-1].parameters)
    assert head == head_parameter_names(model)
    for module in NEW_HEAD.get(family, ()):
        assert any(n.startswith(module + ".") for n in head), (module, sorted(head))
    assert sorted(n for g in groups for n in g.parameters) == sorted(n for n, _ in model.named_parameters())


@pytest.mark.parametrize("strategy", sorted(STRATEGIES.names()))
@pytest.mark.parametrize("family", ["distilbert", "roberta", "deberta-v2", "convnext", "timm-resnet18"])
def test_every_new_head_module_trains_with_every_strategy(family, strategy, tmp_path):
    """One optimizer step: every parameter of the new head moves, in the first phase of every strategy (gradual's
    phase 1 trains the head alone: DistilBERT's pre_classifier used to be frozen there as 'backbone')."""
    torch.manual_seed(0)
    model = FAMILIES[family]()
    batch = _batch(model)
    args = TransferTrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-2, warmup_steps=0,
        eval_strategy="no", save_strategy="no", load_best_model_at_end=False, dataloader_num_workers=0, seed=0,
        disable_tqdm=True, report_to="none", min_train_steps=0, max_grad_norm=0.0,
    )
    trainer = TransferTrainer(model=model, args=args, train_dataset=OneBatch(batch),
                              strategy=build_strategy(StrategyArguments(strategy=strategy, head_init="random")))
    trained = trainer.model
    head = {n for n, _ in trained.named_parameters() if _is_new(n, model)}
    assert head, "no head parameters found"
    before = {n: p.detach().clone() for n, p in trained.named_parameters() if n in head}
    trainer.train()
    moved = {n: not torch.equal(before[n], p.detach()) for n, p in trained.named_parameters() if n in head}
    assert all(moved.values()), [n for n, m in moved.items() if not m]


@pytest.mark.parametrize("family", ["distilbert", "deberta-v2", "timm-resnet18"])
def test_wise_ft_leaves_every_new_head_module_fine_tuned(family):
    """WiSE-FT interpolates the pretrained body only: a freshly initialised pre_classifier has no pretrained weights
    to move toward (it was interpolated with its random start before)."""
    from hftransfer.weights import head_state_keys

    model = FAMILIES[family]()
    expected = {k for k in model.state_dict() if _is_new(k, model)}
    assert head_state_keys(model) == expected
