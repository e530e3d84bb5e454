"""Does `hftransfer advise` pick the checkpoint that fine-tunes best, for a fraction of the compute of trying them all?

    python benchmarks/advise.py                 # both tasks, ~45 min on 2 CPU cores (per-run results cached)
    python benchmarks/advise.py --tasks mnist5k --quick   # smoke test, ~3 min
    python benchmarks/advise.py --readme benchmarks/results/advise.json   # README table from the JSON

Per task, every candidate is fully fine-tuned with the recipe (the ground truth, timed), then `advise` is run on the
same candidates, data and recipe arguments (timed). Reported: the recommended candidate's fine-tuned test accuracy
against the best one's, the advisor's seconds as a share of all the fine-tunes' seconds, and Kendall's tau between
each advisor signal (LogME, linear probe, short fine-tune) and the fine-tuned test accuracy. The advisor reads only
train and validation; the ground truth is test accuracy. Candidate checkpoints:

- mnist5k (50 labels per class): the six starting points of benchmarks/ranking_kendall.py (EfficientNet-Lite0 from
  ImageNet, random, noised, last stages reset, first fine-tuned on UCI digits, at half the input size) and ImageNet
  EfficientNet-Lite2 at 64 and 32 px;
- tweets (50 labels per class): all-MiniLM-L6-v2, its first 3 layers only, its first layer only, random init, noised
  at 20% and 50%, last 3 layers reset, and first fine-tuned on Rotten Tomatoes reviews (an intermediate sentiment
  task).

Stdout gets one JSON object (run logs go to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from readme_tables import replace_between  # noqa: E402  (same folder)

README_BEGIN = "<!-- advise table: python benchmarks/advise.py --readme benchmarks/results/advise.json -->"
README_END = "<!-- end of advise table -->"
CACHE = Path.home() / ".cache" / "hftransfer-bench" / "advise"

TASKS = {
    "mnist5k": dict(recipe="image_cls", dataset="mnist5k", samples_per_class=50,
                    recipe_args=["--num_train_epochs", "8", "--max_eval_samples", "1000",
                                 "--per_device_train_batch_size", "32"]),
    "tweets": dict(recipe="text_cls", dataset="tweets", samples_per_class=50,
                   recipe_args=["--max_eval_samples", "1000"]),
}
RUN_ARGS = ["--save_strategy", "no", "--eval_strategy", "no", "--load_best_model_at_end", "false", "--report_to", "none",
            "--disable_tqdm", "true"]


def quiet(recipe_main):
    def run(argv):  # stdout is for the JSON result only
        with contextlib.redirect_stdout(sys.stderr):
            return recipe_main(argv)
    return run


def image_candidates(work: Path, recipe_main, quick: bool) -> list[dict]:
    import ranking_kendall

    options = argparse.Namespace(image_size=32 if quick else 64, small_image_size=24 if quick else 32, noise=0.5,
                                 digits_epochs=1 if quick else 2, digits_samples=64 if quick else None, seed=0)
    candidates = ranking_kendall.build_candidates(work, options, recipe_main)
    return candidates + [
        {"name": "lite2_imagenet", "model": "efficientnet_lite2", "image_size": options.image_size},
        {"name": f"lite2_imagenet_at_{options.small_image_size}px", "model": "efficientnet_lite2",
         "image_size": options.small_image_size},
    ]


def text_candidates(work: Path, recipe_main, quick: bool) -> list[dict]:
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from hftransfer.models import resolve_model_source

    source = Path(resolve_model_source("minilm"))
    tokenizer = AutoTokenizer.from_pretrained(source)

    def save(model, name: str) -> str:
        folder = work / name
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        keep_pooling(folder)
        return str(folder)

    def keep_pooling(folder: Path) -> None:  # the sentence-transformers mean pooling the scores read, as for MiniLM
        shutil.copy(source / "modules.json", folder / "modules.json")
        shutil.copytree(source / "1_Pooling", folder / "1_Pooling", dirs_exist_ok=True)

    torch.manual_seed(0)
    random_init = AutoModel.from_config(AutoConfig.from_pretrained(source))
    def noised(scale: float):
        model = AutoModel.from_pretrained(source)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim > 1:
                    p.add_(torch.randn(p.shape, generator=generator) * p.std() * scale)
        return model

    reset = AutoModel.from_pretrained(source)
    fresh = dict(random_init.state_dict())
    with torch.no_grad():
        for key, value in reset.state_dict().items():
            if key.startswith(("encoder.layer.3.", "encoder.layer.4.", "encoder.layer.5.")):
                value.copy_(fresh[key])
    first3 = AutoModel.from_pretrained(source, num_hidden_layers=3)
    first1 = AutoModel.from_pretrained(source, num_hidden_layers=1)
    reviews = work / "minilm_then_rotten_tomatoes"
    if not (reviews / "model.safetensors").is_file():
        recipe_main(["--model", "minilm", "--dataset", "rotten_tomatoes", "--max_train_samples", "64" if quick else "2000",
                     "--max_eval_samples", "200", "--output_dir", str(reviews), "--seed", "0",
                     "--overwrite_output_dir", "true", *(["--max_steps", "5"] if quick else []), *RUN_ARGS])
    keep_pooling(reviews)
    return [
        {"name": "minilm", "model": "minilm", "image_size": None},
        {"name": "minilm_first3_layers", "model": save(first3, "first3"), "image_size": None},
        {"name": "random_init", "model": save(random_init, "random_init"), "image_size": None},
        {"name": "minilm_first1_layer", "model": save(first1, "first1"), "image_size": None},
        {"name": "minilm_noise0.2", "model": save(noised(0.2), "noisy0.2"), "image_size": None},
        {"name": "minilm_noise0.5", "model": save(noised(0.5), "noisy"), "image_size": None},
        {"name": "minilm_reset_last3", "model": save(reset, "reset"), "image_size": None},
        {"name": "minilm_then_rotten_tomatoes", "model": str(reviews), "image_size": None},
    ]


def finetune(recipe_main, task: dict, candidate: dict, out: Path, cache: Path) -> dict:
    """The ground truth: the recipe's full budget from this candidate, test accuracy and wall seconds (cached)."""
    if cache.is_file():
        return json.loads(cache.read_text())
    argv = [*task["recipe_args"], "--model", candidate["model"], "--dataset", task["dataset"], "--seed", "0",
            "--samples_per_class", str(task["samples_per_class"]), "--output_dir", str(out),
            "--overwrite_output_dir", "true", *RUN_ARGS]
    if candidate["image_size"]:
        argv += ["--image_size", str(candidate["image_size"])]
    start = time.perf_counter()
    recipe_main(argv)
    result = {"test_accuracy": json.loads((out / "test_results.json").read_text())["test_accuracy"],
              "seconds": round(time.perf_counter() - start, 1)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    shutil.rmtree(out, ignore_errors=True)
    return result


def kendall(signal: dict[str, float], truth: dict[str, float]) -> dict:
    import numpy as np
    from scipy.stats import kendalltau

    names = [n for n in truth if n in signal]
    tau, p_value = kendalltau([signal[n] for n in names], [truth[n] for n in names])
    return {"tau": None if np.isnan(tau) else round(float(tau), 3),
            "p_value": None if np.isnan(p_value) else round(float(p_value), 3), "num_candidates": len(names)}


def run_task(name: str, args) -> dict:
    from hftransfer.advise import advise
    from hftransfer.compare import load_recipe_main

    task = TASKS[name]
    if args.quick:
        task = {**task, "samples_per_class": 3,
                "recipe_args": ["--max_steps", "4", "--max_eval_samples", "60", "--per_device_train_batch_size", "8"]}
    recipe_main = quiet(load_recipe_main(task["recipe"]))
    work = Path(args.work_dir) / name
    work.mkdir(parents=True, exist_ok=True)
    build = image_candidates if task["recipe"] == "image_cls" else text_candidates
    candidates = build(work / "candidates", recipe_main, args.quick)
    cache = CACHE / ("quick" if args.quick else "full") / name
    truth = {}
    for c in candidates:
        truth[c["name"]] = finetune(recipe_main, task, c, work / "finetune" / c["name"], cache / f"{c['name']}.json")
        print(f"{name} {c['name']}: {truth[c['name']]}", file=sys.stderr)

    advice_cache = cache / "advice.json"
    if advice_cache.is_file():
        advice = json.loads(advice_cache.read_text())
    else:
        with contextlib.redirect_stdout(sys.stderr):
            advice = advise(recipe_main, [c["model"] for c in candidates], task["dataset"],
                            recipe_argv=[*task["recipe_args"], "--disable_tqdm", "true"],
                            image_sizes=[c["image_size"] for c in candidates] if task["recipe"] == "image_cls" else None,
                            samples_per_class=task["samples_per_class"], seed=0, output_dir=work / "advise",
                            overwrite=True, probe_steps=args.probe_steps, probe_top=args.probe_top)
        advice_cache.write_text(json.dumps(advice))

    by_key = {(c["model"], c["image_size"]): c["name"] for c in candidates}
    signals = {"logme": {}, "linear_probe": {}, "finetune_probe": {}}
    for row in advice["candidates"]:
        label = by_key[(row["model"], row["image_size"])]
        signals["logme"][label] = row["scores"]["logme"]
        signals["linear_probe"][label] = row["linear_probe_accuracy"]
        if "finetune_probe" in row:
            signals["finetune_probe"][label] = row["finetune_probe"]["validation_accuracy"]
    accuracy = {n: t["test_accuracy"] for n, t in truth.items()}
    best = max(accuracy, key=accuracy.get)
    chosen = by_key[(advice["recommended"]["model"], advice["recommended"]["image_size"])]
    finetune_seconds = sum(t["seconds"] for t in truth.values())
    return {
        "task": f"{task['dataset']}, {task['samples_per_class']} labels per class, recipes/{task['recipe']}.py "
                f"{' '.join(task['recipe_args'])}, seed 0",
        "candidates": {n: {"test_accuracy": accuracy[n], "finetune_seconds": truth[n]["seconds"],
                           **{s: v.get(n) for s, v in signals.items()}} for n in accuracy},
        "best": {"candidate": best, "test_accuracy": accuracy[best]},
        "recommended": {"candidate": chosen, "test_accuracy": accuracy[chosen],
                        "strategy": advice["recommended"]["strategy"]},
        "gap_pp": round(100 * (accuracy[best] - accuracy[chosen]), 2),
        "advise_seconds": advice["advise_seconds"],
        "finetune_all_seconds": round(finetune_seconds, 1),
        "compute_share": round(advice["advise_seconds"] / finetune_seconds, 3),
        "kendall_tau": {s: kendall(v, accuracy) for s, v in signals.items()},
    }


def markdown(report: dict) -> str:
    """Per task: each candidate's signals and fine-tuned accuracy; then the advisor's pick, gap and compute share."""
    lines = []
    for name, task in report["tasks"].items():
        lines += [f"**{name}** ({task['task']})", "",
                  "| candidate | LogME | linear probe (val) | short fine-tune (val) | fine-tuned (test) |",
                  "|---|---|---|---|---|"]
        for candidate, row in sorted(task["candidates"].items(), key=lambda kv: -kv[1]["test_accuracy"]):
            probe = row["finetune_probe"]
            marks = (" ← recommended" if candidate == task["recommended"]["candidate"] else "") + (
                " (best)" if candidate == task["best"]["candidate"] else "")
            lines.append(f"| {candidate}{marks} | {row['logme']:.3f} | {row['linear_probe']:.3f} | "
                         f"{'-' if probe is None else f'{probe:.3f}'} | {row['test_accuracy']:.3f} |")
        tau = task["kendall_tau"]
        lines += ["", f"Recommended {task['recommended']['candidate']} with `--strategy "
                  f"{task['recommended']['strategy']}`: {task['gap_pp']:.1f} pp below the best fine-tuned candidate; "
                  f"advice took {task['advise_seconds']:.0f} s, {100 * task['compute_share']:.1f}% of the "
                  f"{task['finetune_all_seconds']:.0f} s of fine-tuning all {len(task['candidates'])}. Kendall tau vs "
                  f"fine-tuned test accuracy: LogME {tau['logme']['tau']}, linear probe {tau['linear_probe']['tau']} "
                  f"(all {tau['logme']['num_candidates']}), short fine-tune {tau['finetune_probe']['tau']} "
                  f"(the {tau['finetune_probe']['num_candidates']} shortlisted).", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--quick", action="store_true", help="Tiny budget: checks that everything runs.")
    parser.add_argument("--probe_top", type=int, default=3)
    parser.add_argument("--probe_steps", type=int, default=20)
    parser.add_argument("--work_dir", default="outputs/bench_advise")
    parser.add_argument("--readme", metavar="JSON", help="Run nothing: rewrite README.md's advise table from this report.")
    args = parser.parse_args(argv)
    if args.readme:
        replace_between(REPO / "README.md", README_BEGIN, README_END, markdown(json.loads(Path(args.readme).read_text())))
        return {}
    result = {"benchmark": "advise", "quick": args.quick, "probe_top": args.probe_top, "probe_steps": args.probe_steps,
              "tasks": {name: run_task(name, args) for name in args.tasks}}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
