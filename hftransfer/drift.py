"""How far fine-tuning moved each layer group from where it started: ||W - W0|| / ||W0|| over the group's weights.

The trainer snapshots the weights before training (one CPU copy) and records the drift of the model it saves, so
the card shows which depths the task needed to change and which stayed near their pretrained values (a hint for how
much a next run could freeze). The new head starts from random (or fitted) weights: its drift is not relative to
anything pretrained and is marked so.
"""

from __future__ import annotations

import torch
from torch import nn

LAYER_DRIFT = "layer_drift.json"


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of every parameter, by name."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}


@torch.no_grad()
def layer_drift(model: nn.Module, start: dict[str, torch.Tensor], groups) -> list[dict]:
    """One row per layer group (input to head): its parameter count and relative L2 change from `start`."""
    current = dict(model.named_parameters())
    rows = []
    for group in groups:
        names = [n for n in group.parameters if n in start and n in current]
        if not names:
            continue
        moved = sum(float((current[n].detach().float().cpu() - start[n].float()).pow(2).sum()) for n in names)
        size = sum(float(start[n].float().pow(2).sum()) for n in names)
        rows.append({
            "group": group.name,
            "parameters": sum(start[n].numel() for n in names),
            "relative_change": round((moved ** 0.5) / max(size ** 0.5, 1e-12), 6),
        })
    return rows


def suggested_freeze_groups(rows: list[dict]) -> int:
    """How many leading groups a next run could freeze (`--freeze_groups`): the longest run of groups from the input
    that each moved less than half as far as the median group of the backbone (the head, the last row, excluded)."""
    backbone = [row["relative_change"] for row in rows[:-1]]
    if len(backbone) < 2:
        return 0
    bar = 0.5 * sorted(backbone)[len(backbone) // 2]
    count = 0
    for change in backbone:
        if change >= bar:
            break
        count += 1
    return count

