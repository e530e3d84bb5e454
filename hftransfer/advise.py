"""Which checkpoint, which strategy, and is adaptation needed: `hftransfer advise`.

Three stages, each cheaper than the next and run on fewer candidates:

1. every candidate: one frozen forward pass over the labelled training examples the recipe will train on (LogME and
   the other transferability scores) and over the validation split (a linear probe: logistic regression fitted on
   the training features, scored on validation), timing the pass and counting parameters;
2. the `probe_top` candidates with the best mean rank of LogME and linear-probe accuracy: a short fine-tune
   through the recipe itself (`--max_steps probe_steps`, the user's other recipe arguments unchanged), scored on
   the validation split. A short run is the first stretch of fine-tuning, not a small copy of its end: at the
   recipe's learning rate the features are first disturbed and accuracy falls below the linear probe before it
   climbs past it (measured on MNIST-5k, EfficientNet-Lite2 from the fitted head: linear probe 0.890, then 0.552
   after 20 steps, 0.863 after 50, 0.953 after 100). The candidate whose features already suit the task dips
   least, so the short fine-tune favours it;
3. the recommendation: the candidate with the best short fine-tune, and the strategy the bundled benchmarks measured
   best at this label count (FEW_TEXT_LABELS below: `setfit` for text with at most 10 labels per class, else `full`;
   the user's --strategy when given), not one read off the short fine-tune, which is still in its dip. With a
   target domain, the shift between the data and the target through the chosen checkpoint
   (hftransfer.shift) says whether domain adaptation is worth trying, and with which method: the one
   benchmarks/results/domain_adaptation.json measured best for that modality.

The test split is never read: selection uses validation only, so the chosen run's test score stays unbiased.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import ConfigError

__all__ = ["adaptation_method", "advise", "default_recipe", "format_advice", "linear_probe_accuracy", "shortlist"]

ADVICE_FILE = "advice.json"


def adaptation_method(modality: str) -> str | None:
    """recipes/domain_adapt.py's default method for the modality: the best measured in its benchmark (README)."""
    from .recipes import load_recipe

    return load_recipe("domain_adapt").FAMILY_DEFAULTS.get(modality, {}).get("method")


# The strategy is not read off the short fine-tune: it is still in its early dip (module docstring), below the linear
# probe, when a full run ends far above it (MNIST-5k 10 per class: full 0.917, linear probe 0.796). Measured in
# benchmarks/results/few_label.json: full fine-tuning is best for images at 10 labels per class and for text at 2,000
# labels; with text at 10 per class SetFit-style pair training is (0.560 vs full 0.537, linear probe 0.543).
FEW_TEXT_LABELS = 10
SETS_ITSELF = ("--model", "--output_dir", "--image_size", "--dataset", "--seed", "--samples_per_class",
               "--max_train_samples")


def default_recipe(model: str) -> Path:
    """recipes/image_cls.py or recipes/text_cls.py by the model's modality: under the current folder, else beside the
    package (a source checkout)."""
    from .models.loading import model_families

    name = f"{model_families(model)[0]}_cls.py"
    for folder in (Path.cwd() / "recipes", Path(__file__).resolve().parents[1] / "recipes"):
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"no recipes/{name} under the current folder; pass --recipe with the recipe file to fine-tune "
                      "with")


def linear_probe_accuracy(train_features: np.ndarray, train_labels: np.ndarray, eval_features: np.ndarray,
                          eval_labels: np.ndarray, c: float = 1.0) -> float:
    """Accuracy on the eval rows of multinomial logistic regression (C=c) fitted on the train rows, features
    standardised with the train statistics."""
    import torch

    from .head_fit import fit_softmax_regression

    mean, std = train_features.mean(0), train_features.std(0) + 1e-6
    x = torch.from_numpy((train_features - mean) / std)
    num_classes = int(max(train_labels.max(), eval_labels.max())) + 1
    weight, bias = fit_softmax_regression(x, torch.from_numpy(train_labels), num_classes, c=c)
    logits = torch.from_numpy((eval_features - mean) / std).double() @ weight.T + bias
    return float((logits.argmax(1).numpy() == eval_labels).mean())


