"""SetFit-style few-label transfer (Tunstall et al. 2022): contrastive fine-tuning of the backbone on pairs of labelled
examples, then a logistic-regression head on the tuned features, then the head alone trains.

The contrastive phase runs once, before the first optimizer step of a fresh run (a resumed run's weights come from its
checkpoint). Each pass over the labelled examples pairs every example with one random example of its own class and one
of another class; the backbone learns to put the pair's sentence embeddings at cosine similarity 1 and 0 (SetFit's
CosineSimilarityLoss), with AdamW at SetFit's own defaults (body learning rate 2e-5, 16 pairs a step), linear warm-up
over 10% and decay; the run's --learning_rate and batch size are the head phase's. The embedding is the
pooling the checkpoint was trained with when its folder says (all-MiniLM: the mean of token states), else what the
head reads. Measured (tweets, 10 labels per class, seed 0, test accuracy after the head fit): contrasting the mean
of token states 0.560; contrasting the [CLS] pooler the head reads 0.503 at 5e-5 and 32 pairs a step, 0.535 at
SetFit's 2e-5 and 16; logistic regression on the frozen pooler 0.523. On the mean, seeds 0-2, the whole run: 0.567 at
the run's 5e-5 and 32 pairs, 0.567 at SetFit's 2e-5 and 16 (0.600 / 0.575 / 0.525). The phase keeps its own rate so
that the head phase's --learning_rate (e.g. 1e-2 for a head) never drives the encoder.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from . import STRATEGIES
from .base import StrategyConfig
from .linear_probe import LinearProbe



@dataclass
class SetFitConfig(StrategyConfig):
    setfit_iterations: int = field(
        default=20, metadata={"help": "setfit: passes over the labelled examples that make contrastive pairs (each "
                              "example: one same-class and one other-class partner per pass; SetFit's num_iterations)."}
    )
    setfit_max_pairs: int = field(
        default=20_000, metadata={"help": "setfit: at most this many contrastive pairs (a few-label method: 1,250+ "
                                  "steps of 16 pairs)."}
    )
    setfit_learning_rate: float = field(
        default=2e-5, metadata={"help": "setfit: AdamW learning rate of the contrastive phase (SetFit's "
                                "body_learning_rate); --learning_rate is the head phase's."}
    )
    setfit_batch_size: int = field(
        default=16, metadata={"help": "setfit: pairs per step of the contrastive phase (SetFit's batch_size)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if min(self.setfit_iterations, self.setfit_max_pairs, self.setfit_batch_size) < 1:
            raise ConfigError(f"setfit: --setfit_iterations, --setfit_max_pairs and --setfit_batch_size must be at "
                              f"least 1, got {self.setfit_iterations}, {self.setfit_max_pairs} and "
                              f"{self.setfit_batch_size}; pass e.g. 20, 20000 and 16")
        if not self.setfit_learning_rate > 0:
            raise ConfigError(f"setfit: --setfit_learning_rate must be positive, got {self.setfit_learning_rate}; "
                              "pass e.g. 2e-5")


def contrastive_pairs(labels: list[int], iterations: int, max_pairs: int, seed: int) -> list[tuple[int, int, float]]:
    """(i, j, target) triples: per pass, each example with a random same-class partner (target 1) and a random
    other-class one (target 0), shuffled; at most `max_pairs`. Classes with one example pair with themselves."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    pairs = []
    for _ in range(iterations):
        for index, label in enumerate(labels):
            same = [j for j in by_class[label] if j != index] or [index]
            pairs.append((index, rng.choice(same), 1.0))
            others = [c for c in by_class if c != label]
            if others:
                pairs.append((index, rng.choice(by_class[rng.choice(others)]), 0.0))
        if len(pairs) >= max_pairs:
            break
    rng.shuffle(pairs)
    return pairs[:max_pairs]


