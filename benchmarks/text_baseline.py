"""Default text recipe vs a TF-IDF + logistic-regression baseline on the same tweets split; prints JSON.

    python benchmarks/text_baseline.py                      # runs the default text recipe (minutes on 2 cores)
    python benchmarks/text_baseline.py --recipe-output outputs/text_cls   # reuse a finished run
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def recipe_defaults() -> dict:
    from hftransfer.recipes import load_recipe

    return load_recipe("text_cls").DEFAULTS


def tfidf_baseline(seed: int = 42) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from hftransfer.data import load_classification_data

    # the recipe's split and training rows: same dataset, seed, sizes and max_train_samples
    data = load_classification_data("tweets", "text", seed=seed, max_train_samples=recipe_defaults().get("max_train_samples"))
    train, test = data.splits["train"], data.splits["test"]
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform(train["text"])
    best = None
    for c in (0.5, 1.0, 2.0, 4.0):  # tuned on the validation split, like the recipe's model selection
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, train["label"])
        score = accuracy_score(data.splits["validation"]["label"], model.predict(vectorizer.transform(data.splits["validation"]["text"])))
        if best is None or score > best[0]:
            best = (score, c, model)
    predictions = best[2].predict(vectorizer.transform(test["text"]))
    return {
        "test_accuracy": float(accuracy_score(test["label"], predictions)),
        "test_f1": float(f1_score(test["label"], predictions, average="macro")),
        "C": best[1], "train_examples": len(train), "test_examples": len(test),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe-output", help="A finished text_cls output folder (default: run the recipe).")
    args = parser.parse_args()
    output = Path(args.recipe_output or REPO / "outputs" / "bench_text_cls")
    wall = None
    if not args.recipe_output:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(REPO / "recipes" / "text_cls.py"), "--output_dir", str(output),
                        "--overwrite_output_dir", "true", "--disable_tqdm", "true"], check=True, stdout=sys.stderr)
        wall = round(time.perf_counter() - start, 1)
    recipe = json.loads((output / "test_results.json").read_text())
    baseline = tfidf_baseline()
    print(json.dumps({
        "task": "tweets (3-class sentiment), held-out test split",
        "recipe": {"test_accuracy": recipe["test_accuracy"], "test_f1": recipe["test_f1"], "wall_seconds": wall},
        "tfidf_logreg": baseline,
        "recipe_minus_baseline_accuracy": round(recipe["test_accuracy"] - baseline["test_accuracy"], 4),
    }, indent=2))


if __name__ == "__main__":
    main()
