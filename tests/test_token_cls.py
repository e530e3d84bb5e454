"""Token classification (recipes/token_cls.py): CoNLL reading, word-piece alignment, entity F1, the recipe end to end
on real tweets (WNUT-16, the built-in's package) with a tiny local BERT."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, load_recipe

from hftransfer.data.builtin import BUILTIN_DATASETS
from hftransfer.errors import DataError
from hftransfer.tasks.token_classification import (
    TokenDataArguments, align_tags, entity_metrics, load_token_data, read_conll, tag_names,
)


@pytest.fixture(scope="module")
def token_recipe():
    return load_recipe("token_cls")


def write_real_tweets(path, count: int = 80):
    """The first `count` WNUT-16 tweets that name an entity, as a CoNLL file (token<TAB>tag)."""
    train = BUILTIN_DATASETS.get("wnut16").build()["train"]
    names = train.features["ner_tags"].feature.names
    rows = [r for r in train if any(r["ner_tags"])][:count]
    lines = []
    for row in rows:
        lines += [f"{w}\t{names[t]}" for w, t in zip(row["tokens"], row["ner_tags"])] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def tiny_token_args(model_dir, data, output_dir, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir), "--dataset", str(data), "--num_train_epochs", "1", "--min_train_steps", "0",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--max_length", "48",
        "--dataloader_num_workers", "0", "--output_dir", str(output_dir), "--logging_steps", "2",
        "--learning_rate", "5e-3", "--report_to", "none", "--disable_tqdm", "true", *extra,
    ]


def test_read_conll_takes_the_first_and_last_columns_and_drops_docstart():
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
    sentences, tags = read_conll(text)
    assert sentences == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert tags == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    with pytest.raises(DataError, match="no tag column"):
        read_conll("lonely\n")


def test_tag_names_put_O_first_then_each_type_B_before_I():
    assert tag_names([["I-PER", "O", "B-LOC"], ["B-PER", "X"]]) == ["O", "B-LOC", "B-PER", "I-PER", "X"]


def test_the_built_in_corpora_are_the_published_ones():
    wnut = BUILTIN_DATASETS.get("wnut16").build()["train"]
    assert len(wnut) == 2394  # WNUT-16's training tweets
    names = wnut.features["ner_tags"].feature.names
    assert names[0] == "O" and len(names) == 21  # 10 entity types, B- and I-
    assert sum(names[t].startswith("B-") for row in wnut["ner_tags"] for t in row) == 1496


def test_align_tags_puts_a_words_tag_on_its_first_piece_only(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    words, tags = ["Lovelace", "lives", "in", "Kensington"], [1, 0, 0, 3]  # B-PER O O B-LOC
    encoded = tokenizer(words, is_split_into_words=True)
    word_ids = encoded.word_ids()
    assert len(word_ids) > len(words) + 2  # the names split into several pieces
    labels = align_tags(word_ids, tags, None)
    firsts = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
    assert [labels[i] for i in firsts] == tags
    assert all(labels[i] == -100 for i in range(len(labels)) if i not in firsts)
    every = align_tags(word_ids, tags, inside=[0, 2, 2, 4, 4])  # B-PER -> I-PER, B-LOC -> I-LOC
    later = [every[i] for i, w in enumerate(word_ids) if w == 0 and i not in firsts]
    assert later and set(later) == {2}


def test_entity_metrics_score_entities_as_conlleval():
    from transformers import EvalPrediction

    names = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    # words: Ada(B-PER) Lovelace(I-PER) in(O) London(B-LOC); the prediction cuts the person short
    references = np.array([[-100, 3, 4, -100, 0, 1, -100, -100]])
    predictions = np.array([[0, 3, 0, 4, 0, 1, 0, 0]])  # the -100 positions are ignored, whatever is predicted
    metrics = entity_metrics(names)(EvalPrediction(predictions=predictions, label_ids=references))
    assert metrics["precision"] == pytest.approx(0.5)  # 'Ada' as PER is wrong (the entity is 'Ada Lovelace')
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(0.75)


def test_a_conll_file_is_read_and_split(tmp_path):
    data = load_token_data(TokenDataArguments(dataset=str(write_real_tweets(tmp_path / "ner.conll", 50))), seed=0)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 36, "validation": 4, "test": 10}
    assert data.label_names[0] == "O"
    assert data.splits["train"].column_names == ["tokens", "ner_tags"]


def test_string_tags_in_a_json_file_are_named_and_a_word_without_a_tag_is_one_line(tmp_path):
    rows = [{"words": ["Ada", "met", "Babbage"], "tags": ["B-PER", "O", "B-PER"]},
            {"words": ["in", "London"], "tags": ["O", "B-LOC"]}] * 5
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in rows))
    data = load_token_data(TokenDataArguments(dataset=str(good)), seed=0)
    assert data.label_names == ["O", "B-LOC", "B-PER"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in [*rows, {"words": ["a", "b"], "tags": ["O"]}]))
    with pytest.raises(DataError, match="has 2 words but 1 tags"):
        load_token_data(TokenDataArguments(dataset=str(bad)), seed=0)


@pytest.mark.parametrize("recipe, dataset, expected", [
    ("token_cls", "digits", "built-in 'digits' is a classification dataset; use recipes/image_cls.py"),
    ("text_cls", "wnut16", "built-in 'wnut16' is a token-classification dataset; use recipes/token_cls.py"),
])
def test_a_dataset_of_the_other_task_is_a_one_line_error(recipe, dataset, expected, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "recipes" / f"{recipe}.py"), "--dataset", dataset,
                             "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {expected}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value", [("--validation_size", "1.5"), ("--test_size", "0"),
                                         ("--max_train_samples", "0"), ("--max_eval_samples", "-3"),
                                         ("--max_length", "0")])
def test_the_shared_data_options_are_checked_as_the_classification_recipes_check_them(token_recipe, flag, value,
                                                                                     tmp_path):
    """The options token_cls.py shares with the classification recipes get their range checks while parsing (before,
    --max_length 0 trained and saved a model, and the others ended in a traceback)."""
    from hftransfer.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{flag} \\S+ is out of range; pass "):
        token_recipe.parse([flag, value, "--output_dir", str(tmp_path / "out")])


def test_checking_a_classification_recipes_arguments_leaves_the_token_task_unloaded(tmp_path):
    """The argument checks shared with token_cls.py are keyed on the shared argument classes, so a classification
    recipe's parse does not import the token task (whose import registers its built-in corpora)."""
    probe = ("import runpy, sys; parse = runpy.run_path(sys.argv[1], run_name='probe')['parse']; "
             "parse(['--output_dir', sys.argv[2]]); print('hftransfer.tasks.token_classification' in sys.modules)")
    for recipe in ("image_cls", "text_cls"):
        result = subprocess.run([sys.executable, "-c", probe, str(REPO / "recipes" / f"{recipe}.py"),
                                 str(tmp_path / "out")], capture_output=True, text=True, check=True, timeout=300)
        assert result.stdout.strip() == "False", recipe


