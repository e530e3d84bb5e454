"""Transfer vs scratch: run a recipe from the pretrained start and from random init with the same budget and seeds.

Negative transfer is flagged when the pretrained start loses beyond the seed-to-seed noise. With per-seed paired
gains d_s = acc_pretrained(s) - acc_scratch(s) (same seed, same data split, same budget), n >= 2 seeds, mean d and
standard error SE = std(d, ddof=1) / sqrt(n):

    negative transfer  <=>  mean d < 0  and  (|mean d| > 2 SE  or  d_s < 0 for every seed)

and "positive" is the mirror image; anything else is "inconclusive". With 2-3 seeds "every seed worse" is a loose
screen (1 in 4 / 1 in 8 by chance when there is no effect): use 5+ seeds before acting on it.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Callable, Sequence

from .errors import ConfigError

__all__ = ["NegativeTransferWarning", "compare_label_counts", "compare_transfer", "crossing_point", "load_recipe_main",
           "transfer_verdict"]

ARMS = ("pretrained", "scratch")


class NegativeTransferWarning(UserWarning):
    """The pretrained start did worse than random init beyond the seed-to-seed noise."""


def load_recipe_main(recipe: str | Path) -> Callable:
    """A recipe's ``main(argv)``, from its name or file (hftransfer.recipes)."""
    from .recipes import load_recipe

    return load_recipe(recipe).main


def transfer_verdict(gains: Sequence[float]) -> dict:
    """Summary statistics of per-seed gains and the verdict defined in this module's docstring."""
    n = len(gains)
    mean = sum(gains) / n
    std = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1)) if n > 1 else None
    se = std / math.sqrt(n) if std is not None else None
    verdict = "inconclusive"
    if n >= 2:
        if mean < 0 and (-mean > 2 * se or all(g < 0 for g in gains)):
            verdict = "negative"
        elif mean > 0 and (mean > 2 * se or all(g > 0 for g in gains)):
            verdict = "positive"
    return {"gains": list(gains), "mean_gain": mean, "std_gain": std, "stderr_gain": se, "num_seeds": n,
            "verdict": verdict, "negative_transfer": verdict == "negative"}


def _split_output_dir(argv: list[str]) -> tuple[list[str], str | None]:
    """Take --output_dir out of the recipe arguments: each run gets its own subfolder of it."""
    rest, output_dir, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--output_dir" and i + 1 < len(argv):
            output_dir, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--output_dir="):
            output_dir = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return rest, output_dir


def _eval_curve(log_history: list[dict], metric: str) -> list[tuple[float, float]]:
    """(epoch, eval metric) during training; the re-evaluation after training (same epoch) is left out."""
    curve, seen = [], set()
    for entry in log_history:
        key = f"eval_{metric}"
        if key in entry and entry.get("epoch") not in seen:
            seen.add(entry.get("epoch"))
            curve.append((float(entry["epoch"]), float(entry[key])))
    return curve


