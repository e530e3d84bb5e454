"""Few-label transfer: each strategy against logistic regression on the same frozen features; prints one JSON object.

    python benchmarks/few_label.py                                  # every setting and strategy, seeds 0-2
    python benchmarks/few_label.py --settings mnist5k-10 --strategies full linear_probe --seeds 0
    python benchmarks/few_label.py --markdown few_label.md          # also the table as Markdown
    python benchmarks/few_label.py --settings tweets-10 --strategies full --recipe-args "--head_lr_scale 10"

Settings: MNIST-5k and tweets with 10 labels per class and 2,000 tweets, on which the recipes' defaults were chosen;
digits and Rotten Tomatoes critic snippets with 10 labels per class, held out (no default was chosen on them).
Each strategy run is the real recipe (recipes/image_cls.py or recipes/text_cls.py) with its defaults, changed only by
the setting's data arguments (the labelled subset) and --strategy/--seed. The floor of each setting and seed is
scikit-learn's LogisticRegression (default C=1) on the frozen checkpoint's features of the same labelled examples
(hftransfer.features.extract: the head's input, or the pooling a sentence-transformers checkpoint was trained with),
scored on the same test split. Finished runs are cached under --work.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_tables import replace_between  # noqa: E402  (same folder)
from strategies import STRATEGIES as FULL_DATA_STRATEGIES, load_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = [*FULL_DATA_STRATEGIES, "setfit"]  # setfit is a few-label strategy: not in the full-data benchmark
# setting -> (recipe, model, dataset, image size or None, the data arguments that make it few-label)
SETTINGS = {
    "mnist5k-10": ("image_cls", "efficientnet_lite0", "mnist5k", 64, ["--samples_per_class", "10"]),
    "tweets-10": ("text_cls", "minilm", "tweets", None, ["--samples_per_class", "10", "--max_eval_samples", "1000"]),
    "tweets-2000": ("text_cls", "minilm", "tweets", None, ["--max_train_samples", "2000", "--max_eval_samples", "1000"]),
    # held out: no default was chosen on these; they check that the rules carry over
    "digits-10": ("image_cls", "efficientnet_lite0", "digits", 64, ["--samples_per_class", "10"]),
    "rotten_tomatoes-10": ("text_cls", "minilm", "rotten_tomatoes", None,
                           ["--samples_per_class", "10", "--max_eval_samples", "1000"]),
}


def option(argv: list[str], name: str) -> int | None:
    return int(argv[argv.index(name) + 1]) if name in argv else None


def cached(path: Path, compute) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def frozen_features(setting: str, seed: int, splits: tuple[str, ...] = ("train", "test"), head_input: bool = False,
                    pooling: str = "head") -> dict:
    """{split: (features, labels)} of the frozen checkpoint for the setting's data and this seed: the checkpoint's
    pooling, or with `head_input` what the classifier's head reads (they differ for a sentence-transformers
    checkpoint: the mean of token states vs the [CLS] pooler; with `pooling` 'auto', the recipes' default, or
    'checkpoint', the head reads the built-in mean pooling layer)."""
    from hftransfer.data.loading import load_classification_data
    from hftransfer.features import extract
    from hftransfer.models import load_classifier

    _, model, dataset, image_size, data_args = SETTINGS[setting]
    modality = "image" if image_size else "text"
    data = load_classification_data(dataset, modality, seed=seed, samples_per_class=option(data_args, "--samples_per_class"),
                                    max_train_samples=option(data_args, "--max_train_samples"),
                                    max_eval_samples=option(data_args, "--max_eval_samples"))
    if pooling != "head":
        model = load_classifier(model, data.label_names, modality, image_size=image_size, pooling=pooling)
    found = {}
    for split in splits:
        x, _, y = extract(model, data, split, image_size=image_size, head_input=head_input)
        found[split] = (x, y)
    return found


def logistic_regression_floor(setting: str, seed: int, head_input: bool = False, pooling: str = "head") -> dict:
    """Test accuracy of LogisticRegression on the frozen features (see frozen_features) of the setting's labelled
    examples for this seed."""
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    found = frozen_features(setting, seed, head_input=head_input, pooling=pooling)
    (x_train, y_train), (x_test, y_test) = found["train"], found["test"]
    classifier = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    return {"test_accuracy": round(float(classifier.score(x_test, y_test)), 4), "train_examples": len(y_train),
            "wall_seconds": round(time.perf_counter() - start, 1)}


def run_label(strategy: str, recipe_args: list[str]) -> str:
    """The cache and run-folder name of `strategy` with more recipe flags, e.g. fullheadlrscale10."""
    return strategy + "".join(a.lstrip("-").replace("_", "") for a in recipe_args)


def strategy_run(setting: str, strategy: str, seed: int, work: Path, recipe_args: list[str] = (),
                 label: str | None = None) -> dict:
    """The setting's recipe with --strategy and --seed (and `recipe_args`), run in work/run/setting/(label or strategy)."""
    recipe, model, dataset, _, data_args = SETTINGS[setting]
    out = work / "run" / setting / (label or strategy) / str(seed)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        trainer = load_main(recipe)(["--model", model, "--dataset", dataset, *data_args, "--strategy", strategy,
                                     "--seed", str(seed), "--output_dir", str(out), "--overwrite_output_dir", "true",
                                     "--disable_tqdm", "true", "--report_to", "none", "--save_total_limit", "1",
                                     *recipe_args])
    result = {"wall_seconds": round(time.perf_counter() - start, 1), "optimizer_steps": trainer.state.global_step,
              "train_examples": len(trainer.train_dataset),
              "test_accuracy": json.loads((out / "test_results.json").read_text())["test_accuracy"]}
    if trainer.strategy.head_fit:
        result["head_fit_train_accuracy"] = trainer.strategy.head_fit["train_accuracy"]
    del trainer
    gc.collect()
    return result