def cosine_similarity_loss(first: torch.Tensor, second: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SetFit's loss: mean squared error between the pair's cosine similarity and its target (1 same class, 0 not)."""
    cosine = nn.functional.cosine_similarity(first.float().flatten(1), second.float().flatten(1), dim=1)
    return nn.functional.mse_loss(cosine, target)


@STRATEGIES.register("setfit")
class SetFit(LinearProbe):
    """Contrastive pair fine-tuning of the backbone first (SetFit), then the fitted head trains alone."""

    name = "setfit"
    config_class = SetFitConfig

    def __init__(self, config: SetFitConfig | None = None, **options):
        super().__init__(config, **options)
        self.contrastive: dict | None = None  # what the phase did, for the record

    def describe(self) -> dict:
        return {**super().describe(), **({"contrastive_phase": self.contrastive} if self.contrastive else {})}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "contrastive": self.contrastive}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.contrastive = state.get("contrastive")

    def before_training(self, trainer) -> None:
        self.contrastive = train_contrastively(trainer, self)
        if trainer.is_world_process_zero():
            c = self.contrastive
            print(f"[hftransfer] setfit: backbone tuned on {c['pairs']:,d} pairs of labelled examples in {c['steps']} "
                  f"steps (cosine-similarity loss {c['loss_first']:.4f} -> {c['loss_last']:.4f})", flush=True)


def train_contrastively(trainer, strategy: SetFit) -> dict:
    """The contrastive phase on `trainer.model` (before DDP wraps it); every process runs the same pairs from the same
    seed, and rank 0's weights are broadcast at the end so all hold exactly the same."""
    from ..models.groups import capture_pooled_features
    from ..trainer import _random_state_kept

    args, model, dataset = trainer.args, trainer.model, trainer.train_dataset
    labels = [dataset[i].get("labels") for i in range(len(dataset))]
    if not all(isinstance(y, int) or (torch.is_tensor(y) and y.ndim == 0) for y in labels) or len(set(map(int, labels))) < 2:
        raise ConfigError("--strategy setfit pairs labelled examples of one class each (sequence or image "
                          "classification, at least two classes in the training set); use another --strategy")
    labels = [int(y) for y in labels]
    pairs = contrastive_pairs(labels, strategy.setfit_iterations, strategy.setfit_max_pairs, args.seed)
    batch_pairs = strategy.setfit_batch_size
    steps = math.ceil(len(pairs) / batch_pairs)
    backbone = [p for index, group in enumerate(strategy.groups[:-1]) if not strategy.held_still(index)
                for p in group.parameters.values()]
    flags = [p.requires_grad for p in backbone]
    for p in backbone:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(backbone, lr=strategy.setfit_learning_rate, weight_decay=args.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * steps), steps)
    losses = []
    model.train()
    try:
        with _random_state_kept(args.device):  # the run after this phase draws the same random numbers as without it
            torch.manual_seed(args.seed)
            for step in range(steps):
                chunk = pairs[step * batch_pairs: (step + 1) * batch_pairs]
                rows = [i for i, _, _ in chunk] + [j for _, j, _ in chunk]
                batch = trainer._prepare_inputs(trainer.data_collator([dataset[r] for r in rows]))
                batch.pop("labels", None)
                # the checkpoint's own sentence pooling where it has one (SetFit contrasts sentence embeddings); else
                # the head's input
                with capture_pooled_features(model, batch.get("attention_mask")) as captured, \
                        trainer.autocast_smart_context_manager():
                    model(**batch)
                features = captured[0]
                target = torch.tensor([t for _, _, t in chunk], device=features.device)
                loss = cosine_similarity_loss(features[: len(chunk)], features[len(chunk):], target)
                loss.backward()
                if args.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(backbone, args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach())
    finally:
        for p, flag in zip(backbone, flags):
            p.requires_grad_(flag)
    if args.world_size > 1:
        for p in model.parameters():
            torch.distributed.broadcast(p.data, src=0)
    first, last = float(losses[0]), float(torch.stack(losses[-max(1, steps // 10):]).mean())
    return {"pairs": len(pairs), "steps": steps, "batch_pairs": batch_pairs, "learning_rate": strategy.setfit_learning_rate,
            "loss_first": round(first, 4), "loss_last": round(last, 4)}
