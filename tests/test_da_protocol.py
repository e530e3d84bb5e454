"""TLlib's domain-adaptation protocol reachable from flags: the annealing schedule, SGD with Nesterov momentum,
per-group learning rates (backbone, head, discriminator), discriminator shape and reversal schedule; the pooling a
sentence-transformers checkpoint was trained with (read for `rank` and `shift`), and the domain features (what the
classifier reads)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import build_tiny_bert
from hftransfer.errors import HFTransferError


def da_args(model_dir, output_dir, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir), "--source", "digits", "--target", "mnist5k", "--image_size", "32",
        "--max_train_samples", "48", "--max_eval_samples", "32", "--per_device_train_batch_size", "16",
        "--per_device_eval_batch_size", "32", "--dataloader_num_workers", "0", "--output_dir", str(output_dir),
        "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--min_train_steps", "0", *extra,
    ]


def run_recording(domain_recipe, argv):
    from transformers import TrainerCallback

    history: list[dict[str, float]] = []

    class Record(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            history.append({g["name"]: g["lr"] for g in optimizer.param_groups})

    import hftransfer.trainer as trainer_module

    original = trainer_module.TransferTrainer.__init__

    def with_recorder(self, *args, **kwargs):
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), Record()]
        original(self, *args, **kwargs)

    trainer_module.TransferTrainer.__init__ = with_recorder
    try:
        trainer = domain_recipe.main(argv)
    finally:
        trainer_module.TransferTrainer.__init__ = original
    return trainer, history


def test_annealing_schedule_per_group_lrs_and_sgd_nesterov(domain_recipe, tiny_timm_dir, tmp_path):
    """--lr_scheduler_type annealing gives lr * (1 + 10 p) ** -0.75 after the warm-up, times each group's factor:
    head 3x (--head_lr_scale), discriminator 10x the backbone (a new network, whatever the head's scale) times 2
    (lr_scale); the optimizer is SGD with Nesterov momentum."""
    lr, steps, warmup = 0.01, 6, 2
    trainer, history = run_recording(domain_recipe, da_args(
        tiny_timm_dir, tmp_path / "out", "--method", "dann", "--max_steps", str(steps), "--learning_rate", str(lr),
        "--warmup_steps", str(warmup), "--lr_scheduler_type", "annealing", "--head_lr_scale", "3",
        "--lr_scheduler_kwargs", '{"gamma": 10, "power": 0.75}',  # the command-line form (JSON text)
        "--optim", "sgd", "--optim_args", "momentum=0.9,nesterov=True", "--method_options", "lr_scale=2",
    ))
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in optimizer.param_groups)
    assert len(history) == steps
    for step, groups in enumerate(history):
        if step < warmup:
            factor = (step + 1) / (warmup + 1)
        else:
            factor = (1 + 10 * (step - warmup) / (steps - warmup)) ** -0.75
        for name, value in groups.items():
            scale = 3.0 if name.startswith("head") else 20.0 if name.startswith("dann") else 1.0
            assert value == pytest.approx(lr * factor * scale, rel=1e-6), (step, name)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "annealing" in card


def discriminator_rates(trainer, method: str) -> dict[str, float]:
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    return {g["name"]: g["lr"] for g in optimizer.param_groups if g["name"].startswith(method)}


@pytest.mark.parametrize("method, scale", [("dann", 10.0), ("cdan", 1.0), ("instance_weighting", 10.0)])
def test_discriminators_learn_at_their_methods_default_rate(domain_recipe, tiny_timm_dir, tmp_path, method, scale):
    """On a vision backbone DANN's discriminator (and instance weighting's domain classifier) learns at 10x the
    backbone, CDAN's at 1x, whatever the head's scale (--head_lr_scale 3 here)."""
    lr = 1e-3
    trainer = domain_recipe.main(da_args(tiny_timm_dir, tmp_path / "out", "--method", method, "--max_steps", "1",
                                         "--learning_rate", str(lr), "--head_lr_scale", "3",
                                         "--lr_scheduler_type", "constant", "--warmup_steps", "0"))
    rates = discriminator_rates(trainer, method)
    assert rates and all(r == pytest.approx(lr * scale) for r in rates.values()), rates


@pytest.mark.parametrize("options, scale", [((), 1.0), (("--method_options", "lr_scale=1"), 10.0)])
def test_dann_discriminator_on_a_text_encoder_learns_at_the_encoders_rate(domain_recipe, tiny_bert_dir, tmp_path,
                                                                         options, scale):
    """On a text encoder DANN's discriminator learns at 1x (README: at 10x on MiniLM its loss swung between 0.14 and
    2.5 and one seed's target accuracy fell to 0.594); lr_scale still sets it."""
    lr = 1e-4
    trainer = domain_recipe.main([
        "--model", str(tiny_bert_dir), "--source", "tweets_binary", "--target", "tweets_binary", "--method", "dann",
        "--max_train_samples", "16", "--max_eval_samples", "8", "--max_steps", "1", "--max_length", "16",
        "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0", "--output_dir", str(tmp_path / "o"),
        "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false", "--learning_rate",
        str(lr), "--lr_scheduler_type", "constant", *options,
    ])
    rates = discriminator_rates(trainer, "dann")
    assert rates and all(r == pytest.approx(lr * scale) for r in rates.values()), rates


