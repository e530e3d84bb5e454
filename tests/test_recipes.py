"""Each recipe end to end on tiny data: the output folder is a standard model that predicts like the trainer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, tiny_image_args, tiny_text_args, torchrun_two_ranks

from hftransfer.data import load_classification_data, prepare_image_splits, prepare_text_splits


def _trainer_predictions(trainer, dataset) -> np.ndarray:
    return np.asarray(trainer.predict(dataset).predictions).reshape(-1)


def test_image_recipe_output_loads_with_pipeline_and_timm(tiny_timm_dir, image_recipe, tmp_path):
    import timm
    from transformers import AutoModelForImageClassification, pipeline

    out = tmp_path / "out"
    trainer = image_recipe.main(tiny_image_args(tiny_timm_dir, out))
    for name in ("config.json", "model.safetensors", "test_results.json", "eval_results.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "test_results.json").read_text())
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["test_samples_per_second"] > 0

    data = load_classification_data("digits", "image", max_train_samples=96, max_eval_samples=40)
    test = prepare_image_splits(data, trainer.processing_class, hflip=0.0, crop_scale_min=1.0)["test"]
    expected = _trainer_predictions(trainer, test)
    # the test split really is the test split (transformers caches eval loaders; we must not reuse validation's)
    assert len(expected) == len(data.splits["test"]) == 40
    assert results["test_accuracy"] == pytest.approx(float(np.mean(expected == np.asarray(data.splits["test"]["label"]))))

    images = [data.splits["test"][i]["image"] for i in range(8)]
    classifier = pipeline("image-classification", model=str(out), device="cpu")
    labels = [classifier(image, top_k=1)[0]["label"] for image in images]
    names = data.label_names
    assert labels == [names[i] for i in expected[:8]]

    reloaded = AutoModelForImageClassification.from_pretrained(out).eval()
    assert reloaded.config.id2label[0] == names[0] and reloaded.config.num_labels == len(names)

    timm_model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    config = timm.data.resolve_data_config({}, model=timm_model)
    transform = timm.data.create_transform(**config)
    batch = torch.stack([transform(image.convert("RGB")) for image in images])
    with torch.inference_mode():
        timm_predictions = timm_model(batch).argmax(-1).numpy()
    assert timm_predictions.tolist() == expected[:8].tolist()


def test_text_recipe_output_loads_with_pipeline(tiny_bert_dir, text_recipe, tmp_path):
    from transformers import pipeline

    out = tmp_path / "out"
    trainer = text_recipe.main(tiny_text_args(tiny_bert_dir, out))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "test_results.json"):
        assert (out / name).is_file(), name

    data = load_classification_data("tweets", "text", max_train_samples=96, max_eval_samples=40)
    test = prepare_text_splits(data, trainer.processing_class, max_length=32)["test"]
    expected = _trainer_predictions(trainer, test)
    assert len(expected) == 40
    texts = data.splits["test"]["text"][:8]
    classifier = pipeline("text-classification", model=str(out), device="cpu", truncation=True, max_length=32)
    labels = [r["label"] for r in classifier(texts)]
    assert labels == [data.label_names[i] for i in expected[:8]]


def test_image_recipe_from_the_command_line_with_accelerate(tiny_timm_dir, tmp_path):
    out = tmp_path / "out"
    command = ["accelerate", "launch", "--num_processes", "1", "--cpu", "--mixed_precision", "no",
               str(REPO / "recipes" / "image_cls.py"), *tiny_image_args(tiny_timm_dir, out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = json.loads((out / "test_results.json").read_text())["test_accuracy"]
    summary = result.stdout.strip().splitlines()[-1]  # the run ends saying where the model went and how to load it
    assert summary.startswith(f"done: model saved in {out} (test accuracy {accuracy:.4f})"), summary
    assert "pipeline('image-classification'" in summary


def test_text_recipe_from_the_command_line_with_yaml_config(tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tiny_bert_dir}\nlearning_rate: 1.0e-4\nnum_train_epochs: 1\n")
    command = [sys.executable, str(REPO / "recipes" / "text_cls.py"), "--config", str(config),
               *tiny_text_args(tiny_bert_dir, out)[2:]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    args = torch.load(out / "training_args.bin", weights_only=False)
    assert args.learning_rate == 1e-4  # from the YAML file, under the command-line flags


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_torchrun_two_processes_head_fit_on_every_example_ranks_identical(tiny_timm_dir, tmp_path):
    """--head_init fit under DDP: each rank's half of the training features is gathered, both fit the same head."""
    args = tiny_image_args(tiny_timm_dir, tmp_path / "out", "--strategy", "linear_probe", "--max_train_samples", "64",
                           "--num_train_epochs", "1")
    rank0, rank1, _ = torchrun_two_ranks("image_cls", args, tmp_path)
    assert rank0["sha256"] == rank1["sha256"]
    assert rank0["head_fit"]["examples"] == rank1["head_fit"]["examples"] == 64


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_torchrun_two_processes_gradual_ranks_identical(tiny_timm_dir, tmp_path):
    """DDP on CPU (gloo): both ranks end identical; frozen groups unchanged; groups unfrozen mid-run trained."""
    from safetensors.torch import load_file

    args = tiny_image_args(tiny_timm_dir, tmp_path / "out", "--strategy", "gradual", "--unfreeze_unit", "step",
                           "--unfreeze_every", "2", "--max_train_samples", "128")
    rank0, rank1, digests = torchrun_two_ranks("image_cls", args, tmp_path)
    assert rank0["sha256"] == rank1["sha256"]

    # 128 examples / (2 ranks x 16) = 4 steps: head, then +1 group at step 2 -> the top 2 groups trained
    assert rank0["phases"][-1] == list(rank0["groups"])[-2:]
    initial = {f"timm_model.{k}": v for k, v in load_file(tiny_timm_dir / "model.safetensors").items()}
    final = torch.load(digests / "rank0_state.pt", weights_only=True)
    group_names = list(rank0["groups"])
    unfrozen_mid_run = rank0["groups"][group_names[-2]]
    frozen = [n for g in group_names[:-2] for n in rank0["groups"][g]]
    assert frozen and all(torch.equal(initial[n], final[n]) for n in frozen)
    assert any(not torch.equal(initial[n], final[n]) for n in unfrozen_mid_run)


