"""--strategy setfit: contrastive pairs, the cosine-similarity phase before training, and its record."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_text_args
from hftransfer.models import load_classifier
from hftransfer.models.groups import capture_pooled_features
from hftransfer.strategies.setfit import contrastive_pairs, cosine_similarity_loss

REPO = Path(__file__).resolve().parents[1]


def test_each_pass_gives_every_example_one_same_class_and_one_other_class_partner():
    labels = [0, 0, 0, 1, 1, 2]
    pairs = contrastive_pairs(labels, iterations=3, max_pairs=10_000, seed=0)
    assert len(pairs) == 3 * 2 * len(labels)
    for index in range(len(labels)):
        mine = [(j, t) for i, j, t in pairs if i == index]
        assert sorted(t for _, t in mine) == [0.0] * 3 + [1.0] * 3
        for j, target in mine:
            assert (labels[j] == labels[index]) == (target == 1.0)
            if target == 1.0 and labels.count(labels[index]) > 1:
                assert j != index  # a class with a second example never pairs an example with itself
    assert contrastive_pairs(labels, 3, 10_000, seed=0) == pairs != contrastive_pairs(labels, 3, 10_000, seed=1)
    assert len(contrastive_pairs(labels, 50, max_pairs=25, seed=0)) == 25


def test_the_loss_is_the_squared_error_of_the_pairs_cosine_against_its_target():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [-1.0, 1.0]])
    # cosines 1 and 0; targets 0 and 0 -> ((1-0)^2 + (0-0)^2) / 2
    assert cosine_similarity_loss(a, b, torch.tensor([0.0, 0.0])).item() == 0.5
    assert cosine_similarity_loss(a, b, torch.tensor([1.0, 0.0])).item() == 0.0


def class_separation(model, trainer) -> float:
    """Mean cosine of same-class training pairs minus that of other-class pairs, on the features the head reads."""
    model.eval()
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]))
    labels = batch.pop("labels")
    with torch.no_grad(), capture_pooled_features(model) as captured:
        model(**batch)
    features = torch.nn.functional.normalize(captured[0].float(), dim=1)
    cosine = features @ features.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
    return float(cosine[same & off_diagonal].mean() - cosine[~same].mean())


def test_setfit_pulls_same_class_features_together_before_the_head_is_fitted(tiny_bert_dir, text_recipe, tmp_path):
    out = tmp_path / "out"
    trainer = text_recipe.main(tiny_text_args(
        tiny_bert_dir, out, "--strategy", "setfit", "--setfit_iterations", "4", "--setfit_learning_rate", "1e-2",
        "--setfit_batch_size", "16", "--learning_rate", "1e-3", "--per_device_train_batch_size", "8",
        "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--report_to", "none", "--disable_tqdm", "true"))
    untouched = load_classifier(str(tiny_bert_dir), list(trainer.model.config.id2label.values()), "text").model
    before, after = class_separation(untouched, trainer), class_separation(trainer.model, trainer)
    assert after > before + 0.05, (before, after)

    phase = trainer.strategy.contrastive
    assert phase["pairs"] == 4 * 2 * len(trainer.train_dataset) and phase["loss_last"] < phase["loss_first"]
    # the phase runs at its own rate and pair batch (SetFit's body_learning_rate, batch_size), not the head phase's
    assert (phase["learning_rate"], phase["batch_pairs"], phase["steps"]) == (1e-2, 16, math.ceil(phase["pairs"] / 16))
    assert (trainer.args.learning_rate, trainer.args.per_device_train_batch_size) == (1e-3, 8)
    assert trainer.strategy.head_fit["train_accuracy"] > 0  # the head was fitted after the phase, on its features
    record = json.loads((out / "transfer_strategy.json").read_text())
    assert record["strategy"]["contrastive_phase"] == phase and record["strategy"]["setfit_iterations"] == 4
    assert "contrastive_phase" in (out / "README.md").read_text()


def test_setfit_on_token_classification_is_a_one_line_error(tiny_bert_dir, tmp_path):
    from test_token_cls import tiny_token_args, write_real_tweets

    data = write_real_tweets(tmp_path / "ner.conll", 16)
    result = subprocess.run([sys.executable, str(REPO / "recipes" / "token_cls.py"),
                             *tiny_token_args(tiny_bert_dir, data, tmp_path / "out", "--strategy", "setfit")],
                            capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --strategy setfit pairs labelled examples") and "Traceback" not in result.stderr


@pytest.mark.slow
def test_setfit_under_two_torchrun_processes_ends_identical_on_both_ranks(tiny_bert_dir, tmp_path):
    """Each process runs the contrastive phase before DDP wraps the model; rank 0's weights are broadcast after it."""
    from conftest import torchrun_two_ranks

    rank0, rank1, _ = torchrun_two_ranks("text_cls", tiny_text_args(
        tiny_bert_dir, tmp_path / "out", "--strategy", "setfit", "--setfit_iterations", "1", "--max_steps", "2",
        "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"), tmp_path)
    assert rank0["sha256"] == rank1["sha256"]
