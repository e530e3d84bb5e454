"""Classification metrics as an `evaluate` module defined in this package, so it works offline."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np


class ClassificationMetrics(evaluate.Metric):
    """accuracy, macro-F1, macro precision and macro recall in one pass (scikit-learn underneath)."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy and macro-averaged F1/precision/recall for single-label classification.",
            citation="",
            inputs_description="predictions and references: class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        from sklearn.metrics import accuracy_score, precision_recall_fscore_support

        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predictions, average="macro", zero_division=0
        )
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "f1": float(f1),
            "precision": float(precision),
            "recall": float(recall),
        }


def predicted_classes(logits, labels):
    """`preprocess_logits_for_metrics`: keep class ids on the device instead of gathering full logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def compute_classification_metrics(eval_prediction) -> dict[str, float]:
    predictions = np.asarray(eval_prediction.predictions).reshape(-1)
    references = np.asarray(eval_prediction.label_ids).reshape(-1)
    return ClassificationMetrics().compute(predictions=predictions, references=references)