def test_max_length_zero_stops_the_token_recipe_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "recipes" / "token_cls.py"), "--max_length", "0",
                             "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --max_length 0 is out of range; pass a token count of at "
                                                  "least 1, e.g. 128"]
    assert not (tmp_path / "out").exists()


def test_a_task_registers_its_own_built_in_datasets_and_other_recipes_still_name_it():
    """The task module holds its corpora (CONTRIBUTING: a task is its module, its recipe and one TASKS entry):
    importing the data package or loading a classification built-in registers none of them, yet a classification
    recipe finds the recipe that reads one."""
    probe = ("import sys, hftransfer.data.builtin as b; from hftransfer.data.loading import _load_raw; "
             "from hftransfer.tasks import recipes_reading; _load_raw('digits', None); "
             "print('wnut16' in b.BUILTIN_DATASETS, 'hftransfer.tasks.token_classification' in sys.modules); "
             "print(recipes_reading('wnut16'), recipes_reading('digits'), recipes_reading('no_such_set'))")
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           timeout=300).stdout.splitlines()
    assert lines == ["False False", "('token-classification', ['recipes/token_cls.py']) "
                     "('classification', ['recipes/image_cls.py', 'recipes/text_cls.py']) None"]


def test_token_recipe_trains_and_its_output_tags_the_same_in_pipeline(tiny_bert_dir, token_recipe, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    data = write_real_tweets(tmp_path / "ner.conll", 120)
    out = tmp_path / "out"
    token_recipe.main(tiny_token_args(tiny_bert_dir, data, out, "--num_train_epochs", "2"))
    test = json.loads((out / "test_results.json").read_text())
    assert {"test_f1", "test_precision", "test_recall", "test_accuracy"} <= set(test)
    card = (out / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "Entity F1 (micro)" in card

    tagger = pipeline("token-classification", model=str(out), ignore_labels=[])
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForTokenClassification.from_pretrained(out).eval()
    sentence = "Watching the Yankees game in New York with Justin Bieber"
    encoded = tokenizer(sentence, return_tensors="pt")
    with torch.no_grad():
        ids = model(**encoded).logits.argmax(-1)[0].tolist()
    expected = [model.config.id2label[i] for i in ids[1:-1]]  # without [CLS] and [SEP]
    assert [e["entity"] for e in tagger(sentence)] == expected


@pytest.mark.parametrize("strategy", ["full", "linear_probe", "gradual", "llrd", "lp_ft", "bitfit", "lora"])
def test_every_strategy_trains_the_token_head(strategy, tiny_bert_dir, token_recipe, tmp_path):
    from safetensors.torch import load_file

    data = write_real_tweets(tmp_path / "ner.conll", 40)
    out = tmp_path / "out"
    trainer = token_recipe.main(tiny_token_args(tiny_bert_dir, data, out, "--strategy", strategy, "--max_steps", "2",
                                                "--eval_strategy", "no", "--save_strategy", "no",
                                                "--load_best_model_at_end", "false"))
    assert trainer.state.global_step == 2
    tags = json.loads((out / "config.json").read_text())["id2label"]
    saved = load_file(out / "model.safetensors")
    assert saved["classifier.weight"].shape[0] == len(tags) and saved["classifier.weight"].abs().sum() > 0
    if strategy in ("linear_probe", "lp_ft"):  # head fitted by logistic regression on every tagged word piece
        tagged = sum(sum(t != -100 for t in row) for row in trainer.train_dataset["labels"])
        assert trainer.strategy.head_fit["examples"] == tagged > len(trainer.train_dataset)


def test_readme_token_table_is_the_committed_benchmark_json():
    """README.md's NER table is rendered from benchmarks/results/token_cls.json, not typed."""
    from bench_readme import readme_table_and_rendering

    table, rendered, report = readme_table_and_rendering("token_cls")
    assert table == rendered
    assert len(report["seeds"]) == 3 and set(report["strategies"]) == {"full", "linear_probe"}


def test_the_package_imports_no_task_module_it_does_not_need():
    code = ("import sys, hftransfer, hftransfer.hub, hftransfer.outputs, hftransfer.trainer, hftransfer.cli; "
            "print(any(m.startswith('hftransfer.tasks.') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr[-2000:]


def test_a_saved_models_task_comes_from_its_architecture():
    from transformers import BertConfig

    from hftransfer.tasks import task_of

    assert task_of(BertConfig(architectures=["BertForTokenClassification"])) == "token-classification"
    assert task_of(BertConfig(architectures=["BertForSequenceClassification"])) == "text-classification"


def test_regularizers_train_a_token_model_with_the_token_loss(tiny_bert_dir, token_recipe, tmp_path):
    """`--regularizer` on token classification ended in a cross-entropy shape traceback (token logits [B, T, C]
    against the loss-component path's per-example loss). Now the task term is one row per tagged word piece: with the
    regularizer at weight 0 the run is step for step the plain run (the loss transformers computes for the model)."""
    data = write_real_tweets(tmp_path / "ner.conll", 40)
    common = ("--max_steps", "2", "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
              "--load_best_model_at_end", "false")

    def losses(out, *extra):
        trainer = token_recipe.main(tiny_token_args(tiny_bert_dir, data, tmp_path / out, *common, *extra))
        return [e for e in trainer.state.log_history if "loss" in e]

    plain = losses("plain")
    off = losses("off", "--regularizer", "l2sp,bss", "--regularizer_weight", "0")
    assert [e["loss"] for e in off] == pytest.approx([e["loss"] for e in plain], rel=1e-5)
    assert [e["loss_task"] for e in off] == pytest.approx([e["loss"] for e in plain], rel=1e-5)
    on = losses("on", "--regularizer", "l2sp,bss")
    assert all(e["loss_bss"] > 0 for e in on) and on[-1]["loss_l2sp"] > 0
