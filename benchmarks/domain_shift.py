"""Does the measured domain shift order the bundled pairs as domain adaptation's gains do? Prints one JSON object.

    python benchmarks/domain_shift.py                                   # every pair (a few minutes on 2 CPU cores)
    python benchmarks/domain_shift.py --readme benchmarks/results/domain_shift.json   # README table from the JSON

Each pair is `hftransfer shift` with the checkpoint and input size of benchmarks/domain_adaptation.py (frozen,
pretrained: nothing is trained here), 1,000 examples of each domain, seed 0. The gain beside it is the best method's
mean target-accuracy gain over source-only in the committed benchmarks/results/domain_adaptation.json. The controls
are in-domain splits (train vs test of one dataset): no shift, so nothing for adaptation to gain (not run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_tables import replace_between  # noqa: E402  (same folder)

REPO = Path(__file__).resolve().parents[1]
# name -> (model, image size or None, source, source split, target, target split)
PAIRS = {
    "digits-mnist5k": ("efficientnet_lite0", 64, "digits", "train", "mnist5k", "train"),
    "mnist5k-digits": ("efficientnet_lite0", 64, "mnist5k", "train", "digits", "train"),
    "tweets-rotten_tomatoes": ("minilm", None, "tweets_binary", "train", "rotten_tomatoes", "train"),
    "control: mnist5k train-test": ("efficientnet_lite0", 64, "mnist5k", "train", "mnist5k", "test"),
    "control: tweets train-test": ("minilm", None, "tweets_binary", "train", "tweets_binary", "test"),
}
README_BEGIN = "<!-- shift table: python benchmarks/domain_shift.py --readme benchmarks/results/domain_shift.json -->"
README_END = "<!-- end of shift table -->"


def best_gains() -> dict[str, dict]:
    """Per DA pair: the method with the largest mean gain over source-only, from the committed DA benchmark."""
    report = json.loads((REPO / "benchmarks" / "results" / "domain_adaptation.json").read_text())
    gains = {}
    for pair, methods in report["domain_adaptation"].items():
        scored = {m: r["gain_vs_source_only"] for m, r in methods.items()
                  if isinstance(r, dict) and m != "source_only" and "gain_vs_source_only" in r}
        method = max(scored, key=scored.get)
        gains[pair] = {"method": method, "gain": scored[method]}
    return gains


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall's tau-b (ties in either list count as neither concordant nor discordant)."""
    from scipy.stats import kendalltau

    return round(float(kendalltau(xs, ys).statistic), 3)


def markdown(report: dict) -> str:
    lines = ["| pair | proxy A-distance | MMD² | source halves (PAD / MMD²) | shift | best DA gain (method) |",
             "|---|---|---|---|---|---|"]
    for name, row in report["pairs"].items():
        gain = row.get("best_gain")
        gain_text = f"{gain['gain']:+.3f} ({gain['method']})" if gain else "0 by construction (not run)"
        halves = row["source_halves"]
        lines.append(f"| {name} | {row['proxy_a_distance']:.3f} | {row['mmd2']:.4f} | {halves['proxy_a_distance']:.3f} / "
                     f"{halves['mmd2']:.4f} | {row['shift']} | {gain_text} |")
    lines.append("")
    lines.append(f"Kendall tau between the shift and the best gain over the {len(report['pairs'])} rows: MMD² "
                 f"{report['kendall_tau']['mmd2']}, proxy A-distance {report['kendall_tau']['proxy_a_distance']}.")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--max-samples", type=int, default=1000, dest="max_samples")
    parser.add_argument("--readme", metavar="JSON", help="Run nothing: rewrite README.md's shift table from this report.")
    args = parser.parse_args()
    if args.readme:
        replace_between(REPO / "README.md", README_BEGIN, README_END, markdown(json.loads(Path(args.readme).read_text())))
        return
    from hftransfer.shift import domain_shift

    gains = best_gains()
    report = {"command": "python benchmarks/domain_shift.py", "max_samples": args.max_samples, "seed": 0, "pairs": {}}
    for name in args.pairs:
        model, image_size, source, source_split, target, target_split = PAIRS[name]
        row = domain_shift(model, source, target, source_split=source_split, target_split=target_split,
                           max_samples=args.max_samples, image_size=image_size)
        if name in gains:
            row["best_gain"] = gains[name]
        report["pairs"][name] = row
        print(name, row["proxy_a_distance"], row["mmd2"], file=sys.stderr, flush=True)
    rows = list(report["pairs"].values())
    gain_of = [r["best_gain"]["gain"] if "best_gain" in r else 0.0 for r in rows]
    report["kendall_tau"] = {key: kendall_tau([r[key] for r in rows], gain_of) for key in ("mmd2", "proxy_a_distance")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
