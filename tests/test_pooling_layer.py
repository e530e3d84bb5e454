"""`--pooling checkpoint`: a sentence-transformers checkpoint's mean pooling built into the classifier as one more
encoder layer; the export stays a plain BertForSequenceClassification (pipeline() with no custom code)."""

from __future__ import annotations

import json

import torch
from test_da_protocol import sentence_transformers_folder

from conftest import tiny_text_args

from hub_fixtures import loopback_hub  # noqa: F401  (pytest fixture)
from hub_server import DEFAULT_TOKEN


def test_the_added_layer_gives_cls_the_layer_normalised_mean_of_the_attended_tokens(tmp_path):
    from hftransfer.models import load_classifier

    folder = sentence_transformers_folder(tmp_path / "st", "mean")
    loaded = load_classifier(str(folder), ["a", "b"], "text", pooling="checkpoint")
    model = loaded.model.eval()
    assert model.config.num_hidden_layers == 3 and len(model.bert.encoder.layer) == 3
    texts = ["a short one", "a rather longer sentence than the first, with padding for the other"]
    batch = loaded.processor(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model.bert(**batch, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (states[-2] * mask).sum(1) / mask.sum(1)
    expected = torch.nn.functional.layer_norm(mean, mean.shape[-1:], eps=model.config.layer_norm_eps)
    cosine = torch.nn.functional.cosine_similarity(states[-1][:, 0], expected)
    assert cosine.min() > 0.99999, cosine
    with torch.no_grad():  # padding changes nothing: the short text alone scores as in the padded batch
        alone = model(**loaded.processor(texts[:1], return_tensors="pt")).logits
        batched = model(**batch).logits[:1]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)


def test_the_head_reads_the_pooled_embedding_at_unit_norm_not_the_checkpoints_untrained_pooler(tmp_path):
    from hftransfer.models import load_classifier

    folder = sentence_transformers_folder(tmp_path / "st", "mean")
    model = load_classifier(str(folder), ["a", "b"], "text", pooling="checkpoint").model.eval()
    batch = load_classifier(str(folder), ["a", "b"], "text").processor(["a short one", "and another"], padding=True,
                                                                       return_tensors="pt")
    with torch.no_grad():
        output = model.bert(**batch)
    pooled = output.last_hidden_state[:, 0]
    torch.testing.assert_close(output.pooler_output, torch.tanh(torch.nn.functional.normalize(pooled)))
    assert output.pooler_output.norm(dim=-1).max() < 1


def test_recipe_builds_the_checkpoint_pooling_by_default_and_exports_a_model_pipeline_loads(text_recipe, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    from hftransfer.weights import interpolate

    folder = sentence_transformers_folder(tmp_path / "st", "mean")
    out = tmp_path / "out"
    trainer = text_recipe.main(tiny_text_args(folder, out))  # --pooling auto
    exported = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert exported.config.num_hidden_layers == 3 and exported.config.hftransfer_pooling_layer == 2
    assert "built in as encoder layer 2" in (out / "README.md").read_text()
    batch = trainer.processing_class(["what a day", "not good at all"], padding=True, return_tensors="pt")
    trained = trainer.model.eval().cpu()
    with torch.no_grad():
        torch.testing.assert_close(exported(**batch).logits, trained(**batch).logits)
    predictions = pipeline("text-classification", model=str(out), device="cpu")(["what a day"])
    assert predictions[0]["label"] in {"negative", "neutral", "positive"}
    # WiSE-FT between the export and the checkpoint it started from: the start gets the same built-in layer
    result = interpolate(str(folder), str(out), [0, 1], ["tweets"], max_eval_samples=40)
    recipe_test = json.loads((out / "test_results.json").read_text())["test_accuracy"]
    assert result["table"]["1"]["tweets"]["accuracy"] == recipe_test
    from hftransfer.data import load_classification_data
    from hftransfer.features import evaluate_classifier, prepare_eval_split
    from hftransfer.models import load_classifier
    from hftransfer.weights import head_state_keys

    start = load_classifier(str(folder), list(exported.config.id2label.values()), "text", pooling="checkpoint")
    head = head_state_keys(exported)
    start.model.load_state_dict({k: v for k, v in exported.state_dict().items() if k in head}, strict=False)
    test, collate = prepare_eval_split(load_classification_data("tweets", "text", max_eval_samples=40, seed=42), "test",
                                       start.processor, "text")
    assert evaluate_classifier(start.model, test, collate) == result["table"]["0"]["tweets"]  # alpha 0: the start


def test_pooling_no_layer_expresses_or_no_sentence_to_pool_is_a_load_error(tmp_path, tiny_bert_dir):
    import pytest

    from hftransfer.errors import ModelLoadError
    from hftransfer.models import load_classifier
    from hftransfer.tasks.token_classification import load_token_classifier

    folder = sentence_transformers_folder(tmp_path / "st", "max")
    with pytest.raises(ModelLoadError, match="pools by 'max'.*drop --pooling"):
        load_classifier(str(folder), ["a", "b"], "text", pooling="checkpoint")
    with pytest.raises(ModelLoadError, match="token classifier reads every token: drop --pooling"):
        load_token_classifier(str(tiny_bert_dir), ["O", "B-X"], pooling="checkpoint")
    cls = load_classifier(str(sentence_transformers_folder(tmp_path / "cls", "cls")), ["a", "b"], "text",
                          pooling="checkpoint")
    assert cls.model.config.num_hidden_layers == 2  # the head already reads [CLS]: no layer added
    # auto: what no layer expresses, and a checkpoint with no pooling config, keep the architecture's head
    assert load_classifier(str(folder), ["a", "b"], "text", pooling="auto").model.config.num_hidden_layers == 2
    assert load_classifier(str(tiny_bert_dir), ["a", "b"], "text", pooling="auto").model.config.num_hidden_layers == 2
    assert load_token_classifier(str(tiny_bert_dir), ["O", "B-X"], pooling="auto").model.config.num_hidden_layers == 2


def test_auto_reads_the_pooling_of_a_checkpoint_named_by_its_hub_id(loopback_hub, tmp_path, tiny_bert_dir):
    """A sentence-transformers model given as a Hub id (downloaded through the real huggingface_hub client, here from a
    loopback Hub) gets its mean pooling built in, as a local folder does; a plain BERT repo keeps its head."""
    from huggingface_hub import HfApi

    from hftransfer.models import load_classifier

    api = HfApi(endpoint=loopback_hub.url, token=DEFAULT_TOKEN)
    for repo, folder in (("org/st-mean", sentence_transformers_folder(tmp_path / "st", "mean")),
                         ("org/plain", tiny_bert_dir)):
        api.create_repo(repo)
        api.upload_folder(repo_id=repo, folder_path=folder)
    assert load_classifier("org/st-mean", ["a", "b"], "text").model.config.num_hidden_layers == 2  # library default
    assert load_classifier("org/st-mean", ["a", "b"], "text", pooling="auto").model.config.num_hidden_layers == 3
    assert load_classifier("org/plain", ["a", "b"], "text", pooling="auto").model.config.num_hidden_layers == 2