def build_tiny_native_vit(target):
    """A tiny random transformers-native ViT (not timm) with its image processor, as save_pretrained writes it."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=3)
    ViTForImageClassification(config).save_pretrained(target)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(target)
    return target


@pytest.mark.parametrize("recipe", ["image_cls", "domain_adapt"])
def test_transformers_native_image_model_runs_from_the_command_line(recipe, tmp_path):
    """The recipes' 64 px default is for timm checkpoints: a native ViT keeps its own input size and needs no flag
    to unset it (before, every such model failed with '--image_size is supported for timm checkpoints only')."""
    model = build_tiny_native_vit(tmp_path / "vit")
    data = ["--dataset", "digits"] if recipe == "image_cls" else ["--source", "digits", "--target", "mnist5k"]
    command = [sys.executable, str(REPO / "recipes" / f"{recipe}.py"), "--model", str(model), *data,
               "--max_train_samples", "32", "--max_eval_samples", "16", "--max_steps", "1",
               "--per_device_train_batch_size", "8", "--dataloader_num_workers", "0", "--report_to", "none",
               "--output_dir", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "target test accuracy" in result.stdout if recipe == "domain_adapt" else "test accuracy" in result.stdout
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["model_type"] == "vit" and saved["image_size"] == 32


def test_a_checkpoint_with_its_own_labels_loads_with_the_datasets_labels_without_warnings(tmp_path, capsys):
    """A fine-tuned checkpoint (3 labels) loaded for a 10-class dataset: 10 labels, and no transformers warning about
    num_labels against the checkpoint's id2label (printed on every such run before)."""
    from hftransfer.models import load_classifier

    model_dir = build_tiny_native_vit(tmp_path / "vit")
    loaded = load_classifier(str(model_dir), [str(i) for i in range(10)], "image")
    assert loaded.model.config.num_labels == 10 and loaded.model.classifier.out_features == 10
    assert "incompatible" not in capsys.readouterr().err


def real_tweet_pairs(path, n: int = 120, columns=("sentence1", "sentence2")):
    """A pair task built from real text: two real tweets, labelled whether they carry the same sentiment."""
    import csv
    import random

    tweets = load_classification_data("tweets_binary", "text", max_train_samples=2 * n, seed=0).splits["train"]
    rows, rng = [], random.Random(0)
    for i in range(n):
        a, b = rng.randrange(len(tweets)), rng.randrange(len(tweets))
        same = tweets[a]["label"] == tweets[b]["label"]
        rows.append({columns[0]: tweets[a]["text"], columns[1]: tweets[b]["text"], "label": "same" if same else "different"})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*columns, "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("columns, flags", [
    (("sentence1", "sentence2"), []),  # found by name, as transformers' run_glue.py does
    (("premise", "hypothesis"), ["--text_column", "premise", "--text_pair_column", "hypothesis"]),
])
def test_sentence_pair_classification_trains_on_both_texts_and_loads_in_pipeline(columns, flags, tiny_bert_dir,
                                                                                 text_recipe, tmp_path):
    from transformers import pipeline

    csv_path = real_tweet_pairs(tmp_path / "pairs.csv", columns=columns)
    out = tmp_path / "out"
    args = tiny_text_args(tiny_bert_dir, out, *flags)
    args[args.index("--dataset") + 1] = str(csv_path)
    trainer = text_recipe.main(args)
    data = load_classification_data(str(csv_path), "text", input_column=flags[1] if flags else None,
                                    pair_column=flags[3] if flags else None, max_train_samples=96, max_eval_samples=40)
    assert data.pair_column == columns[1]
    test = prepare_text_splits(data, trainer.processing_class, max_length=32)["test"]
    assert all(1 in ids for ids in test["token_type_ids"])  # the second text is in every input, as segment B
    expected = _trainer_predictions(trainer, test)
    pairs = [{"text": a, "text_pair": b} for a, b in zip(data.splits["test"][columns[0]][:8], data.splits["test"][columns[1]][:8])]
    classifier = pipeline("text-classification", model=str(out), device="cpu", truncation=True, max_length=32)
    assert [r["label"] for r in classifier(pairs)] == [data.label_names[i] for i in expected[:8]]