@pytest.mark.parametrize("kwargs, message", [('{"gama": 10}', "does not take"), ('{"gamma": -1}', "gamma >= 0"),
                                             ("gamma=10", "not JSON")])
def test_annealing_schedule_options_are_checked_at_parse_time(domain_recipe, tiny_timm_dir, tmp_path, kwargs,
                                                              message):
    with pytest.raises(HFTransferError, match=message):
        domain_recipe.main(da_args(tiny_timm_dir, tmp_path / "out", "--lr_scheduler_type", "annealing",
                                   "--lr_scheduler_kwargs", kwargs))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_discriminator_shape_and_reversal_schedule_are_options(domain_recipe, tiny_timm_dir, tmp_path):
    from torch import nn

    trainer = domain_recipe.main(da_args(
        tiny_timm_dir, tmp_path / "out", "--method", "dann", "--max_steps", "2",
        "--method_options", "hidden_dim=64,num_layers=3,schedule=false,max_coefficient=0.3",
    ))
    (dann,) = trainer.loss_components
    linears = [m for m in dann.discriminator if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [64, 64, 64, 1]
    assert dann.coefficient(0.0) == dann.coefficient(0.9) == pytest.approx(0.3)


def test_max_steps_budget_cycles_the_shorter_domain(domain_recipe, tiny_timm_dir, tmp_path):
    """A step budget longer than one pass over either domain: training runs exactly --max_steps steps."""
    trainer = domain_recipe.main(da_args(tiny_timm_dir, tmp_path / "out", "--method", "mcc", "--max_steps", "9"))
    assert trainer.state.global_step == 9
    assert json.loads((tmp_path / "out" / "train_results.json").read_text())["epoch"] > 2


# ---------------------------------------------------------------- pooling that matches the checkpoint

def sentence_transformers_folder(target, mode: str):
    """A tiny BERT saved the way sentence-transformers saves one: modules.json and a Pooling config."""
    build_tiny_bert(target)
    (target / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean", "pooling_mode_max_tokens": mode == "max",
    }))
    return target