def shortlist(rows: list[dict], top: int) -> list[dict]:
    """The `top` rows with the best mean rank of LogME and linear-probe accuracy (ties: the better linear probe)."""
    def ranks(key: Callable[[dict], float]) -> dict[int, int]:
        order = sorted(range(len(rows)), key=lambda i: -key(rows[i]))
        return {i: position for position, i in enumerate(order, start=1)}

    logme = ranks(lambda r: r["scores"].get("logme", -math.inf))
    probe = ranks(lambda r: r["linear_probe_accuracy"])
    for i, row in enumerate(rows):
        row["shortlist_rank"] = (logme[i] + probe[i]) / 2
    return sorted(rows, key=lambda r: (r["shortlist_rank"], -r["linear_probe_accuracy"]))[:top]


def _split_argv(argv: Sequence[str]) -> list[str]:
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag in SETS_ITSELF:
            raise ConfigError(f"advise sets {flag} itself for every run; pass it to advise (see hftransfer advise "
                              "--help) or drop it")
    return list(argv)


def _flag_value(argv: list[str], flag: str, kind: type):
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return kind(argv[i + 1])
        if arg.startswith(flag + "="):
            return kind(arg.split("=", 1)[1])
    return None


def _recipe_data(argv: list[str], modality: str, data_options: dict, seed: int):
    """The data the recipe will train on: its own data arguments (--validation_size, --label_column, ...) read from
    the recipe flags, with advise's, loaded by the recipe's own loader."""
    from transformers import HfArgumentParser

    from .arguments import ImageDataArguments, TextDataArguments
    from .data.loading import load_data_from_args

    parser = HfArgumentParser(ImageDataArguments if modality == "image" else TextDataArguments, allow_abbrev=False)
    data_args, _ = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    for name, value in data_options.items():
        setattr(data_args, name, value)
    return load_data_from_args(data_args, modality, seed=seed)


def _score_candidate(model: str, image_size: int | None, data, max_samples: int, batch_size: int, seed: int) -> dict:
    from .features import extract, load_with_source_head
    from .ranking import score_all

    start = time.perf_counter()
    loaded, has_head = load_with_source_head(model, image_size=image_size)
    forward_start = time.perf_counter()
    train_x, source_probs, train_y = extract(loaded, data, "train", max_samples, batch_size, seed=seed)
    eval_x, _, eval_y = extract(loaded, data, "validation", max_samples, batch_size, seed=seed)
    forward_s = time.perf_counter() - forward_start
    row = {
        "model": model,
        "image_size": image_size,
        "modality": loaded.modality,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "forward_ms_per_example": round(1000 * forward_s / (len(train_y) + len(eval_y)), 3),
        "scores": score_all(train_x, source_probs if has_head else None, labels=train_y),
        "linear_probe_accuracy": linear_probe_accuracy(train_x, train_y, eval_x, eval_y),
        "num_train": int(len(train_y)),
        "num_validation": int(len(eval_y)),
    }
    row["score_seconds"] = round(time.perf_counter() - start, 2)
    return row


def _run_argv(argv: list[str], candidate: dict, data_options: dict, seed: int, run_dir: Path,
              data_flags: Sequence[str] = ("samples_per_class", "max_train_samples", "max_eval_samples")) -> list[str]:
    """Recipe flags for a run from `candidate` (model, image size) on advise's data; after the user's, so they win."""
    run_argv = [*argv, "--model", candidate["model"], "--dataset", data_options["dataset"], "--seed", str(seed),
                "--output_dir", str(run_dir)]
    for flag in data_flags:
        if data_options[flag] is not None:
            run_argv += [f"--{flag}", str(data_options[flag])]
    if candidate["image_size"] is not None:
        run_argv += ["--image_size", str(candidate["image_size"])]
    return run_argv


def _probe_finetune(recipe_main: Callable, row: dict, argv: list[str], data_options: dict, probe_steps: int,
                    seed: int, run_dir: Path) -> None:
    run_argv = [*_run_argv(argv, row, data_options, seed, run_dir), "--max_steps", str(probe_steps), "--save_strategy",
                "no", "--eval_strategy", "no", "--load_best_model_at_end", "false", "--report_to", "none"]
    start = time.perf_counter()
    trainer = recipe_main(run_argv)
    seconds = time.perf_counter() - start
    evaluation = json.loads((run_dir / "eval_results.json").read_text())
    steps = max(1, trainer.state.global_step)
    # the training summary, not the last entry: the recipe's evaluations are logged after it
    train_seconds = next(e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e)
    row["finetune_probe"] = {
        "steps": steps,
        "validation_accuracy": evaluation["eval_accuracy"],
        "seconds": round(seconds, 2),
        "seconds_per_step": round(train_seconds / steps, 4),
        "output_dir": run_dir.name,
    }


