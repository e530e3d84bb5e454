"""Every strategy on the default image and text tasks, few-label and full data; prints one JSON table.

    python benchmarks/strategies.py                          # the whole table (about 45 minutes on 2 CPU cores)
    python benchmarks/strategies.py --modalities image --settings few_label

Each cell is one run of the real recipe (recipes/image_cls.py, recipes/text_cls.py) with its defaults, changed only
by --strategy and the data setting: test accuracy on the held-back test split, wall time of the whole run, and the
parameters the strategy trains at the end of training. A separate measurement times optimizer steps (no evaluation)
of image strategies (default: full and linear_probe), giving each one's step time relative to `full`. Finished runs
are cached under --work.
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

from hftransfer.compare import load_recipe_main as load_main  # also for few_label, freeze_depth and token_cls

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ["full", "linear_probe", "gradual", "llrd", "lp_ft", "bitfit", "lora"]
RECIPES = {"image": "image_cls", "text": "text_cls"}

# what each setting changes in the recipe's defaults (epochs scale up for the tiny few-label sets)
SETTINGS = {
    ("image", "few_label"): ["--samples_per_class", "10", "--num_train_epochs", "15", "--per_device_train_batch_size", "20"],
    ("image", "full"): [],
    # 45 steps at BERT's 1e-4 leave a fresh head where it started: the head gets 1e-2 in every strategy
    ("text", "few_label"): ["--samples_per_class", "10", "--num_train_epochs", "15", "--per_device_train_batch_size", "10",
                            "--learning_rate", "1e-4", "--head_lr_scale", "100", "--max_eval_samples", "1000"],
    # the recipe's 20k tweets take 5 min per strategy on 2 CPU cores; 2,000 (3 epochs, as the image task has, so the
    # strategies' schedules fit both) keep the table affordable. The head gets 1e-2 here too.
    ("text", "full"): ["--max_train_samples", "2000", "--num_train_epochs", "3", "--head_lr_scale", "200",
                       "--max_eval_samples", "1000"],
}
# per-strategy options that make the schedule fit each setting's epochs
STRATEGY_ARGS = {
    "gradual": {"few_label": ["--unfreeze_every", "3"], "full": ["--unfreeze_every", "0.5"]},
    "lp_ft": {"few_label": ["--lp_epochs", "5"], "full": ["--lp_epochs", "1"]},
    "lora": {"few_label": ["--learning_rate", "3e-3"], "full": ["--learning_rate", "3e-3"]},
}
# per-strategy options for one modality only
STRATEGY_MODALITY_ARGS = {
    ("lora", "text", "few_label"): ["--head_lr_scale", "3.3"],  # the same head LR (1e-2) as the other strategies
    ("lora", "text", "full"): ["--head_lr_scale", "3.3"],
}
STEP_TIME_ARGS = ["--max_steps", "30", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end",
                  "false", "--logging_steps", "5", "--max_eval_samples", "50"]


def trainable_parameters(trainer) -> int:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run(main, argv: list[str], out: Path) -> tuple[dict, object]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        trainer = main([*argv, "--output_dir", str(out), "--overwrite_output_dir", "true", "--disable_tqdm", "true",
                        "--report_to", "none"])
    return {"wall_seconds": round(time.perf_counter() - start, 1)}, trainer


def table_cell(main, modality: str, setting: str, strategy: str, work: Path) -> dict:
    cache = work / "cache" / f"{modality}-{setting}-{strategy}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    argv = [*SETTINGS[(modality, setting)], "--strategy", strategy, *STRATEGY_ARGS.get(strategy, {}).get(setting, []),
            *STRATEGY_MODALITY_ARGS.get((strategy, modality, setting), [])]
    out = work / "run" / f"{modality}-{setting}-{strategy}"
    cell, trainer = run(main, argv, out)
    cell["test_accuracy"] = json.loads((out / "test_results.json").read_text())["test_accuracy"]
    cell["trainable_parameters"] = trainable_parameters(trainer)
    cell["train_examples"] = len(trainer.train_dataset)
    del trainer
    gc.collect()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(cell))
    return cell


def step_time(main, strategy: str, work: Path) -> float:
    """Median seconds per optimizer step over the logged windows after the first (warm-up) one."""
    out = work / "run" / f"steptime-{strategy}"
    _, trainer = run(main, [*STEP_TIME_ARGS, "--strategy", strategy], out)
    rates = [e["train_samples_per_second_recent"] for e in trainer.state.log_history if "train_samples_per_second_recent" in e]
    batch = trainer.args.train_batch_size
    del trainer
    gc.collect()
    return round(batch / statistics.median(rates[1:] or rates), 4)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modalities", nargs="+", default=["image", "text"], choices=["image", "text"])
    parser.add_argument("--settings", nargs="+", default=["few_label", "full"], choices=["few_label", "full"])
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    parser.add_argument("--step-time-strategies", nargs="*", default=["full", "linear_probe"], choices=STRATEGIES,
                        help="Image strategies whose optimizer-step time is measured (none: skip).")
    parser.add_argument("--work", default=str(REPO / "outputs" / "bench_strategies"))
    args = parser.parse_args()
    work = Path(args.work)

    report: dict = {"setting_args": {f"{m}/{s}": SETTINGS[(m, s)] for m in args.modalities for s in args.settings}}
    for modality in args.modalities:
        main_fn = load_main(RECIPES[modality])
        for setting in args.settings:
            report[f"{modality}/{setting}"] = {
                strategy: table_cell(main_fn, modality, setting, strategy, work) for strategy in args.strategies
            }
    if args.step_time_strategies:
        image = load_main("image_cls")
        seconds = {strategy: step_time(image, strategy, work) for strategy in args.step_time_strategies}
        report["image_step_seconds"] = seconds
        if "full" in seconds:
            report["image_step_time_vs_full"] = {s: round(t / seconds["full"], 3) for s, t in seconds.items()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
