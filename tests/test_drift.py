"""The card's per-layer drift: how far each layer group moved from where training started."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_image_args, tiny_text_args


@pytest.mark.parametrize("strategy", ["full", "linear_probe"])
def test_every_card_reports_each_groups_drift_from_input_to_head(strategy, tiny_timm_dir, image_recipe, tmp_path):
    out = tmp_path / "out"
    trainer = image_recipe.main(tiny_image_args(tiny_timm_dir, out, "--strategy", strategy))
    drift = json.loads((out / "layer_drift.json").read_text())
    assert [row["group"] for row in drift] == [g.name for g in trainer.strategy.groups]  # input to head
    assert drift[-1]["group"] == "head" and drift[-1]["relative_change"] > 0
    backbone = [row["relative_change"] for row in drift[:-1]]
    if strategy == "linear_probe":
        assert all(change == 0 for change in backbone)  # frozen groups did not move
    else:
        assert all(change > 0 for change in backbone)
    card = (out / "README.md").read_text()
    assert "## How far each layer moved" in card and "| head (new) |" in card
    from hftransfer.drift import suggested_freeze_groups

    depth = suggested_freeze_groups(drift)
    assert (f"`--freeze_groups {depth}`" in card) if depth else ("nothing to suggest freezing" in card)
    assert json.loads((out / "card_inputs.json").read_text())["layer_drift"] == drift


def test_drift_is_relative_to_the_starting_weights():
    import torch
    from torch import nn

    from hftransfer.drift import layer_drift, snapshot
    from hftransfer.models.groups import LayerGroup

    model = nn.Linear(4, 4, bias=False)
    start = snapshot(model)
    with torch.no_grad():
        model.weight.mul_(1.5)  # every weight 50% larger: relative change 0.5
    (row,) = layer_drift(model, start, [LayerGroup("all", dict(model.named_parameters()))])
    assert row == {"group": "all", "parameters": 16, "relative_change": pytest.approx(0.5)}


def test_drift_with_wise_ft_reads_the_interpolated_model(tiny_timm_dir, image_recipe, tmp_path):
    """With --wise_ft_alphas the starting weights are WiSE-FT's copy; the drift is the saved (interpolated) model's."""
    from hftransfer.drift import layer_drift

    out = tmp_path / "out"
    trainer = image_recipe.main(tiny_image_args(tiny_timm_dir, out, "--wise_ft_alphas", "0", "1"))
    drift = json.loads((out / "layer_drift.json").read_text())
    assert trainer.wise_ft is not None and [row["group"] for row in drift] == [g.name for g in trainer.strategy.groups]
    assert drift == layer_drift(trainer.model, trainer._wise_ft_start, trainer.strategy.groups)


def test_the_suggested_depth_is_the_leading_run_of_groups_below_half_the_backbone_median():
    from hftransfer.drift import suggested_freeze_groups

    rows = lambda *changes: [{"relative_change": c} for c in changes] + [{"relative_change": 5.0}]  # noqa: E731 (head)
    assert suggested_freeze_groups(rows(0.01, 0.02, 0.3, 0.01, 0.4, 0.5)) == 2  # median 0.3: bar 0.15; stops at 0.3
    assert suggested_freeze_groups(rows(0.2, 0.2, 0.2)) == 0
    assert suggested_freeze_groups(rows(0.1)) == 0  # one backbone group: nothing to weigh it against


@pytest.mark.parametrize("strategy", ["full", "gradual", "setfit"])  # setfit (a text strategy): its contrastive phase too
def test_freeze_groups_holds_the_first_groups_still_with_any_strategy(strategy, tiny_timm_dir, tiny_bert_dir,
                                                                      image_recipe, text_recipe, tmp_path):
    out = tmp_path / "out"
    phases = ["--unfreeze_unit", "step", "--unfreeze_every", "1"] if strategy == "gradual" else []
    recipe, model, recipe_args = ((text_recipe, tiny_bert_dir, tiny_text_args) if strategy == "setfit"
                                  else (image_recipe, tiny_timm_dir, tiny_image_args))
    trainer = recipe.main(recipe_args(model, out, "--strategy", strategy, "--freeze_groups", "2", *phases))
    drift = json.loads((out / "layer_drift.json").read_text())
    assert [row["relative_change"] for row in drift[:2]] == [0, 0]  # held still, bitwise
    assert all(row["relative_change"] > 0 for row in drift[2:])  # every later group trained
    assert json.loads((out / "transfer_strategy.json").read_text())["strategy"]["freeze_groups"] == 2
    assert all(not p.requires_grad for g in trainer.strategy.groups[:2] for p in g.parameters.values())


def test_freeze_groups_that_would_reach_the_head_is_a_one_line_error(tiny_timm_dir, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run([sys.executable, str(REPO / "recipes" / "image_cls.py"),
                             *tiny_image_args(tiny_timm_dir, tmp_path / "out", "--freeze_groups", "99")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --freeze_groups 99 would freeze the head too")


def test_readme_freeze_table_is_the_committed_benchmark_json():
    from bench_readme import readme_table_and_rendering

    table, rendered, report = readme_table_and_rendering("freeze_depth")
    assert table == rendered
    assert len(report["seeds"]) == 3 and list(report["arms"]) == ["full", "full + suggested freeze", "linear_probe"]