@pytest.mark.parametrize("mode", ["mean", "max", "cls"])
def test_pooled_features_follow_the_sentence_transformers_config(tmp_path, mode):
    from hftransfer.models import load_classifier
    from hftransfer.models.groups import capture_pooled_features, checkpoint_pooling

    folder = sentence_transformers_folder(tmp_path / "st", mode)
    loaded = load_classifier(str(folder), ["a", "b"], "text")
    model = loaded.model.eval()
    assert checkpoint_pooling(model) == mode
    batch = loaded.processor(["a short one", "a rather longer sentence than the first"], padding=True,
                             return_tensors="pt")
    with torch.no_grad(), capture_pooled_features(model, batch["attention_mask"]) as features:
        model(**batch)
        hidden = model.bert(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = {
        "mean": (hidden * mask).sum(1) / mask.sum(1),
        "max": hidden.masked_fill(mask == 0, -1e9).amax(1),
        "cls": hidden[:, 0],
    }[mode]
    torch.testing.assert_close(features[0], expected)


def test_plain_bert_keeps_the_head_input(tiny_bert_dir):
    from hftransfer.models import load_classifier
    from hftransfer.models.groups import capture_pooled_features, checkpoint_pooling

    loaded = load_classifier(str(tiny_bert_dir), ["a", "b"], "text")
    model = loaded.model.eval()
    assert checkpoint_pooling(model) == "head"
    batch = loaded.processor(["one", "two words"], padding=True, return_tensors="pt")
    with torch.no_grad(), capture_pooled_features(model, batch["attention_mask"]) as features:
        model(**batch)
        pooler = model.bert(**batch).pooler_output
    torch.testing.assert_close(features[0], pooler)


def test_dann_on_a_sentence_transformers_checkpoint_aligns_what_the_classifier_reads(domain_recipe, tmp_path):
    """In a real recipe run, the discriminator's source features are the input of the classification head in that very
    forward pass (with --pooling auto, the pooler over the built-in mean pooling layer), not a pooling of its own: on tweets ->
    Rotten Tomatoes (README), CDAN on the mean of token states lost 5.3 pp to CDAN on the head's input."""
    import hftransfer.adaptation.dann as dann_module
    import hftransfer.trainer as trainer_module

    folder = sentence_transformers_folder(tmp_path / "st", "mean")
    seen: dict = {}
    original_loss, original_compute = dann_module.DANNLoss.loss, trainer_module.TransferTrainer.compute_loss

    def spy_loss(self, ctx):
        seen.setdefault("features", ctx.features_source.detach().clone())
        return original_loss(self, ctx)

    def spy_compute(self, model, inputs, *args, **kwargs):
        if "head_input" not in seen and model.training:
            def keep_head_input(_module, args):
                seen.setdefault("head_input", args[0][: len(inputs["labels"])].detach())

            handle = model.classifier.register_forward_pre_hook(keep_head_input)
            try:
                return original_compute(self, model, inputs, *args, **kwargs)
            finally:
                handle.remove()
        return original_compute(self, model, inputs, *args, **kwargs)

    dann_module.DANNLoss.loss, trainer_module.TransferTrainer.compute_loss = spy_loss, spy_compute
    try:
        domain_recipe.main([
            "--model", str(folder), "--source", "tweets_binary", "--target", "tweets_binary", "--method",
            "dann", "--max_train_samples", "32", "--max_eval_samples", "16", "--max_steps", "1", "--max_length", "16",
            "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0", "--output_dir", str(tmp_path / "o"),
            "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
        ])
    finally:
        dann_module.DANNLoss.loss, trainer_module.TransferTrainer.compute_loss = original_loss, original_compute
    torch.testing.assert_close(seen["features"], seen["head_input"])


# ---------------------------------------------------------------- selection and what is reported beside it

@pytest.mark.parametrize("ties, expected", [("earlier", 2), ("later", 6)])
def test_best_model_ties_rule(domain_recipe, tiny_timm_dir, tmp_path, ties, expected):
    """Source validation accuracy often saturates (digits: 1.0 after an epoch): --best_model_ties later takes the
    last checkpoint that reaches the best value, transformers' rule the first."""
    trainer = domain_recipe.main(da_args(tiny_timm_dir, tmp_path / "out", "--method", "mcc", "--max_steps", "2"))
    trainer.args.best_model_ties, trainer.args.save_strategy = ties, "epoch"
    trainer.state.best_metric, trainer.state.best_global_step = None, None
    for step, accuracy in [(2, 0.9), (4, 0.8), (6, 0.9)]:
        trainer.state.global_step = step
        trainer._determine_best_metric({"eval_accuracy": accuracy}, None)
    assert trainer.state.best_global_step == expected and trainer.state.best_metric == 0.9


def test_target_scores_are_reported_at_every_evaluation_not_used_for_selection(domain_recipe, tiny_timm_dir,
                                                                               tmp_path):
    out = tmp_path / "out"
    trainer = domain_recipe.main([
        *da_args(tiny_timm_dir, out, "--method", "dann", "--num_train_epochs", "2"),
        "--eval_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end", "true",
    ])
    evaluations = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    target_curve = [e for e in trainer.state.log_history if "eval_target_test_accuracy" in e]
    assert len(evaluations) == len(target_curve) == 3  # two epochs, then the selected checkpoint's evaluate()
    assert all("eval_target_validation_accuracy" in e or "eval_target_test_accuracy" in e for e in target_curve)
    best = trainer.state.best_metric
    assert best == max(e["eval_accuracy"] for e in evaluations)  # source validation picks
    target_test = json.loads((out / "target_test_results.json").read_text())
    assert target_test["target_test_accuracy_last_checkpoint"] == target_curve[1]["eval_target_test_accuracy"]
    card = (out / "README.md").read_text()
    assert "honest" in card
    assert "- name: out\n" in card and ".partial" not in card  # named after the output folder, not its staging one


# ---------------------------------------------------------------- defaults by the model's family

@pytest.mark.parametrize("family", ["image", "text"])
def test_domain_adapt_defaults_follow_the_model_family(domain_recipe, tiny_timm_dir, tiny_bert_dir, family):
    """A text encoder does not learn at a CNN's learning rate (measured: 1e-3 left MiniLM at 0.52 on a balanced
    binary source): the recipe's defaults come from the family of --model; flags still win."""
    from hftransfer.arguments import AdaptationArguments, DomainDataArguments, ModelArguments, StrategyArguments
    from hftransfer.config import parse_recipe_args
    from hftransfer.training_args import TransferTrainingArguments

    recipe = domain_recipe
    model = str(tiny_timm_dir if family == "image" else tiny_bert_dir)
    types = (ModelArguments, DomainDataArguments, AdaptationArguments, StrategyArguments, TransferTrainingArguments)

    def parse(*extra):
        return parse_recipe_args(types, recipe.DEFAULTS, ["--model", model, "--output_dir", "unused", *extra],
                                 family_defaults=recipe.FAMILY_DEFAULTS)

    _, data_args, adapt_args, strategy_args, training_args = parse()
    expected = recipe.FAMILY_DEFAULTS[family]
    assert adapt_args.method == ("cdan" if family == "image" else "mcc")  # the best measured per family (README)
    assert training_args.learning_rate == expected["learning_rate"]
    assert strategy_args.head_lr_scale == expected.get("head_lr_scale", 1.0)
    assert data_args.image_size == (64 if family == "image" else None)  # a timm model: 64 px (README)
    assert training_args.min_train_steps == (1000 if family == "image" else 200)  # a step budget (README)
    *_, training_args = parse("--learning_rate", "3e-4")
    assert training_args.learning_rate == 3e-4


def test_min_train_steps_lengthens_a_short_run_and_max_steps_wins(domain_recipe, tiny_timm_dir, tmp_path):
    short = domain_recipe.main(da_args(tiny_timm_dir, tmp_path / "a", "--method", "dann", "--num_train_epochs", "1",
                                       "--min_train_steps", "7"))
    assert short.epoch_steps() < 7 and short.state.global_step == 7
    fixed = domain_recipe.main(da_args(tiny_timm_dir, tmp_path / "b", "--method", "dann", "--max_steps", "2",
                                       "--min_train_steps", "7"))
    assert fixed.state.global_step == 2


def test_readme_tables_are_the_committed_benchmark_json():
    """README.md's domain-adaptation tables are rendered from benchmarks/results/domain_adaptation.json, not typed."""
    from bench_readme import readme_table_and_rendering

    table, rendered, _ = readme_table_and_rendering("domain_adaptation")
    assert table == rendered
    # the partial rerun at the 2,000-step default sits between its own markers, rendered from its own file
    import json
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import domain_adaptation
    from readme_tables import between

    path = REPO / "benchmarks" / "results" / "domain_adaptation_2000.json"
    partial = between(REPO / "README.md", *domain_adaptation.readme_markers(path))
    assert partial.strip() == domain_adaptation.markdown(json.loads(path.read_text())).strip()
    assert "at least 2,000 optimizer steps" in partial and "at least 1,000 optimizer steps" in table
