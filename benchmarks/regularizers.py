"""Regularizers toward the pretrained weights (L2-SP, BSS) with their strength chosen on validation; prints one JSON.

    python benchmarks/regularizers.py                                # MNIST-5k, 10 labels per class, seeds 0-2
    python benchmarks/regularizers.py --seeds 0 --work benchmarks/runs/regularizers

Where the papers find the gain: few labels and a target far from the pretraining data (ImageNet -> handwritten
digits, 100 labelled images). Each run is the real image recipe with its defaults and `--strategy full`, changed only
by `--regularizer` and its strength. For each regularizer and seed, the strength whose selected checkpoint has the
best source validation accuracy (no test label is used to choose) is scored on the test split, against plain
fine-tuning of the same seed. Finished runs are cached under --work (benchmarks/runs/<name> to commit them).
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
from few_label import cached  # noqa: E402  (same folder)
from readme_tables import replace_between  # noqa: E402
from strategies import load_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETTING = ["--samples_per_class", "10", "--strategy", "full"]
# strengths around each paper's default: L2-SP's alpha (beta, the new head's plain L2, stays 0.01), BSS's eta
GRID = {
    "l2sp": [["--regularizer", "l2sp", "--regularizer_options", f"alpha={a}"] for a in ("0.001", "0.01", "0.1")],
    "bss": [["--regularizer", "bss", "--regularizer_weight", w] for w in ("0.0001", "0.001", "0.01")],
}


def run_name(extra: list[str]) -> str:
    return "-".join(a.lstrip("-").replace("=", "") for a in extra) or "plain"


def run(extra: list[str], seed: int, work: Path) -> dict:
    out = work / "run" / run_name(extra) / str(seed)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        trainer = load_main("image_cls")([*SETTING, *extra, "--seed", str(seed), "--output_dir", str(out),
                                          "--overwrite_output_dir", "true", "--disable_tqdm", "true",
                                          "--report_to", "none", "--save_total_limit", "1"])
    result = {"arguments": extra, "validation_accuracy": round(trainer.state.best_metric, 4),
              "test_accuracy": json.loads((out / "test_results.json").read_text())["test_accuracy"],
              "wall_seconds": round(time.perf_counter() - start, 1)}
    del trainer
    gc.collect()
    return result


def markdown(report: dict) -> str:
    plain = report["plain"]
    per_seed = " / ".join(f"{r['test_accuracy']:.3f}" for r in plain["runs"])
    lines = [f"Plain fine-tuning (`--strategy full`): {plain['test_accuracy']:.3f} test accuracy ({per_seed}).", "",
             "| regularizer | strength | test accuracy (mean) | validation accuracy (mean) |", "|---|---|---|---|"]
    for name, row in report["regularizers"].items():
        for cell in row["each_strength"]:
            lines.append(f"| {name} | `{' '.join(cell['arguments'][2:])}` | {cell['test_accuracy']:.3f} | "
                         f"{cell['validation_accuracy']:.3f} |")
        chosen = row["chosen_on_validation"]
        lines.append(f"| {name} | chosen on validation per seed | {chosen['test_accuracy']:.3f} "
                     f"({chosen['gain_vs_plain']:+.3f} vs plain, above it on {chosen['seeds_above_plain']} of "
                     f"{len(chosen['runs'])} seeds) | |")
    return "\n".join(lines)


README_BEGIN = "<!-- regularizer table: python benchmarks/regularizers.py --readme benchmarks/results/regularizers.json -->"
README_END = "<!-- end of regularizer table -->"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--regularizers", nargs="+", default=list(GRID), choices=list(GRID))
    parser.add_argument("--work", default=str(REPO / "outputs" / "bench_regularizers"))
    parser.add_argument("--readme", metavar="JSON", help="Run nothing: rewrite README.md's table from this report.")
    args = parser.parse_args()
    if args.readme:
        replace_between(REPO / "README.md", README_BEGIN, README_END, markdown(json.loads(Path(args.readme).read_text())))
        return
    work = Path(args.work)

    def cell(extra: list[str], seed: int) -> dict:
        return cached(work / "cache" / f"{run_name(extra)}-{seed}.json", lambda: run(extra, seed, work))

    plain = [cell([], seed) for seed in args.seeds]
    report = {"setting": SETTING, "seeds": args.seeds, "plain": {
        "test_accuracy": round(statistics.mean(r["test_accuracy"] for r in plain), 4), "runs": plain}, "regularizers": {}}
    for regularizer in args.regularizers:
        grid = GRID[regularizer]
        per_seed = [[cell(extra, seed) for extra in grid] for seed in args.seeds]
        chosen = [max(runs, key=lambda r: r["validation_accuracy"]) for runs in per_seed]
        report["regularizers"][regularizer] = {
            "chosen_on_validation": {
                "test_accuracy": round(statistics.mean(r["test_accuracy"] for r in chosen), 4),
                "gain_vs_plain": round(statistics.mean(c["test_accuracy"] - p["test_accuracy"]
                                                       for c, p in zip(chosen, plain)), 4),
                "seeds_above_plain": sum(c["test_accuracy"] > p["test_accuracy"] for c, p in zip(chosen, plain)),
                "runs": chosen,
            },
            "each_strength": [
                {"arguments": grid[i], "test_accuracy": round(statistics.mean(runs[i]["test_accuracy"] for runs in per_seed), 4),
                 "validation_accuracy": round(statistics.mean(runs[i]["validation_accuracy"] for runs in per_seed), 4)}
                for i in range(len(grid))
            ],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