def _recommend(rows: list[dict], probed: list[dict], argv: list[str], labels_per_class: float) -> dict:
    """The candidate with the best short fine-tune, and a strategy by the rule in FEW_TEXT_LABELS's comment."""
    best = max(probed, key=lambda r: (r["finetune_probe"]["validation_accuracy"], r["linear_probe_accuracy"],
                                      -r["parameters"]))
    asked = _flag_value(argv, "--strategy", str)
    if asked:
        strategy, why = asked, "the strategy you passed (the short fine-tunes ran with it)"
    elif best["modality"] == "text" and labels_per_class <= FEW_TEXT_LABELS:
        strategy = "setfit"
        why = (f"{labels_per_class:.0f} labelled examples per class: contrastive pair fine-tuning measured best for "
               "text at 10 per class (benchmarks/results/few_label.json)")
    else:
        strategy = "full"
        why = ("full fine-tuning beat the linear probe in every bundled benchmark at this label count "
               "(benchmarks/results/few_label.json, strategies.json)")
    return {"model": best["model"], "image_size": best["image_size"], "modality": best["modality"],
            "strategy": strategy, "flags": ["--strategy", strategy], "why_strategy": why,
            "why_model": (f"best validation accuracy after the short fine-tune among the {len(probed)} shortlisted "
                          f"of {len(rows)} candidates")}


def _adaptation_advice(recommended: dict, data_options: dict, target: str, max_samples: int, batch_size: int,
                       seed: int) -> dict:
    from .shift import domain_shift

    result = domain_shift(recommended["model"], data_options["dataset"], target, max_samples=max_samples,
                          image_size=recommended["image_size"], batch_size=batch_size, seed=seed)
    result["method"] = None if result["shift"] == "small" else adaptation_method(recommended["modality"])
    return result


def advise(
    recipe_main: Callable,
    models: Sequence[str],
    dataset: str,
    *,
    recipe_argv: Sequence[str] = (),
    image_sizes: Sequence[int | None] | None = None,
    default_image_size: int | None = None,
    samples_per_class: int | None = None,
    max_train_samples: int | None = None,
    target: str | None = None,
    probe_top: int = 3,
    probe_steps: int = 20,
    max_samples: int = 1000,
    batch_size: int = 64,
    seed: int = 42,
    output_dir: str | Path = "outputs/advise",
    overwrite: bool = False,
    launch: bool = False,
) -> dict:
    """Score every candidate, fine-tune the shortlist briefly, recommend a checkpoint and a strategy (module docstring).

    Writes advice.json, advice.png and the short runs (probes/) into `output_dir`; with `launch`, the recommended
    recipe run with the full budget goes to `output_dir/recommended`. A timm candidate without an image size is
    scored and fine-tuned at `default_image_size` (the recipe's own default for timm models, e.g. 64 px)."""
    from .outputs import staged_output

    models = list(models)
    if not models:
        raise ConfigError("pass at least one checkpoint to --models")
    if image_sizes is not None and len(image_sizes) != len(models):
        raise ConfigError(f"--image_sizes gives {len(image_sizes)} sizes for {len(models)} --models; give one per "
                          "model, or a single --image_size for all")
    if len(set(zip(models, image_sizes or [None] * len(models)))) != len(models):
        raise ConfigError("--models lists a checkpoint twice at the same --image_sizes; pass each candidate once")
    if probe_top < 1 or probe_steps < 1:
        raise ConfigError(f"--probe_top and --probe_steps must be at least 1, got {probe_top} and {probe_steps}")
    from .models.loading import model_families

    families = [model_families(m) for m in models]
    modalities = {f[0] for f in families}
    sizes = list(image_sizes or [None] * len(models))
    sizes = [default_image_size if size is None and "timm" in f else size for size, f in zip(sizes, families)]
    if len(modalities) > 1:
        raise ConfigError("--models mixes image and text checkpoints; one dataset is read by one kind, so advise on "
                          "each kind separately")
    argv = _split_argv(recipe_argv)
    data_options = {"dataset": dataset, "samples_per_class": samples_per_class, "max_train_samples": max_train_samples,
                    # the probes are scored on the validation examples the linear probes are (and read no more)
                    "max_eval_samples": _flag_value(argv, "--max_eval_samples", int) or max_samples}
    start = time.perf_counter()
    with staged_output(output_dir, overwrite=overwrite) as staged:
        data = _recipe_data(argv, families[0][0], data_options, seed)
        rows = [_score_candidate(m, size, data, max_samples, batch_size, seed) for m, size in zip(models, sizes)]
        probed = shortlist(rows, probe_top)
        for position, row in enumerate(probed):
            _probe_finetune(recipe_main, row, argv, data_options, probe_steps, seed,
                            staged.partial / "probes" / f"{position}-{Path(row['model']).name}")
        recommended = _recommend(rows, probed, argv, len(data.splits["train"]) / len(data.label_names))
        result = {
            "dataset": dataset,
            "samples_per_class": samples_per_class,
            "max_train_samples": max_train_samples,
            "seed": seed,
            "probe_steps": probe_steps,
            "recipe_args": argv,
            "candidates": rows,
            "recommended": recommended,
            "adaptation": (_adaptation_advice(recommended, data_options, target, max_samples, batch_size, seed)
                           if target else None),
            "advise_seconds": round(time.perf_counter() - start, 1),
        }
        (staged.partial / ADVICE_FILE).write_text(json.dumps(result, indent=2) + "\n")
        plot_advice(result, staged.partial / "advice.png")
    print(format_advice(result))
    if launch:
        run_dir = Path(output_dir) / "recommended"
        print(f"launching the recommended run into {run_dir}")
        # the full run evaluates on what the user asked for, not on advise's probe subset
        full_run = _run_argv(argv, recommended, data_options, seed, run_dir, ("samples_per_class", "max_train_samples"))
        recipe_main([*full_run, *recommended["flags"]])
    return result


