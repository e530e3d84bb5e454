"""The card's per-layer drift: how far each layer group moved from where training started."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_image_args


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
