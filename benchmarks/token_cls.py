"""Named-entity recognition: fine-tuning against the frozen-feature baseline; prints one JSON object.

    python benchmarks/token_cls.py                         # the recipe's defaults (MiniLM, WNUT-16), seeds 0-2
    python benchmarks/token_cls.py --strategies full --seeds 0
    python benchmarks/token_cls.py --readme benchmarks/results/token_cls.json   # README table from the JSON

Every run is recipes/token_cls.py with its defaults, changed only by --strategy and --seed (the seed also carves the
validation and test sentences out of WNUT-16's training tweets). `linear_probe` is the frozen-feature baseline: the
encoder frozen, the token head fitted by logistic regression on its features, then trained. Finished runs are cached
under --work.
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
STRATEGIES = ["linear_probe", "full"]
METRICS = ["test_f1", "test_precision", "test_recall"]
README_BEGIN = "<!-- token tables: python benchmarks/token_cls.py --readme benchmarks/results/token_cls.json -->"
README_END = "<!-- end of token tables -->"


def run(strategy: str, seed: int, work: Path) -> dict:
    cache = work / "cache" / strategy / f"seed{seed}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    out = work / "run" / strategy / f"seed{seed}"
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        trainer = load_main("token_cls")(["--strategy", strategy, "--seed", str(seed), "--output_dir", str(out),
                                          "--overwrite_output_dir", "true", "--disable_tqdm", "true",
                                          "--report_to", "none", "--save_total_limit", "1"])
    test = json.loads((out / "test_results.json").read_text())
    result = {"wall_seconds": round(time.perf_counter() - start, 1), "optimizer_steps": trainer.state.global_step,
              **{m: round(test[m], 4) for m in METRICS}}
    del trainer
    gc.collect()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def markdown(report: dict) -> str:
    lines = [f"**WNUT-16, MiniLM** (test entity F1, micro; mean ± std over seeds {report['seeds']})", "",
             "| strategy | entity F1 | precision | recall | wall s (mean) |", "|---|---|---|---|---|"]
    for strategy, runs in report["strategies"].items():
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        wall = statistics.mean(r["wall_seconds"] for r in runs)
        lines.append(f"| {strategy} | {' | '.join(cells)} | {wall:.0f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work", default=str(REPO / "outputs" / "bench_token_cls"))
    parser.add_argument("--readme", metavar="JSON", help="Run nothing: rewrite README.md's token table from this report.")
    args = parser.parse_args()
    if args.readme:
        replace_between(REPO / "README.md", README_BEGIN, README_END, markdown(json.loads(Path(args.readme).read_text())))
        return
    report = {"command": "python benchmarks/token_cls.py", "seeds": args.seeds,
              "strategies": {s: [run(s, seed, Path(args.work)) for seed in args.seeds] for s in args.strategies}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