def compare_transfer(
    recipe_main: Callable,
    argv: Sequence[str],
    seeds: Sequence[int],
    *,
    output_dir: str | Path | None = None,
    metric: str = "accuracy",
) -> dict:
    """Run ``recipe_main(argv)`` per seed from the pretrained start and with ``--pretrained false``.

    Each run writes into ``output_dir/{pretrained,scratch}-seed{S}`` (output_dir defaults to the --output_dir in
    ``argv``). Returns per-run test metrics and eval curves plus :func:`transfer_verdict` of the paired gains; warns
    with :class:`NegativeTransferWarning` on negative transfer. Writes comparison.json and learning_curves.png.
    """
    argv, argv_output = _split_output_dir(list(argv))
    for flag in ("--pretrained", "--seed"):
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            raise ConfigError(f"compare sets {flag} itself; drop it from the recipe arguments")
    if not seeds:
        raise ConfigError("pass at least one seed, e.g. --seeds 0 1 2")
    base = Path(output_dir or argv_output or "outputs/compare")

    runs = []
    for seed in seeds:
        for arm in ARMS:
            run_dir = base / f"{arm}-seed{seed}"
            run_argv = [*argv, "--output_dir", str(run_dir), "--seed", str(seed)]
            if arm == "scratch":
                run_argv += ["--pretrained", "false"]
            trainer = recipe_main(run_argv)
            test = json.loads((run_dir / "test_results.json").read_text())
            runs.append({
                "arm": arm, "seed": seed, "output_dir": str(run_dir), f"test_{metric}": test[f"test_{metric}"],
                "eval_curve": _eval_curve(trainer.state.log_history, metric),
            })

    score = {(r["arm"], r["seed"]): r[f"test_{metric}"] for r in runs}
    gains = [score["pretrained", s] - score["scratch", s] for s in seeds]
    summary = transfer_verdict(gains)
    result = {
        "metric": f"test_{metric}",
        "seeds": list(seeds),
        "recipe_args": argv,
        **{arm: _mean_std([score[arm, s] for s in seeds]) for arm in ARMS},
        **summary,
        "rule": "negative if mean gain < 0 and (|mean gain| > 2 standard errors or every seed worse), n >= 2 seeds",
        "runs": runs,
    }
    base.mkdir(parents=True, exist_ok=True)
    (base / "comparison.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_learning_curves(runs, metric, base / "learning_curves.png")
    print(format_comparison(result))
    if summary["negative_transfer"]:
        warnings.warn(
            f"negative transfer: the pretrained start loses {-summary['mean_gain']:.4f} test {metric} to random init "
            f"on average over {len(seeds)} seeds (gains {', '.join(f'{g:+.4f}' for g in gains)})",
            NegativeTransferWarning, stacklevel=2,
        )
    return result


def compare_label_counts(
    recipe_main: Callable,
    argv: Sequence[str],
    seeds: Sequence[int],
    counts: Sequence[int],
    *,
    output_dir: str | Path | None = None,
    metric: str = "accuracy",
) -> dict:
    """The label-efficiency curve: :func:`compare_transfer` at each number of labelled examples per class (the
    recipe's ``--samples_per_class``), each point with its own verdict, and where the two starts cross.

    Writes ``output_dir/samples_per_class-{K}/`` per point, label_efficiency.json and label_efficiency.png."""
    argv, argv_output = _split_output_dir(list(argv))
    if any(a == "--samples_per_class" or a.startswith("--samples_per_class=") for a in argv):
        raise ConfigError("compare sets --samples_per_class itself for each point; pass the counts once, e.g. "
                          "--samples_per_class 5 10 50")
    counts = sorted(set(counts))
    if not counts or counts[0] < 1:
        raise ConfigError(f"--samples_per_class takes positive counts, got {list(counts)}; pass e.g. 5 10 50")
    base = Path(output_dir or argv_output or "outputs/compare")
    points = []
    for count in counts:
        point = compare_transfer(recipe_main, [*argv, "--samples_per_class", str(count)], seeds,
                                 output_dir=base / f"samples_per_class-{count}", metric=metric)
        points.append({"samples_per_class": count, "pretrained": point["pretrained"], "scratch": point["scratch"],
                       "mean_gain": point["mean_gain"], "stderr_gain": point["stderr_gain"], "verdict": point["verdict"]})
    result = {"metric": f"test_{metric}", "seeds": list(seeds), "recipe_args": argv, "points": points,
              "crossing": crossing_point(points)}
    base.mkdir(parents=True, exist_ok=True)
    (base / "label_efficiency.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_label_efficiency(points, metric, base / "label_efficiency.png")
    print(format_label_efficiency(result))
    return result


def crossing_point(points: list[dict]) -> dict | None:
    """Where the mean gain of the pretrained start first changes sign between two label counts: the count found by
    linear interpolation in log(count), and which start leads below it; None when the sign never changes."""
    for low, high in zip(points, points[1:]):
        a, b = low["mean_gain"], high["mean_gain"]
        if (a > 0 >= b) or (a < 0 <= b):
            t = a / (a - b)
            log_count = math.log(low["samples_per_class"]) + t * (
                math.log(high["samples_per_class"]) - math.log(low["samples_per_class"]))
            return {"samples_per_class": round(math.exp(log_count), 1),
                    "ahead_below": "pretrained" if a > 0 else "scratch",
                    "between": [low["samples_per_class"], high["samples_per_class"]]}
    return None


def format_label_efficiency(result: dict) -> str:
    lines = [f"{result['metric']} over seeds {result['seeds']}, by labelled examples per class",
             f"  {'per class':>9}  {'pretrained':>10}  {'scratch':>8}  {'gain':>8}  verdict"]
    for p in result["points"]:
        lines.append(f"  {p['samples_per_class']:>9}  {p['pretrained']['mean']:>10.4f}  {p['scratch']['mean']:>8.4f}  "
                     f"{p['mean_gain']:>+8.4f}  {p['verdict']}")
    crossing = result["crossing"]
    lines.append(f"  crossing: about {crossing['samples_per_class']:g} per class ({crossing['ahead_below']} ahead below "
                 "it)" if crossing else "  crossing: none in this range (the same start leads at every count)")
    return "\n".join(lines)


def plot_label_efficiency(points: list[dict], metric: str, path: str | Path) -> None:
    """Test metric (mean, seed std as error bars) vs labelled examples per class, log scale, one line per start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [p["samples_per_class"] for p in points]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for arm, colour in (("pretrained", "tab:blue"), ("scratch", "tab:orange")):
        ax.errorbar(counts, [p[arm]["mean"] for p in points], yerr=[p[arm]["std"] for p in points], marker="o",
                    color=colour, capsize=3, label=arm)
    ax.set_xscale("log")
    ax.set_xlabel("labelled examples per class")
    ax.set_ylabel(f"test {metric}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _mean_std(values: list[float]) -> dict:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": values}


def format_comparison(result: dict) -> str:
    se = result["stderr_gain"]
    lines = [
        f"{result['metric']} over seeds {result['seeds']}",
        f"  pretrained  {result['pretrained']['mean']:.4f} ± {result['pretrained']['std']:.4f}",
        f"  scratch     {result['scratch']['mean']:.4f} ± {result['scratch']['std']:.4f}",
        f"  gain        {result['mean_gain']:+.4f}" + (f" ± {se:.4f} (standard error)" if se is not None else ""),
        f"  verdict     {result['verdict']}" + ("  <- NEGATIVE TRANSFER" if result["negative_transfer"] else ""),
    ]
    return "\n".join(lines)


def plot_learning_curves(runs: list[dict], metric: str, path: str | Path) -> None:
    """Validation metric vs epoch for every run: pretrained starts in one colour, scratch in another."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"pretrained": "tab:blue", "scratch": "tab:orange"}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    labelled = set()
    for run in runs:
        if not run["eval_curve"]:
            continue
        epochs, values = zip(*run["eval_curve"])
        label = run["arm"] if run["arm"] not in labelled else None
        labelled.add(run["arm"])
        ax.plot(epochs, values, marker="o", color=colours[run["arm"]], alpha=0.8, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    if labelled:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
