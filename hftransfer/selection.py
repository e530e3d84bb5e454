"""Rank candidate checkpoints for a target dataset by transferability scores, before fine-tuning any of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .errors import ConfigError

__all__ = ["format_ranking_table", "rank_checkpoints"]


def rank_checkpoints(
    models: Sequence[str],
    dataset: str,
    *,
    split: str = "train",
    max_samples: int | None = None,
    batch_size: int = 64,
    image_size: int | None = None,
    seed: int = 0,
    output: str | Path | None = None,
) -> dict:
    """Extract features (and source-head probabilities) of each model on the same examples and score them all.

    Every registered score that a model's outputs allow is computed (LEEP/NCE need a source head). Ranks are per
    score, 1 = best, among the models that have that score; ``mean_rank`` averages a model's ranks.
    """
    from .data.loading import load_classification_data
    from .features import extract, load_with_source_head
    from .ranking import SCORES, score_all

    if len(models) < 1:
        raise ConfigError("pass at least one model to --models")
    if len(set(models)) != len(models):
        raise ConfigError("--models lists a checkpoint twice; pass each candidate once")
    data_by_modality = {}
    rows = []
    for name in models:
        loaded, has_head = load_with_source_head(name, image_size=image_size)
        if loaded.modality not in data_by_modality:
            data_by_modality[loaded.modality] = load_classification_data(dataset, loaded.modality)
        data = data_by_modality[loaded.modality]
        features, source_probs, labels = extract(
            loaded, data, split=split, max_samples=max_samples, batch_size=batch_size, seed=seed,
        )
        if not has_head:
            source_probs = None
        rows.append({
            "model": name,
            "modality": loaded.modality,
            "num_samples": int(labels.shape[0]),
            "num_features": int(features.shape[1]),
            "num_source_classes": int(source_probs.shape[1]) if source_probs is not None else None,
            "scores": score_all(features, source_probs, labels=labels),
        })
        del loaded

    score_names = [n for n in SCORES.names() if any(n in r["scores"] for r in rows)]
    for name in score_names:
        higher = SCORES.get(name).higher_is_better
        have = sorted((r for r in rows if name in r["scores"]), key=lambda r: r["scores"][name], reverse=higher)
        for position, row in enumerate(have, start=1):
            previous = have[position - 2] if position > 1 else None
            tied = previous is not None and _close(previous["scores"][name], row["scores"][name])
            row.setdefault("ranks", {})[name] = previous["ranks"][name] if tied else position  # ties share a rank
    for row in rows:
        ranks = row.setdefault("ranks", {})
        row["mean_rank"] = sum(ranks.values()) / len(ranks) if ranks else None
    notes = []
    if "hscore" in score_names and any(r["num_samples"] <= r["num_features"] for r in rows):
        notes.append("H-score sits near its maximum (classes - 1) when there are no more examples than feature "
                     "dimensions; pass a larger --max-samples to separate the models")
    result = {
        "dataset": dataset,
        "split": split,
        "max_samples": max_samples,
        "seed": seed,
        "scores": score_names,
        "models": rows,
        "best": {n: next(r["model"] for r in rows if r["ranks"].get(n) == 1) for n in score_names},
        "notes": notes,
    }
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def format_ranking_table(result: dict) -> str:
    """One row per model, one column per score as `value (rank)`, '-' where a score does not apply."""
    names = result["scores"]
    model_width = max(5, *(len(r["model"]) for r in result["models"]))
    cells = [["model", *names, "mean rank"]]
    for row in result["models"]:
        cells.append([
            row["model"],
            *(f"{row['scores'][n]:.4f} ({row['ranks'][n]})" if n in row["scores"] else "-" for n in names),
            f"{row['mean_rank']:.2f}" if row["mean_rank"] is not None else "-",
        ])
    widths = [model_width] + [max(len(c[i]) for c in cells) for i in range(1, len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    n = result["models"][0]["num_samples"] if result["models"] else 0
    lines.append(f"{result['dataset']} {result['split']} split, {n} examples; higher is better, (rank) 1 = best")
    lines.extend(f"note: {note}" for note in result.get("notes", []))
    return "\n".join(lines)
