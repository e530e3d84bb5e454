"""hftransfer advise: scores and linear probes for every candidate, short recipe fine-tunes for the shortlist."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, tiny_image_args
from hftransfer.advise import linear_probe_accuracy, shortlist

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def advise_cli(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hftransfer.cli", "advise", *args], capture_output=True, text=True,
                          timeout=600, env=ENV, cwd=cwd)


def test_linear_probe_is_scikit_learns_logistic_regression_on_standardised_features():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 10)) * 1.5
    labels = rng.integers(0, 3, size=240)
    features = (centres[labels] + rng.normal(size=(240, 10))).astype(np.float32)
    train, held_out = slice(0, 160), slice(160, None)
    scaler = StandardScaler().fit(features[train])
    reference = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(features[train]), labels[train])
    expected = reference.score(scaler.transform(features[held_out]), labels[held_out])
    assert linear_probe_accuracy(features[train], labels[train], features[held_out], labels[held_out]) == \
        pytest.approx(expected, abs=1 / 80)
    assert expected > 0.6  # a task a linear probe can learn: the comparison means something


def test_shortlist_is_the_best_mean_rank_of_logme_and_linear_probe():
    rows = [{"model": name, "scores": {"logme": logme}, "linear_probe_accuracy": probe}
            for name, logme, probe in [("a", 0.9, 0.50), ("b", 0.1, 0.95), ("c", 0.5, 0.80), ("d", 0.2, 0.10)]]
    # ranks (logme, probe): a (1, 3), b (4, 1), c (2, 2), d (3, 4) -> mean 2, 2.5, 2, 3.5; the tie goes to the probe
    assert [r["model"] for r in shortlist(rows, 3)] == ["c", "a", "b"]
    assert shortlist(rows, 10)[-1]["model"] == "d"


def test_the_strategy_follows_the_measured_rule_not_the_short_fine_tune():
    from hftransfer.advise import _recommend

    def row(name, modality, tuned, frozen):
        return {"model": name, "image_size": None, "modality": modality, "parameters": 1,
                "linear_probe_accuracy": frozen, "finetune_probe": {"validation_accuracy": tuned, "steps": 20}}

    images = [row("a", "image", 0.55, 0.89), row("b", "image", 0.87, 0.86)]
    chosen = _recommend(images, images, [], labels_per_class=10)
    assert chosen["model"] == "b" and chosen["strategy"] == "full"  # the short run's dip below its probe is no veto
    texts = [row("t", "text", 0.60, 0.62)]
    assert _recommend(texts, texts, [], labels_per_class=10)["strategy"] == "setfit"
    assert _recommend(texts, texts, [], labels_per_class=50)["strategy"] == "full"
    assert _recommend(texts, texts, ["--strategy", "lora"], labels_per_class=10)["flags"] == ["--strategy", "lora"]


@pytest.fixture(scope="module")
def digits_trained_dir(tmp_path_factory, image_recipe, tiny_timm_dir):
    """The tiny timm model after training on digits: features a digits probe can use, unlike its random start."""
    out = tmp_path_factory.mktemp("advise") / "digits_trained"
    args = tiny_image_args(tiny_timm_dir, out, "--max_train_samples", "600", "--num_train_epochs", "2",
                           "--save_strategy", "no", "--eval_strategy", "no", "--load_best_model_at_end", "false")
    image_recipe.main(args)
    return out


@pytest.mark.slow
def test_advise_recommends_the_candidate_trained_for_the_task_and_launches_it(tmp_path, tiny_timm_dir,
                                                                              digits_trained_dir):
    out = tmp_path / "advice"
    result = advise_cli("--models", str(tiny_timm_dir), str(digits_trained_dir), "--dataset", "digits",
                        "--max_train_samples", "200", "--image_size", "32", "--probe_top", "2", "--probe_steps", "6",
                        "--target", "mnist5k", "--max_samples", "120", "--output_dir", str(out), "--launch",
                        "--max_eval_samples", "100", "--per_device_train_batch_size", "16", "--dataloader_num_workers",
                        "0", "--learning_rate", "3e-3", "--num_train_epochs", "1", "--min_train_steps", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    advice = json.loads((out / "advice.json").read_text())
    by_model = {row["model"]: row for row in advice["candidates"]}
    trained, random_start = by_model[str(digits_trained_dir)], by_model[str(tiny_timm_dir)]
    assert trained["linear_probe_accuracy"] > random_start["linear_probe_accuracy"]
    assert advice["recommended"]["model"] == str(digits_trained_dir)
    assert advice["recommended"]["strategy"] == "full" and advice["recommended"]["flags"] == ["--strategy", "full"]
    for row in (trained, random_start):  # both shortlisted (--probe_top 2): each got a 6-step recipe run
        # --max_samples 120 caps the scored training rows; validation is the run's --max_eval_samples 100
        assert row["finetune_probe"]["steps"] == 6 and row["num_train"] == 120 and row["num_validation"] == 100
        assert row["parameters"] > 0 and row["forward_ms_per_example"] > 0
    assert advice["adaptation"]["target"] == "mnist5k:train" and advice["adaptation"]["examples_per_domain"] == 120
    assert advice["adaptation"]["method"] in {None, "cdan"}
    assert (out / "advice.png").stat().st_size > 0 and len(list((out / "probes").iterdir())) == 2
    assert f"recommended: --model {digits_trained_dir}" in result.stdout and "target mnist5k:train" in result.stdout
    launched = json.loads((out / "recommended" / "test_results.json").read_text())
    assert 0 <= launched["test_accuracy"] <= 1
    assert json.loads((out / "recommended" / "config.json").read_text())  # a full saved model, not a probe


@pytest.mark.parametrize("args, message", [
    (["--models", "{timm}", "{bert}", "--dataset", "digits"], "mixes image and text"),
    (["--models", "{timm}", "{timm}", "--dataset", "digits"], "twice"),
    (["--models", "{timm}", "--dataset", "digits", "--image_sizes", "32", "64"], "2 sizes for 1 --models"),
    (["--models", "{timm}", "--dataset", "digits", "--model", "x"], "advise sets --model itself"),
    (["--models", "{timm}", "--dataset", "digits", "--probe_steps", "0"], "at least 1"),
    (["--models", "{timm}", "--dataset", "digits", "--output_dir", "{user}"], "did not write"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path, tiny_timm_dir, tiny_bert_dir, args, message,
                                                          capsys, monkeypatch):
    from hftransfer.cli import main

    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    monkeypatch.chdir(REPO)
    args = [a.format(timm=tiny_timm_dir, bert=tiny_bert_dir, user=user) for a in args]
    status = main(["advise", *args, *([] if "--image_sizes" in args else ["--image_size", "32"])])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert (user / "notes.txt").read_text() == "keep me" and os.listdir(user) == ["notes.txt"]


def test_readme_advise_table_is_the_committed_benchmark_json():
    from bench_readme import readme_table_and_rendering

    table, rendered, report = readme_table_and_rendering("advise")
    assert table == rendered
    mnist = report["tasks"]["mnist5k"]
    assert len(mnist["candidates"]) >= 8 and mnist["gap_pp"] <= 1.0 and mnist["compute_share"] <= 0.25


def test_a_timm_candidate_is_scored_at_the_recipes_size_on_the_recipes_split(tmp_path, tiny_timm_dir,
                                                                                 monkeypatch, capsys):
    """The image recipe trains timm models at 64 px; scoring them at their pretraining size (224+) would rank
    features the fine-tune never sees, and cost ~10x more."""
    from hftransfer.cli import main

    monkeypatch.chdir(REPO)
    out = tmp_path / "advice"
    status = main(["advise", "--models", str(tiny_timm_dir), "--dataset", "digits", "--max_train_samples", "40",
                   "--probe_steps", "1", "--output_dir", str(out), "--validation_size", "0.3",
                   "--per_device_train_batch_size", "8", "--dataloader_num_workers", "0"])
    assert status == 0, capsys.readouterr().err[-2000:]
    advice = json.loads((out / "advice.json").read_text())
    assert advice["candidates"][0]["image_size"] == 64 and advice["recommended"]["image_size"] == 64
    probe = advice["candidates"][0]["finetune_probe"]  # time per optimizer step, not the whole run (load, evaluations)
    assert probe["steps"] * probe["seconds_per_step"] < 0.9 * probe["seconds"]
    # the recipe's own data flags shape the split advise scores on: 30% of digits held out, not the default 10%
    assert advice["candidates"][0]["num_validation"] > 400
    saved = out / "probes" / "0-model" / "config.json"
    assert json.loads(saved.read_text())["pretrained_cfg"]["input_size"] == [3, 64, 64]
