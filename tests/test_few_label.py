"""Few-label transfer: the head starts at the logistic-regression optimum of the frozen features (--head_init fit), and
small data trains at least --min_train_steps optimizer steps, evaluated as often as the epochs asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from transformers import TrainerCallback

from hftransfer.errors import ConfigError
from hftransfer.head_fit import fit_softmax_regression
from hftransfer.models.groups import capture_pooled_features, trained_head
from tests.test_strategies import RandomImages, make_trainer


def blobs(n=90, dim=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(classes, dim))
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(size=(n, dim))).astype(np.float64), y


@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
def test_fit_matches_scikit_learn_logistic_regression(c):
    x, y = blobs()
    reference = LogisticRegression(C=c, tol=1e-10, max_iter=5000).fit(x, y)
    weight, bias = fit_softmax_regression(torch.from_numpy(x), torch.from_numpy(y), 3, c=c)
    np.testing.assert_allclose(weight.numpy(), reference.coef_, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(bias.numpy(), reference.intercept_, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
def test_two_class_fit_is_scikit_learns_binary_model_with_the_same_c(c):
    """scikit-learn fits two classes as one weight vector w with penalty ||w||^2 / 2C; the two-class head [-w/2, w/2]
    gives the same probabilities (a two-class softmax fitted directly would be regularised as C = 2c)."""
    x, y = blobs(classes=2)
    reference = LogisticRegression(C=c, tol=1e-10, max_iter=5000).fit(x, y)
    weight, bias = fit_softmax_regression(torch.from_numpy(x), torch.from_numpy(y), 2, c=c)
    np.testing.assert_allclose((weight[1] - weight[0]).numpy(), reference.coef_[0], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(float(bias[1] - bias[0]), reference.intercept_[0], atol=1e-4, rtol=1e-4)
    probabilities = torch.softmax(torch.from_numpy(x) @ weight.T + bias, dim=1).numpy()
    np.testing.assert_allclose(probabilities, reference.predict_proba(x), atol=1e-5)


class HeadAtStart(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        head = trained_head(model)
        self.weight, self.bias = head.weight.detach().clone(), head.bias.detach().clone()


@torch.no_grad()
def frozen_features(model, dataset):
    model.eval()
    batch = {"pixel_values": torch.stack([dataset[i]["pixel_values"] for i in range(len(dataset))])}
    with capture_pooled_features(model) as features:
        model(**batch.copy())
    return features[0].flatten(1).double().numpy()


@pytest.mark.parametrize("strategy, expected_init", [
    ("linear_probe", "fit"), ("lp_ft", "fit"), ("bitfit", "fit"), ("lora", "fit"), ("full", "random"),
])
def test_head_starts_at_the_logistic_regression_of_the_frozen_features(strategy, expected_init, tiny_timm_dir, tmp_path):
    """Also under LoRA, whose trained head is peft's copy of it (a fit of the wrapper was once skipped silently)."""
    start = HeadAtStart()
    trainer = make_trainer(tiny_timm_dir, tmp_path / "out", strategy, callbacks=[start])
    assert trainer.strategy.head_init == expected_init
    x = frozen_features(trainer.model, RandomImages())
    trainer.train()
    if expected_init == "random":
        assert trainer.strategy.head_fit is None
        return
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(x, RandomImages().y.numpy())
    np.testing.assert_allclose(start.weight.double().numpy(), reference.coef_, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(start.bias.double().numpy(), reference.intercept_, atol=2e-3, rtol=2e-3)
    assert trainer.strategy.head_fit["examples"] == len(RandomImages())
    assert trainer.strategy.head_fit["train_accuracy"] == pytest.approx(reference.score(x, RandomImages().y.numpy()))


def test_head_init_is_checked():
    from hftransfer.arguments import StrategyArguments
    from hftransfer.strategies import build_strategy

    with pytest.raises(ConfigError, match="--head_init"):
        build_strategy(StrategyArguments(strategy="full", head_init="zeros"))
    with pytest.raises(ConfigError, match="--head_fit_c"):
        build_strategy(StrategyArguments(strategy="linear_probe", head_fit_c=0.0))


def test_unaugmented_training_rows_are_the_evaluation_transform(tiny_timm_dir):
    """The head is fitted on what it sees at test time: training rows through the evaluation transform."""
    from hftransfer.data import load_classification_data, prepare_image_splits
    from hftransfer.data.vision import ROW_COLUMN, set_augmentation_epoch, unaugmented
    from hftransfer.models import load_classifier

    loaded = load_classifier(str(tiny_timm_dir), [str(i) for i in range(10)], "image", image_size=32)
    data = load_classification_data("digits", "image", max_train_samples=8, max_eval_samples=8)
    splits = prepare_image_splits(data, loaded.processor, hflip=0.5, crop_scale_min=0.2)
    train = splits["train"]
    set_augmentation_epoch(train, seed=0, epoch=0)
    plain = prepare_image_splits(data, loaded.processor, hflip=0.5, crop_scale_min=0.2)["test"]
    reference = plain.with_transform(None)  # the test split's transform applied to the training rows below
    transform = plain.format["format_kwargs"]["transform"]
    rows = data.splits["train"].cast_column(data.input_column, reference.features[data.input_column])[:4]
    expected = torch.stack(transform(rows)["pixel_values"])
    augmented = torch.stack([train[i]["pixel_values"] for i in range(4)])
    with unaugmented(train):
        clean = torch.stack([train[i]["pixel_values"] for i in range(4)])
    after = torch.stack([train[i]["pixel_values"] for i in range(4)])
    assert torch.equal(clean, expected)
    assert not torch.equal(augmented, expected)
    assert torch.equal(after, augmented)
    assert ROW_COLUMN not in train[0]


def test_min_train_steps_keeps_the_number_of_evaluations_the_epochs_asked_for(image_recipe, tiny_timm_dir, tmp_path):
    """96 examples in batches of 48 for 2 epochs is 4 steps; --min_train_steps 9 makes it 10 (2 x 5), evaluated and
    saved at steps 5 and 10 as the 2 epochs would have been, not once per 2-step epoch."""
    from conftest import tiny_image_args

    trainer = image_recipe.main(tiny_image_args(tiny_timm_dir, tmp_path / "out", "--num_train_epochs", "2",
                                                "--per_device_train_batch_size", "48", "--min_train_steps", "9",
                                                "--save_total_limit", "5"))
    assert trainer.epoch_steps() == 2 and trainer.state.global_step == 10
    assert [e["step"] for e in trainer.state.log_history if "eval_accuracy" in e][:2] == [5, 10]
    assert trainer.state.best_model_checkpoint is not None


def test_a_strategys_epochs_stretch_with_min_train_steps(image_recipe, tiny_timm_dir, tmp_path):
    """lp_ft's 1 probing epoch of a run lengthened from 2 two-step epochs to 10 steps is 5 steps, not 2."""
    from conftest import tiny_image_args

    trainer = image_recipe.main(tiny_image_args(tiny_timm_dir, tmp_path / "out", "--num_train_epochs", "2",
                                                "--per_device_train_batch_size", "48", "--min_train_steps", "9",
                                                "--strategy", "lp_ft", "--lp_epochs", "1"))
    assert [phase.start_step for phase in trainer.strategy.phases] == [0, 5]


@pytest.mark.parametrize("recipe_name", ["image_cls", "text_cls"])
def test_recipes_train_small_data_at_least_200_steps_by_default(recipe_name):
    from conftest import load_recipe

    assert load_recipe(recipe_name).DEFAULTS["min_train_steps"] == 200


@pytest.mark.parametrize("strategy", ["full", "gradual"])
def test_the_text_recipe_starts_the_head_at_the_fit_when_the_run_is_lengthened(strategy, text_recipe, tiny_bert_dir,
                                                                              tmp_path):
    """At the text recipe's rate a random head cannot reach a converged linear model in a short run (README, Few
    labels), so a run that --min_train_steps lengthens (small data) starts every strategy's head at the fit, `full`
    and `gradual` included, and the start is evaluated at step 0. A run long enough on its own keeps a random head
    (measured: the fit does not pay on 20,000 tweets). An explicit --head_init is kept either way."""
    from conftest import tiny_text_args

    stretched = text_recipe.main(tiny_text_args(tiny_bert_dir, tmp_path / "stretched", "--strategy", strategy,
                                                "--min_train_steps", "12"))  # 96 examples, 16 a batch: 6 steps
    assert stretched.state.max_steps == 12
    assert stretched.strategy.head_init == "fit"
    assert stretched.strategy.describe()["head_init"] == "fit"
    assert stretched.strategy.head_fit["examples"] == len(stretched.train_dataset) == 96
    assert [e["step"] for e in stretched.state.log_history if "eval_accuracy" in e][0] == 0

    long_enough = text_recipe.main(tiny_text_args(tiny_bert_dir, tmp_path / "long", "--strategy", strategy,
                                                  "--min_train_steps", "6"))
    assert long_enough.state.max_steps == 6
    assert long_enough.strategy.head_init == "random" and long_enough.strategy.head_fit is None
    assert long_enough.strategy.describe()["head_init"] == "random"

    asked = text_recipe.main(tiny_text_args(tiny_bert_dir, tmp_path / "asked", "--strategy", strategy,
                                            "--head_init", "fit"))
    assert asked.strategy.head_init == "fit" and asked.strategy.head_fit["examples"] == 96
    asked = text_recipe.main(tiny_text_args(tiny_bert_dir, tmp_path / "asked_random", "--strategy", strategy,
                                            "--head_init", "random", "--min_train_steps", "12"))
    assert asked.strategy.head_init == "random" and asked.strategy.head_fit is None


def test_readme_few_label_tables_are_the_committed_benchmark_json():
    """README.md's few-label tables are rendered from benchmarks/results/few_label.json, not typed."""
    from bench_readme import readme_table_and_rendering

    table, rendered, _ = readme_table_and_rendering("few_label")
    assert table == rendered


def test_readme_head_fit_c_table_is_the_committed_benchmark_json():
    """The fitted head's strength (C=1 against the rules that choose C): README.md's table is
    benchmarks/results/head_fit_c.json rendered, held-out settings included, 3 seeds each."""
    from bench_readme import readme_table_and_rendering

    table, rendered, report = readme_table_and_rendering("head_fit_c")
    assert table == rendered
    assert {"digits-10", "rotten_tomatoes-10"} <= set(report["settings"])
    assert all(len(seeds) == 3 for seeds in report["settings"].values())


def test_a_fitted_heads_start_is_a_selection_candidate(image_recipe, tiny_timm_dir, tmp_path):
    """With --head_init fit the start is already a model (the logistic-regression probe): evaluated and checkpointed at
    step 0, it is what selection keeps when fine-tuning only makes validation worse; the training itself is the same
    as without that evaluation."""
    import json

    from conftest import tiny_image_args

    wrecking = ["--strategy", "full", "--head_init", "fit", "--learning_rate", "30", "--num_train_epochs", "2",
                "--save_total_limit", "1"]
    trainer = image_recipe.main(tiny_image_args(tiny_timm_dir, tmp_path / "out", *wrecking))
    evals = [(e["step"], e["eval_accuracy"]) for e in trainer.state.log_history if "eval_accuracy" in e]
    start, trained = evals[0], evals[1:-1]
    assert start[0] == 0 and all(acc < start[1] for _, acc in trained), evals  # the run wrecks what the probe had
    final = json.loads((tmp_path / "out" / "eval_results.json").read_text())["eval_accuracy"]
    assert final == pytest.approx(start[1])  # the saved model is the fitted start, not the last step
    assert "**selected checkpoint:** step 0 of 12, best validation accuracy" in (tmp_path / "out" / "README.md").read_text()

    plain = image_recipe.main(tiny_image_args(tiny_timm_dir, tmp_path / "plain", *wrecking,
                                              "--load_best_model_at_end", "false"))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses and losses == [e["loss"] for e in plain.state.log_history if "loss" in e]


def test_readme_regularizer_table_is_the_committed_benchmark_json():
    """L2-SP and BSS with their strength chosen on validation (issue 14): README.md's table is
    benchmarks/results/regularizers.json rendered, over 3 seeds."""
    from bench_readme import readme_table_and_rendering

    table, rendered, report = readme_table_and_rendering("regularizers")
    assert table == rendered
    assert report["seeds"] == [0, 1, 2]


def test_lora_keeps_the_batchnorm_statistics_of_the_checkpoint_it_selects(image_recipe, tiny_timm_dir, tmp_path):
    """A LoRA checkpoint holds the adapter and, beside it, the base model's BatchNorm running statistics. When
    selection keeps the fitted start (step 0), the statistics must come back with it: held-out digits, 10 labels per
    class, kept 0.88 validation accuracy at step 0 and scored 0.10 after the load, with the statistics of step 201."""
    import json

    from safetensors.torch import load_file

    from conftest import tiny_image_args
    from hftransfer.trainer import _peft_buffers

    wrecking = ["--strategy", "lora", "--head_init", "fit", "--learning_rate", "30", "--num_train_epochs", "2",
                "--save_total_limit", "1"]
    trainer = image_recipe.main(tiny_image_args(tiny_timm_dir, tmp_path / "out", *wrecking))
    evals = [(e["step"], e["eval_accuracy"]) for e in trainer.state.log_history if "eval_accuracy" in e]
    start, trained = evals[0], evals[1:-1]
    assert start[0] == 0 and all(acc < start[1] for _, acc in trained), evals
    saved = load_file(str(tmp_path / "out" / "checkpoint-0" / trainer.BUFFERS_CHECKPOINT))
    buffers = _peft_buffers(trainer.accelerator.unwrap_model(trainer.model))
    assert any("running_mean" in name for name in buffers)
    for name, value in buffers.items():
        assert torch.equal(value.cpu(), saved[name]), name
    final = json.loads((tmp_path / "out" / "eval_results.json").read_text())["eval_accuracy"]
    assert final == pytest.approx(start[1])