def summary(runs: list[dict]) -> dict:
    values = [r["test_accuracy"] for r in runs]
    return {"mean": round(statistics.mean(values), 4), "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "runs": runs}


def markdown(report: dict) -> str:
    lines = []
    for setting, row in report["settings"].items():
        floor, head_floor = row["logistic_regression"]["mean"], row["logistic_regression_head_input"]["mean"]
        lines += [f"**{setting}** ({row['train_examples']} labelled examples; floor: logistic regression on frozen "
                  f"features {floor:.3f}, on the head's input {head_floor:.3f})", "",
                  "| strategy | test accuracy (mean ± std, 3 seeds) | vs floor | worst seed vs its floor | "
                  "wall s (mean) |", "|---|---|---|---|---|"]
        if not row["strategies"]:
            lines[-2:] = ["No strategy run yet.", ""]
            continue
        seed_floors = [r["test_accuracy"] for r in row["logistic_regression"]["runs"]]
        for strategy, cell in row["strategies"].items():
            worst = min(r["test_accuracy"] - f for r, f in zip(cell["runs"], seed_floors))
            wall = statistics.mean(r["wall_seconds"] for r in cell["runs"])
            lines.append(f"| {strategy} | {cell['mean']:.3f} ± {cell['std']:.3f} | {cell['mean'] - floor:+.3f} | "
                         f"{worst:+.3f} | {wall:.0f} |")
        lines.append("")
    return "\n".join(lines)


README_BEGIN = "<!-- few-label tables: python benchmarks/few_label.py --readme benchmarks/results/few_label.json -->"
README_END = "<!-- end of few-label tables -->"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--strategies", nargs="*", default=STRATEGIES, choices=STRATEGIES,
                        help="Strategies to run (none: only the logistic-regression floors).")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--recipe-args", default="", help="More recipe flags for every strategy run; the rows and "
                        "caches are then named after them, e.g. 'full --head_lr_scale 10'.")
    parser.add_argument("--work", default=str(REPO / "outputs" / "bench_few_label"))
    parser.add_argument("--markdown", help="Also write the tables as Markdown to this file.")
    parser.add_argument("--readme", metavar="JSON", help="Run nothing: rewrite README.md's few-label tables from this "
                        "report (e.g. the committed benchmarks/results/few_label.json).")
    args = parser.parse_args()
    if args.readme:
        replace_between(REPO / "README.md", README_BEGIN, README_END, markdown(json.loads(Path(args.readme).read_text())))
        return
    work = Path(args.work)

    report: dict = {"seeds": args.seeds, "settings": {}}
    for setting in args.settings:
        floors = [cached(work / "cache" / setting / f"floor-{seed}.json", lambda: logistic_regression_floor(setting, seed))
                  for seed in args.seeds]
        head_floors = [cached(work / "cache" / setting / f"floor-head-input-{seed}.json",
                              lambda: logistic_regression_floor(setting, seed, head_input=True, pooling="auto"))
                       for seed in args.seeds]
        row = {"data_args": SETTINGS[setting][4], "train_examples": floors[0]["train_examples"],
               "logistic_regression": summary(floors), "logistic_regression_head_input": summary(head_floors),
               "strategies": {}}
        recipe_args = shlex.split(args.recipe_args)
        for strategy in args.strategies:
            if strategy == "setfit" and SETTINGS[setting][3]:
                continue  # refused on images (hftransfer.validation.SETFIT_ON_IMAGES_ERROR; digits-10/setfit-0.json)
            label = run_label(strategy, recipe_args)
            runs = [cached(work / "cache" / setting / f"{label}-{seed}.json",
                           lambda: strategy_run(setting, strategy, seed, work, recipe_args, label))
                    for seed in args.seeds]
            row["strategies"][" ".join([strategy, *recipe_args])] = summary(runs)
        report["settings"][setting] = row
    if args.markdown:
        Path(args.markdown).write_text(markdown(report))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