def _label(row: dict) -> str:
    name = Path(row["model"]).name
    return f"{name}@{row['image_size']}" if row["image_size"] else name


def format_advice(result: dict) -> str:
    header = f"{'candidate':<28} {'params':>7} {'ms/ex':>6} {'LogME':>8} {'linear':>7} {'fine-tune':>9}"
    lines = [header, "-" * len(header)]
    for row in sorted(result["candidates"], key=lambda r: r["shortlist_rank"]):
        probe = row.get("finetune_probe")
        lines.append(
            f"{_label(row)[:28]:<28} {row['parameters'] / 1e6:>6.1f}M {row['forward_ms_per_example']:>6.2f} "
            f"{row['scores'].get('logme', float('nan')):>8.4f} {row['linear_probe_accuracy']:>7.4f} "
            f"{probe['validation_accuracy'] if probe else float('nan'):>9.4f}")
    rec = result["recommended"]
    lines += [
        f"validation accuracy; fine-tune = {result['probe_steps']} steps of the recipe, shortlisted candidates only",
        f"recommended: --model {rec['model']}"
        + (f" --image_size {rec['image_size']}" if rec["image_size"] else "") + f" {' '.join(rec['flags'])}",
        f"  model: {rec['why_model']}",
        f"  strategy: {rec['why_strategy']}",
    ]
    adaptation = result.get("adaptation")
    if adaptation:
        method = adaptation["method"]
        lines.append(f"  target {adaptation['target']}: {adaptation['shift']} shift (proxy A-distance "
                     f"{adaptation['proxy_a_distance']:.3f}, MMD² {adaptation['mmd2']:.4f}) -> "
                     + (f"try recipes/domain_adapt.py --method {method}" if method else "train on the source alone"))
    lines.append(f"advice took {result['advise_seconds']:.0f} s")
    return "\n".join(lines)


def plot_advice(result: dict, path: str | Path) -> None:
    """Linear-probe and short fine-tune validation accuracy per candidate, LogME on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(result["candidates"], key=lambda r: r["shortlist_rank"])
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 3.8))
    ax.bar(x - 0.2, [r["linear_probe_accuracy"] for r in rows], 0.4, label="linear probe")
    ax.bar(x + 0.2, [r.get("finetune_probe", {}).get("validation_accuracy", 0) for r in rows], 0.4,
           label=f"{result['probe_steps']}-step fine-tune")
    ax.set_ylabel("validation accuracy")
    ax.set_xticks(x, [_label(r) for r in rows], rotation=30, ha="right", fontsize=8)
    logme = ax.twinx()
    logme.plot(x, [r["scores"].get("logme", np.nan) for r in rows], "k.-", label="LogME")
    logme.set_ylabel("LogME")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
