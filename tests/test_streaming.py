"""--streaming: the train split read as a datasets.IterableDataset (data past one disk), validation and test read
whole; under torchrun each rank reads its own examples. Bad streaming input is in test_bad_input.py's table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import WORDS, torchrun_two_ranks, write_jsonl_stream, write_text_stream

def write_image_stream(root: Path) -> Path:
    """An imagefolder with train/, validation/ and test/ sub-folders, one sub-folder per class (a ClassLabel)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("validation", 8), ("test", 8)):
        for c, name in enumerate(("dark", "light")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 120, (12, 12, 3)) + 120 * c
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def stream_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--dataset", str(data), "--streaming", "--max_steps", "6", "--num_train_epochs", "3",
            "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32", "--dataloader_num_workers",
            "0", "--output_dir", str(out), "--logging_steps", "2", *extra]


@pytest.fixture(scope="module")
def text_stream(tmp_path_factory) -> Path:
    return write_text_stream(tmp_path_factory.mktemp("streams") / "texts", files=4)


@pytest.fixture(scope="module")
def image_stream(tmp_path_factory) -> Path:
    return write_image_stream(tmp_path_factory.mktemp("streams") / "images")


def test_a_streamed_text_run_trains_its_steps_from_the_stream_and_loads_in_pipeline(
    text_recipe, tiny_bert_dir, text_stream, tmp_path
):
    import datasets
    from transformers import pipeline

    out = tmp_path / "out"
    trainer = text_recipe.main(stream_args(tiny_bert_dir, text_stream, out, "--class_names", "neg,pos",
                                           "--max_length", "32"))
    assert isinstance(trainer.train_dataset, datasets.IterableDataset)
    assert trainer.state.global_step == 6
    evaluated = sorted({h["step"] for h in trainer.state.log_history if "eval_loss" in h})
    assert evaluated == [2, 4, 6]  # --num_train_epochs 3 periods of the 6 steps: a stream has no epochs to count
    classify = pipeline("text-classification", model=str(out), device="cpu")
    assert classify("example 7 is great")[0]["label"] in {"neg", "pos"}


def test_a_streamed_image_run_is_the_same_run_twice_with_one_seed(image_recipe, tiny_timm_dir, image_stream, tmp_path):
    """The stream's shuffle and each example's augmentation follow --seed, as for in-memory data."""
    weights = []
    for run in ("a", "b"):
        trainer = image_recipe.main(stream_args(tiny_timm_dir, image_stream, tmp_path / run, "--image_size", "32",
                                                "--learning_rate", "3e-3"))
        assert trainer.state.global_step == 6
        weights.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    config = (tmp_path / "a" / "config.json").read_text()
    assert '"dark"' in config and '"light"' in config  # the class names come from the stream's ClassLabel


@pytest.mark.slow
@pytest.mark.parametrize("files", [4, 1], ids=["a-file-shard-per-rank", "one-file-sliced-per-batch"])
def test_under_torchrun_each_rank_trains_on_its_own_examples_of_the_stream(tiny_bert_dir, tmp_path, files):
    """Two CPU processes (gloo) on one stream: no example is trained on twice, on one rank or across both, each
    rank trains a full batch every step, and the ranks end with the same weights."""
    from transformers import AutoTokenizer

    data = write_text_stream(tmp_path / "texts", files=files)
    args = stream_args(tiny_bert_dir, data, tmp_path / "out", "--class_names", "neg,pos", "--max_length", "32")
    rank0, rank1, _ = torchrun_two_ranks("text_cls", args, tmp_path)

    seen0, seen1 = ({tuple(row) for row in rank["trained_rows"]} for rank in (rank0, rank1))
    assert len(rank0["trained_rows"]) == len(rank1["trained_rows"]) == 6 * 8
    assert len(seen0) == len(seen1) == 6 * 8 and not seen0 & seen1
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    train = [f"example {n} is {WORDS[n % 6]}" for n in range(256)]
    assert seen0 | seen1 <= {tuple(ids) for ids in tokenizer(train, truncation=True, max_length=32)["input_ids"]}
    assert rank0["sha256"] == rank1["sha256"]


def write_token_stream(root: Path, files: int, rows: int = 128) -> Path:
    """train/ (in `files` JSON-lines files), validation/ and test/ of word-tagged sentences with string tags."""
    def sentences(numbers: range) -> dict:
        return {"tokens": [["example", str(n), "met", WORDS[n % 6], "Smith"] for n in numbers],
                "ner_tags": [["O", "O", "O", "B-PER", "I-PER"] for _ in numbers]}

    return write_jsonl_stream(root, files, rows, sentences, held_out=24)


def test_a_streamed_token_run_trains_its_steps_from_the_stream_and_loads_in_pipeline(tiny_bert_dir, tmp_path):
    import datasets
    from transformers import pipeline

    from conftest import load_recipe
    from hftransfer.errors import DataError

    data = write_token_stream(tmp_path / "ner", files=2)
    out = tmp_path / "out"
    recipe = load_recipe("token_cls")
    trainer = recipe.main(stream_args(tiny_bert_dir, data, out, "--class_names", "O,B-PER,I-PER", "--max_length", "32",
                                      "--learning_rate", "5e-3"))
    assert isinstance(trainer.train_dataset, datasets.IterableDataset)
    assert trainer.state.global_step == 6
    config = json.loads((out / "config.json").read_text())
    assert list(config["id2label"].values()) == ["O", "B-PER", "I-PER"]
    tagged = pipeline("token-classification", model=str(out), device="cpu")("example 7 met Smith")
    assert all(entity["entity"] in {"O", "B-PER", "I-PER"} for entity in tagged)
    with pytest.raises(DataError, match="does not list its tags.*--class_names"):  # string tags name nothing
        recipe.main(stream_args(tiny_bert_dir, data, tmp_path / "again", "--max_length", "32"))


@pytest.mark.slow
def test_under_torchrun_each_rank_tags_its_own_sentences_of_the_stream(tiny_bert_dir, tmp_path):
    data = write_token_stream(tmp_path / "ner", files=4)
    args = stream_args(tiny_bert_dir, data, tmp_path / "out", "--class_names", "O,B-PER,I-PER", "--max_length", "32")
    rank0, rank1, _ = torchrun_two_ranks("token_cls", args, tmp_path)
    seen0, seen1 = ({tuple(row) for row in rank["trained_rows"]} for rank in (rank0, rank1))
    assert len(rank0["trained_rows"]) == len(rank1["trained_rows"]) == 6 * 8
    assert len(seen0) == len(seen1) == 6 * 8 and not seen0 & seen1
    assert rank0["sha256"] == rank1["sha256"]
