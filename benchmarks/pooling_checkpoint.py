"""`--pooling checkpoint` against the default [CLS] pooler on few_label.py's tweets-2000 setting; prints one JSON object.

    python benchmarks/pooling_checkpoint.py                  # seeds 0-2: the frozen-feature floor and `full`
    python benchmarks/pooling_checkpoint.py --seeds 0 --skip-full
    python benchmarks/pooling_checkpoint.py --recipe-args "--learning_rate 1e-4 --head_lr_scale 10"   # domain_adapt's text rate

The [CLS]-pooler side is few_label.py's own tweets-2000 row (floor-head-input-S and full-S); this script scores the
same data with the pooling layer: logistic regression on the head's input (few_label.py's floor protocol), and the
text recipe with its defaults plus `--pooling checkpoint`. Finished runs are cached under --work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from few_label import SETTINGS, cached, option  # noqa: E402  (same folder)
from strategies import load_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def floor(seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression

    from hftransfer.data.loading import load_classification_data
    from hftransfer.features import extract
    from hftransfer.models import load_classifier

    _, model, dataset, _, data_args = SETTINGS["tweets-2000"]
    data = load_classification_data(dataset, "text", seed=seed, max_train_samples=option(data_args, "--max_train_samples"),
                                    max_eval_samples=option(data_args, "--max_eval_samples"))
    loaded = load_classifier(model, data.label_names, "text", pooling="checkpoint")
    start = time.perf_counter()
    x_train, _, y_train = extract(loaded, data, "train", head_input=True)
    x_test, _, y_test = extract(loaded, data, "test", head_input=True)
    accuracy = LogisticRegression(max_iter=5000).fit(x_train, y_train).score(x_test, y_test)
    return {"test_accuracy": round(float(accuracy), 4), "wall_seconds": round(time.perf_counter() - start, 1)}


def full(seed: int, work: Path, recipe_args: list[str], label: str) -> dict:
    recipe, _, _, _, data_args = SETTINGS["tweets-2000"]
    out = work / "run" / label / str(seed)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        load_main(recipe)([*data_args, "--strategy", "full", "--pooling", "checkpoint", "--seed", str(seed),
                           "--output_dir", str(out), "--overwrite_output_dir", "true", "--disable_tqdm", "true",
                           "--report_to", "none", "--save_total_limit", "1", *recipe_args])
    return {"test_accuracy": json.loads((out / "test_results.json").read_text())["test_accuracy"],
            "wall_seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--recipe-args", default="", help="more text_cls.py flags for the `full` runs (reported apart)")
    parser.add_argument("--work", default=str(REPO / "outputs" / "bench_pooling"))
    opts = parser.parse_args()
    work = Path(opts.work)
    recipe_args = shlex.split(opts.recipe_args)
    label = "full" + "".join(a.lstrip("-").replace("_", "") for a in recipe_args if a)
    key = "full_with_pooling_checkpoint" + (f" {opts.recipe_args}" if recipe_args else "")
    report = {"setting": "tweets-2000", "floor_with_pooling_checkpoint": {}, key: {}}
    for seed in opts.seeds:
        report["floor_with_pooling_checkpoint"][seed] = cached(work / "cache" / f"floor-{seed}.json", lambda: floor(seed))
        if not opts.skip_full:
            report[key][seed] = cached(work / "cache" / f"{label}-{seed}.json",
                                       lambda: full(seed, work, recipe_args, label))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