def test_a_pair_column_that_is_not_there_is_a_one_line_error(tmp_path):
    from hftransfer.errors import DataError

    csv_path = real_tweet_pairs(tmp_path / "pairs.csv", n=20)
    with pytest.raises(DataError, match="sentence3"):
        load_classification_data(str(csv_path), "text", pair_column="sentence3")


def test_recipe_index_lists_and_loads_every_recipe_by_name(tmp_path, monkeypatch, capsys):
    """One loader for the CLI, tests and benchmarks; a new recipes/<name>.py is listed and loadable with no other
    change."""
    from hftransfer import recipes
    from hftransfer.cli import main as cli
    from hftransfer.errors import ConfigError

    assert recipes.recipe_names() == ["domain_adapt", "image_cls", "text_cls", "token_cls"]
    assert recipes.load_recipe("image_cls") is recipes.load_recipe(recipes.RECIPES_DIR / "image_cls.py")
    assert callable(recipes.load_recipe("token_cls").main) and recipes.load_recipe("text_cls").DEFAULTS["model"] == "minilm"
    with pytest.raises(ConfigError, match="unknown recipe 'image'; choose one of: domain_adapt, image_cls"):
        recipes.load_recipe("image")
    assert cli(["recipes"]) == 0
    listed = capsys.readouterr().out
    assert all(f"accelerate launch recipes/{name}.py" in listed for name in recipes.recipe_names())

    (tmp_path / "pair_cls.py").write_text('"""Classify sentence pairs."""\n\nDEFAULTS = {}\n\n\ndef main(argv=None):\n    return argv\n')
    (tmp_path / "_helper.py").write_text("def main(argv=None):\n    pass\n")
    monkeypatch.setattr(recipes, "RECIPES_DIR", tmp_path)
    assert recipes.recipe_names() == ["pair_cls"] and recipes.recipe_summary("pair_cls") == "Classify sentence pairs."
    assert recipes.load_recipe("pair_cls").main(["x"]) == ["x"]


@pytest.mark.parametrize("recipe", ["image_cls", "text_cls", "domain_adapt"])
def test_build_recipe_gives_the_trainer_main_trains_and_writes_no_file(recipe, tiny_timm_dir, tiny_bert_dir, tmp_path):
    """The shared entry point benchmarks use: the recipe's own parse and build, its defaults and data pipeline; with
    trainer=False the same model untouched by a trainer (a CNN stays in its loaded memory format)."""
    from hftransfer.recipes import build_recipe, load_recipe
    from hftransfer.trainer import TransferTrainer

    out = tmp_path / "out"
    if recipe == "text_cls":
        argv = tiny_text_args(tiny_bert_dir, out)
    else:
        argv = tiny_image_args(tiny_timm_dir, out)
        if recipe == "domain_adapt":
            argv = [a for a in argv if a != "--dataset" and a != "digits"] + [
                "--source", "digits", "--target", "mnist5k", "--shift_samples", "0"]
    run = build_recipe(recipe, argv)
    trainer = run.trainer
    assert isinstance(trainer, TransferTrainer) and not any(out.rglob("*"))  # transformers may create the folder
    assert trainer.args.learning_rate == float(argv[argv.index("--learning_rate") + 1]) if "--learning_rate" in argv \
        else trainer.args.learning_rate == load_recipe(recipe).DEFAULTS["learning_rate"]
    assert trainer.args.warmup_steps == load_recipe(recipe).DEFAULTS["warmup_steps"]
    assert len(trainer.train_dataset) == 96 and trainer.data_collator is (run.collator or trainer.data_collator)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert batch["labels"].shape == (4,)
    untouched = build_recipe(recipe, argv, trainer=False)
    assert untouched.trainer is None and not any(out.rglob("*"))
    conv = next((m for m in untouched.loaded.model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is not None:
        assert conv.weight.is_contiguous() and not conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)).weight.is_contiguous(
            memory_format=torch.channels_last)
    for name, value in untouched.loaded.model.state_dict().items():  # the same seed: the same initial model
        assert torch.equal(value, trainer.model.state_dict()[name]), name
