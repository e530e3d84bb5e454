"""Ranking or threshold: what a binary domain-adaptation run changed on the target, read from saved models.

For each saved text classifier (a recipes/domain_adapt.py output folder), loaded with transformers.pipeline() as a
user would, on the target's test split as the recipe drew it (same seed and --max_eval_samples): accuracy, ROC AUC of
the second class, the share predicted as that class against its true share, and the accuracy at the best threshold
chosen with the test labels (what a perfectly placed threshold would give). Prints one JSON object.

    python benchmarks/da_target_ranking.py --target rotten_tomatoes --seed 0 \\
        --models source_only=benchmarks/runs/da_text200/run/tweets-rotten_tomatoes/source_only/seed0 ...
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def score(folder: str, texts: list[str], labels: np.ndarray, positive: str, max_length: int) -> dict:
    from sklearn.metrics import roc_auc_score
    from transformers import pipeline

    classify = pipeline("text-classification", model=folder, device=-1, top_k=None, truncation=True,
                        max_length=max_length)
    p = np.array([next(s["score"] for s in row if s["label"] == positive) for row in classify(texts, batch_size=64)])
    at = lambda threshold: float(((p > threshold).astype(int) == labels).mean())  # noqa: E731
    return {"accuracy": round(at(0.5), 4), "roc_auc": round(float(roc_auc_score(labels, p)), 4),
            "predicted_positive": round(float((p > 0.5).mean()), 4), "true_positive": round(float(labels.mean()), 4),
            "best_threshold_accuracy": round(max(at(t) for t in np.unique(p)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="The run's --target.")
    parser.add_argument("--seed", type=int, required=True, help="The run's --seed (it draws the target splits).")
    parser.add_argument("--max_train_samples", type=int, default=1000)
    parser.add_argument("--max_eval_samples", type=int, default=500)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--models", nargs="+", required=True, help="name=folder pairs.")
    args = parser.parse_args()

    from hftransfer.data.loading import load_classification_data

    data = load_classification_data(args.target, "text", seed=args.seed, max_train_samples=args.max_train_samples,
                                    max_eval_samples=args.max_eval_samples, require_labels=False)
    if len(data.label_names) != 2:
        raise SystemExit(f"error: {args.target!r} has {len(data.label_names)} classes; this reads binary targets")
    test = data.splits["test"]
    texts, labels = list(test[data.input_column]), np.array(test["label"])
    report = {"target": args.target, "seed": args.seed, "test_rows": len(texts), "positive": data.label_names[1],
              "models": {}}
    for name, folder in (pair.split("=", 1) for pair in args.models):
        report["models"][name] = score(folder, texts, labels, data.label_names[1], args.max_length)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
