"""The card's suggested freezing depth, used: `full --freeze_groups K` against `full` and `linear_probe`; prints JSON.

    python benchmarks/freeze_depth.py                 # MNIST-5k, 10 labels per class, seeds 0-2 (about 5 min on 2 cores)
    python benchmarks/freeze_depth.py --readme benchmarks/results/freeze_depth.json   # README table from the JSON

Per seed: the default image recipe with `--strategy full` (its card suggests K from how far each layer group moved),
then the same run with `--freeze_groups K`, and `--strategy linear_probe`; every run otherwise the recipe's defaults
on the few-label setting of benchmarks/few_label.py. Finished runs are cached under --work.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_tables import replace_between  # noqa: E402  (same folder)
from strategies import load_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_ARGS = ["--dataset", "mnist5k", "--samples_per_class", "10"]
ARMS = ["full", "full + suggested freeze", "linear_probe"]
README_BEGIN = "<!-- freeze table: python benchmarks/freeze_depth.py --readme benchmarks/results/freeze_depth.json -->"
README_END = "<!-- end of freeze table -->"


def run(argv: list[str], out: Path, cache: Path) -> dict:
    if cache.is_file():
        return json.loads(cache.read_text())
    from hftransfer.drift import suggested_freeze_groups

    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        trainer = load_main("image_cls")([*DATA_ARGS, *argv, "--output_dir", str(out), "--overwrite_output_dir",
                                          "true", "--disable_tqdm", "true", "--report_to", "none",
                                          "--save_total_limit", "1"])
    drift = json.loads((out / "layer_drift.json").read_text())
    result = {"wall_seconds": round(time.perf_counter() - start, 1),
              "test_accuracy": json.loads((out / "test_results.json").read_text())["test_accuracy"],
              "groups": len(drift), "suggested_freeze_groups": suggested_freeze_groups(drift),
              "frozen_parameters": sum(r["parameters"] for r in drift[:trainer.strategy.freeze_groups]),
              "parameters": sum(r["parameters"] for r in drift)}
    del trainer
    gc.collect()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def markdown(report: dict) -> str:
    lines = ["| strategy | test accuracy (mean ± std) | per seed | wall s (mean) |", "|---|---|---|---|"]
    for arm, row in report["arms"].items():
        seeds = ", ".join(f"{r['test_accuracy']:.3f}" for r in row["runs"])
        wall = statistics.mean(r["wall_seconds"] for r in row["runs"])
        lines.append(f"| {arm} | {row['mean']:.3f} ± {row['std']:.3f} | {seeds} | {wall:.0f} |")
    depths = [r["suggested_freeze_groups"] for r in report["arms"]["full"]["runs"]]
    frozen = report["arms"]["full + suggested freeze"]["runs"]
    shares = ", ".join(f"{r['frozen_parameters'] / r['parameters']:.1%}" for r in frozen)
    lines.append("")
    lines.append(f"Suggested depth per seed (from `full`'s card): {depths} of {frozen[0]['groups'] - 1} backbone "
                 f"groups, freezing {shares} of the parameters.")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work", default=str(REPO / "outputs" / "bench_freeze_depth"))
    parser.add_argument("--readme", metavar="JSON", help="Run nothing: rewrite README.md's table from this report.")
    args = parser.parse_args()
    if args.readme:
        replace_between(REPO / "README.md", README_BEGIN, README_END, markdown(json.loads(Path(args.readme).read_text())))
        return
    work = Path(args.work)
    runs = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        full = run(["--strategy", "full", "--seed", str(seed)], work / "run" / "full" / str(seed),
                   work / "cache" / f"full-{seed}.json")
        depth = full["suggested_freeze_groups"]
        frozen = run(["--strategy", "full", "--freeze_groups", str(depth), "--seed", str(seed)],
                     work / "run" / f"freeze{depth}" / str(seed), work / "cache" / f"freeze{depth}-{seed}.json")
        probe = run(["--strategy", "linear_probe", "--seed", str(seed)], work / "run" / "linear_probe" / str(seed),
                    work / "cache" / f"linear_probe-{seed}.json")
        for arm, result in zip(ARMS, (full, frozen, probe)):
            runs[arm].append(result)
    report = {"command": "python benchmarks/freeze_depth.py", "data_args": DATA_ARGS, "seeds": args.seeds,
              "arms": {arm: {"mean": round(statistics.mean(r["test_accuracy"] for r in rs), 4),
                             "std": round(statistics.stdev(r["test_accuracy"] for r in rs), 4) if len(rs) > 1 else 0.0,
                             "runs": rs} for arm, rs in runs.items()}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
