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
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from few_label import cached, logistic_regression_floor, run_label, strategy_run  # noqa: E402  (same folder)

REPO = Path(__file__).resolve().parents[1]


def floor(seed: int) -> dict:
    return logistic_regression_floor("tweets-2000", seed, head_input=True, pooling="checkpoint")


def full(seed: int, work: Path, recipe_args: list[str], label: str) -> dict:
    return strategy_run("tweets-2000", "full", seed, work, ["--pooling", "checkpoint", *recipe_args], label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--recipe-args", default="", help="more text_cls.py flags for the `full` runs (reported apart)")
    parser.add_argument("--work", default=str(REPO / "outputs" / "bench_pooling"))
    opts = parser.parse_args()
    work = Path(opts.work)
    recipe_args = shlex.split(opts.recipe_args)
    label = run_label("full", recipe_args)
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
