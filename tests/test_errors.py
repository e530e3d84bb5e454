"""Bad input: one line naming the problem and the fix, and no output folder that looks like a finished run."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, tiny_image_args, tiny_text_args

from hftransfer.errors import HFTransferError


def _fails(recipe, argv, out, *phrases):
    with pytest.raises(HFTransferError) as raised:
        recipe.main(argv)
    message = str(raised.value)
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message, message
    assert not out.exists(), "a failed run left an output folder behind"
    return message


def _image_folder(root, corrupt: bool = False):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / "train" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / "train" / label / f"{i}.png")
    if corrupt:
        (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return root


def test_missing_dataset_path(image_recipe, tiny_timm_dir, tmp_path):
    out = tmp_path / "out"
    _fails(image_recipe, tiny_image_args(tiny_timm_dir, out, "--dataset", "./no/such/folder"), out,
           "does not exist", "./no/such/folder")


def test_missing_model_path(image_recipe, tmp_path):
    out = tmp_path / "out"
    _fails(image_recipe, tiny_image_args("./no/such/model", out), out, "does not exist")


def test_unknown_builtin_dataset_and_model(image_recipe, tiny_timm_dir, tmp_path):
    out = tmp_path / "out"
    _fails(image_recipe, tiny_image_args(tiny_timm_dir, out, "--dataset", "cifar"), out,
           "unknown built-in dataset 'cifar'", "mnist5k")
    _fails(image_recipe, tiny_image_args("resnet9000", out), out, "unknown built-in model 'resnet9000'", "efficientnet_lite0")


def test_hub_id_not_cached_while_offline(image_recipe, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    out = tmp_path / "out"
    _fails(image_recipe, tiny_image_args("someorg/not-cached", out), out,
           "'someorg/not-cached' is not in the Hugging Face cache", "HF_HUB_OFFLINE")


def test_dataset_without_label_column(text_recipe, tiny_bert_dir, tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,stars_text\n" + "".join(f"review number {i},x\n" for i in range(20)))
    out = tmp_path / "out"
    _fails(text_recipe, tiny_text_args(tiny_bert_dir, out, "--dataset", str(data)), out,
           "has no label column", "--label_column")


def test_label_outside_num_labels(text_recipe, tiny_bert_dir, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(20)))
    (folder / "test.csv").write_text("text,label\n" + "".join(f"text {i},{5 if i == 3 else i % 2}\n" for i in range(10)))
    out = tmp_path / "out"
    _fails(text_recipe, tiny_text_args(tiny_bert_dir, out, "--dataset", str(folder)), out,
           "label 5 in split 'test'", "outside 0..1")


def test_undecodable_image(image_recipe, tiny_timm_dir, tmp_path):
    folder = _image_folder(tmp_path / "pets", corrupt=True)
    out = tmp_path / "out"
    _fails(image_recipe, tiny_image_args(tiny_timm_dir, out, "--dataset", str(folder)), out,
           "cannot decode image", "broken.jpg")


def test_empty_split(text_recipe, tiny_bert_dir, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(20)))
    (folder / "test.csv").write_text("text,label\n")
    out = tmp_path / "out"
    _fails(text_recipe, tiny_text_args(tiny_bert_dir, out, "--dataset", str(folder)), out, "split 'test'", "empty")


def test_unknown_config_key(image_recipe, tiny_timm_dir, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rat: 0.1\n")
    out = tmp_path / "out"
    _fails(image_recipe, ["--config", str(config), *tiny_image_args(tiny_timm_dir, out)], out,
           "unknown config key 'learning_rat'", "did you mean 'learning_rate'")


def test_finished_output_dir_is_not_overwritten(image_recipe, tiny_timm_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "test_results.json").write_text("{}")
    with pytest.raises(HFTransferError, match="holds 1 file.s. hftransfer did not write"):
        image_recipe.main(tiny_image_args(tiny_timm_dir, out))
    assert (out / "test_results.json").read_text() == "{}"


def test_command_line_prints_one_error_line_and_exits_2(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "image_cls.py"), "--dataset", "nope", "--output_dir", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == ["error: unknown built-in dataset 'nope'; built-ins are digits, mnist5k, rotten_tomatoes, tweets, tweets_binary, "
                     "or pass a Hub dataset id (org/name) or a local folder/file"]
    assert "Traceback" not in result.stderr and not out.exists()


def test_string_labels_in_csv_become_class_names(tmp_path):
    from hftransfer.data import load_classification_data

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\n" + "".join(f"t {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20)))
    (folder / "test.csv").write_text("text,label\n" + "".join(f"u {i},{'pos' if i % 3 else 'neg'}\n" for i in range(9)))
    data = load_classification_data(str(folder), "text")
    assert data.label_names == ["neg", "pos"]
    assert data.splits["test"]["label"] == [0 if i % 3 == 0 else 1 for i in range(9)]
