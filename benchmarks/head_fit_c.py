"""How strongly the fitted head should be regularised: test accuracy of the logistic-regression head fit (what
`--head_init fit` starts from) on the frozen head input, with C chosen by each rule; prints one JSON object.

    python benchmarks/head_fit_c.py                                   # the few-label settings, seeds 0-2
    python benchmarks/head_fit_c.py --settings tweets-10 --seeds 0
    python benchmarks/head_fit_c.py --readme benchmarks/results/head_fit_c.json

Rules: C = 1 (scikit-learn's default, the recipes' `--head_fit_c`); the C of a grid with the best accuracy or the
lowest log-loss on the validation split; 5-fold cross-validation on the labelled examples (log-loss); the best C on
test (an oracle, for scale). Features (the recipes' default pooling, what the head reads) are cached per setting and
seed under --work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from few_label import SETTINGS, frozen_features  # noqa: E402  (same folder)
from readme_tables import replace_between  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOG10_C = [x / 2 for x in range(-8, 5)]  # 1e-4 ... 1e2
RULES = {
    "c1": "C = 1 (the default)",
    "validation_accuracy": "best accuracy on the validation split",
    "validation_log_loss": "lowest log-loss on the validation split",
    "cross_validation_log_loss": "5-fold cross-validation on the labelled examples, log-loss",
    "oracle": "the best C on test (oracle)",
}


def cached_features(setting: str, seed: int, work: Path) -> dict:
    path = work / "features" / setting / f"seed{seed}.npz"
    if not path.is_file():
        found = frozen_features(setting, seed, ("train", "validation", "test"), head_input=True, pooling="auto")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"{split}_{part}": arr for split, pair in found.items() for part, arr in zip("xy", pair)})
    saved = np.load(path)
    return {split: (saved[f"{split}_x"], saved[f"{split}_y"]) for split in ("train", "validation", "test")}


def logistic_regression(log10_c: float = 0.0):
    """scikit-learn's LogisticRegression as the floor runs it (max_iter 5000, default tolerance), at C = 10^log10_c."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0 ** log10_c, max_iter=5000)


def cross_validated_log_loss(x, y, log10_c: float) -> float:
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(n_splits=min(5, int(np.bincount(y).min())), shuffle=True, random_state=0)
    return -cross_val_score(logistic_regression(log10_c), x, y, cv=folds, scoring="neg_log_loss").mean()


def objective(x, y, coef, intercept, c: float = 1.0) -> float:
    """scikit-learn's LogisticRegression objective at (coef, intercept): summed log-loss + ||coef||^2 / 2C (two
    classes: one weight vector, the binary model)."""
    logits = x.astype(np.float64) @ np.asarray(coef, dtype=np.float64).T + intercept
    if logits.shape[1] == 1:
        loss = np.logaddexp(0, -np.where(y == 1, 1, -1) * logits[:, 0]).sum()
    else:
        shifted = logits - logits.max(1, keepdims=True)
        loss = -(shifted[np.arange(len(y)), y] - np.log(np.exp(shifted).sum(1))).sum()
    return float(loss + np.square(coef).sum() / (2 * c))


def fit_against_scikit_learn(x, y, x_test, y_test) -> dict:
    """The recipes' head fit (hftransfer.head_fit, C=1) against scikit-learn's LogisticRegression as the floor runs it
    (C=1, max_iter 5000, default tolerance): the objective each reaches and its test accuracy."""
    import torch

    from hftransfer.head_fit import fit_softmax_regression

    classes = int(y.max()) + 1
    weight, bias = (t.numpy() for t in fit_softmax_regression(torch.from_numpy(x), torch.from_numpy(y), classes))
    reference = logistic_regression().fit(x, y)
    ours = (weight[1:] - weight[:1], bias[1:] - bias[:1]) if classes == 2 else (weight, bias)
    return {"objective": round(objective(x, y, *ours), 4),
            "scikit_learn_objective": round(objective(x, y, reference.coef_, reference.intercept_), 4),
            "test_accuracy": round(float(((x_test @ weight.T + bias).argmax(1) == y_test).mean()), 4),
            "scikit_learn_test_accuracy": round(float(reference.score(x_test, y_test)), 4)}


def one_seed(features: dict) -> dict:
    from sklearn.metrics import log_loss

    (x, y), (x_val, y_val), (x_test, y_test) = features["train"], features["validation"], features["test"]
    grid = []
    for log10_c in LOG10_C:
        model = logistic_regression(log10_c).fit(x, y)
        grid.append({"log10_c": log10_c, "validation_accuracy": float(model.score(x_val, y_val)),
                     "validation_log_loss": float(log_loss(y_val, model.predict_proba(x_val), labels=model.classes_)),
                     "cross_validation_log_loss": float(cross_validated_log_loss(x, y, log10_c)),
                     "test_accuracy": float(model.score(x_test, y_test))})
    chosen = {
        "c1": next(g for g in grid if g["log10_c"] == 0),
        # ties: the smaller C (the stronger prior), as the grid is ordered
        "validation_accuracy": max(grid, key=lambda g: g["validation_accuracy"]),
        "validation_log_loss": min(grid, key=lambda g: g["validation_log_loss"]),
        "cross_validation_log_loss": min(grid, key=lambda g: g["cross_validation_log_loss"]),
        "oracle": max(grid, key=lambda g: g["test_accuracy"]),
    }
    return {"rules": {rule: {"log10_c": g["log10_c"], "test_accuracy": round(g["test_accuracy"], 4)}
                      for rule, g in chosen.items()},
            "head_fit": fit_against_scikit_learn(x, y, x_test, y_test),
            "grid": [{k: round(v, 4) for k, v in g.items()} for g in grid]}


def markdown(report: dict) -> str:
    settings = list(report["settings"])
    lines = ["| how C is chosen | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for rule, name in RULES.items():
        cells = []
        for setting in settings:
            runs = [seed["rules"][rule] for seed in report["settings"][setting]]
            mean = statistics.mean(r["test_accuracy"] for r in runs)
            per_seed = " / ".join(f"{r['log10_c']:g}" for r in runs)
            cells.append(f"{mean:.3f} ({per_seed})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Each cell: test accuracy of the fitted head alone, mean over seeds "
              + ", ".join(map(str, report["seeds"])) + " (log10 C per seed).", "",
              "| C = 1, per seed | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for row, key in (("objective: the recipes' fit", "objective"),
                     ("objective: scikit-learn (the floor)", "scikit_learn_objective"),
                     ("test accuracy: the recipes' fit", "test_accuracy"),
                     ("test accuracy: scikit-learn (the floor)", "scikit_learn_test_accuracy")):
        cells = [" / ".join(f"{seed['head_fit'][key]:.3f}" for seed in report["settings"][s]) for s in settings]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- head-fit C table: python benchmarks/head_fit_c.py --readme benchmarks/results/head_fit_c.json -->"
README_END = "<!-- end of head-fit C table -->"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["tweets-10", "mnist5k-10", "rotten_tomatoes-10", "digits-10"],
                        choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work", default=str(REPO / "outputs" / "bench_head_fit_c"))
    parser.add_argument("--readme", metavar="JSON", help="Run nothing: rewrite README.md's table from this report.")
    args = parser.parse_args()
    if args.readme:
        replace_between(REPO / "README.md", README_BEGIN, README_END, markdown(json.loads(Path(args.readme).read_text())))
        return
    report = {"seeds": args.seeds, "log10_c_grid": LOG10_C, "settings": {}}
    for setting in args.settings:
        report["settings"][setting] = [one_seed(cached_features(setting, seed, Path(args.work))) for seed in args.seeds]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
