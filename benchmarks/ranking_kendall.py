"""Do transferability scores rank starting points the way fine-tuning does? Kendall tau on a few-label MNIST-5k task.

    python benchmarks/ranking_kendall.py            # 6 starting points, 50 labels per class, ~10-15 min on 2 CPU cores
    python benchmarks/ranking_kendall.py --quick    # smoke test of the whole pipeline, ~2 min

Candidates share one architecture (tf_efficientnet_lite0), so only the starting weights (and, for one, the input size)
differ: ImageNet weights, random init, ImageNet weights with noise, ImageNet weights with the last stages reset, a
checkpoint first fine-tuned on UCI digits, and ImageNet weights at half the input size. Each is scored (LogME,
H-score plain and shrunk, LEEP, NCE) on exactly the labelled examples it is then fine-tuned on, with the same recipe
and budget. Stdout gets one JSON object: per-candidate scores and test accuracy, and Kendall's tau of each score vs
accuracy (run logs go to stderr). A single seed: with 6 candidates, |tau| < 0.6 is within chance (p > 0.1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _save_timm(model, target: Path) -> str:
    """The layout of the built-in checkpoints (timm's Hub layout, without `model_args`, which TimmWrapper rejects)."""
    from hftransfer.models.builtin import _write_timm_folder

    _write_timm_folder(model, target)
    return str(target)


def _imagenet_lite0():
    import timm

    from hftransfer.models import resolve_model_source

    # pretrained=True: without it timm builds the architecture from config.json and leaves the weights random
    return timm.create_model(f"local-dir:{resolve_model_source('efficientnet_lite0')}", pretrained=True)


def build_candidates(work: Path, args, recipe_main) -> list[dict]:
    """(name, checkpoint, image_size) for each starting point; derived checkpoints are written under `work`."""
    import timm
    import torch

    size, small = args.image_size, args.small_image_size
    torch.manual_seed(0)
    random_init = timm.create_model("tf_efficientnet_lite0", pretrained=False)

    noisy = _imagenet_lite0()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # Gaussian noise at `noise` x each weight tensor's own std: the features are damaged
        for name, p in noisy.named_parameters():
            if p.ndim > 1:
                p.add_(torch.randn(p.shape, generator=generator) * p.std() * args.noise)

    reset = _imagenet_lite0()
    fresh = dict(random_init.state_dict())
    with torch.no_grad():  # the last three stages and the head conv start over; early stages stay ImageNet's
        for key, value in reset.state_dict().items():
            if key.startswith(("blocks.4.", "blocks.5.", "blocks.6.", "conv_head.", "bn2.")):
                value.copy_(fresh[key])

    digits_dir = work / "lite0_digits"
    recipe_main([
        "--model", "efficientnet_lite0", "--dataset", "digits", "--image_size", str(size),
        "--num_train_epochs", str(args.digits_epochs), "--output_dir", str(digits_dir),
        *(["--max_train_samples", str(args.digits_samples)] if args.digits_samples else []),
        *_common_train_args(args),
    ])
    return [
        {"name": "imagenet", "model": "efficientnet_lite0", "image_size": size},
        {"name": "random_init", "model": _save_timm(random_init, work / "random_init"), "image_size": size},
        {"name": f"imagenet_noise{args.noise:g}", "model": _save_timm(noisy, work / "noisy"), "image_size": size},
        {"name": "imagenet_reset_last3", "model": _save_timm(reset, work / "reset"), "image_size": size},
        {"name": "imagenet_then_digits", "model": str(digits_dir), "image_size": size},
        {"name": f"imagenet_at_{small}px", "model": "efficientnet_lite0", "image_size": small},
    ]


def _common_train_args(args) -> list[str]:
    return [
        "--seed", str(args.seed), "--save_strategy", "no", "--eval_strategy", "no", "--load_best_model_at_end", "false",
        "--overwrite_output_dir", "true", "--report_to", "none", "--disable_tqdm", "true",
        "--per_device_train_batch_size", "32",
    ]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Tiny budget: checks that everything runs.")
    parser.add_argument("--samples_per_class", type=int, default=50, help="Labelled MNIST-5k examples per class.")
    parser.add_argument("--max_eval_samples", type=int, default=1000, help="Test examples.")
    parser.add_argument("--epochs", type=float, default=8, help="Fine-tuning epochs for every candidate.")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--small_image_size", type=int, default=32, help="Input size of the small-input candidate.")
    parser.add_argument("--noise", type=float, default=0.5, help="Relative noise of the perturbed candidate.")
    parser.add_argument("--digits_epochs", type=float, default=2)
    parser.add_argument("--digits_samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default="outputs/bench_ranking_kendall")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples_per_class, args.max_eval_samples, args.epochs = 3, 60, 1
        args.image_size, args.small_image_size, args.digits_epochs, args.digits_samples = 32, 24, 1, 64

    import contextlib

    import numpy as np
    from scipy.stats import kendalltau

    from hftransfer.compare import load_recipe_main
    from hftransfer.data import load_classification_data
    from hftransfer.features import extract
    from hftransfer.ranking import hscore, score_all

    start = time.perf_counter()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe_main("image_cls")

    def recipe_main(argv):  # stdout is for the JSON result only
        with contextlib.redirect_stdout(sys.stderr):
            return recipe(argv)

    candidates = build_candidates(work, args, recipe_main)

    # the very examples the recipe fine-tunes on: same dataset, seed and per-class sampling
    data = load_classification_data("mnist5k", "image", samples_per_class=args.samples_per_class, seed=args.seed)
    for candidate in candidates:
        features, source_probs, labels = extract(candidate["model"], data, split="train", image_size=candidate["image_size"])
        candidate["scores"] = score_all(features, source_probs, labels=labels)
        # plain H-score saturates at (classes - 1) when examples <= feature dimensions, as here (500 vs 1280)
        candidate["scores"]["hscore_shrinkage"] = hscore(features, labels, shrinkage=True)
        out = work / "finetune" / candidate["name"]
        recipe_main([
            "--model", candidate["model"], "--dataset", "mnist5k", "--image_size", str(candidate["image_size"]),
            "--samples_per_class", str(args.samples_per_class), "--max_eval_samples", str(args.max_eval_samples),
            "--num_train_epochs", str(args.epochs), "--output_dir", str(out), *_common_train_args(args),
        ])
        candidate["test_accuracy"] = json.loads((out / "test_results.json").read_text())["test_accuracy"]
        print(f"{candidate['name']}: {candidate['test_accuracy']:.4f} {candidate['scores']}", file=sys.stderr)

    accuracy = np.array([c["test_accuracy"] for c in candidates])
    kendall = {}
    for name in sorted({n for c in candidates for n in c["scores"]}):
        have = [c for c in candidates if name in c["scores"]]
        tau, p_value = kendalltau([c["scores"][name] for c in have], [c["test_accuracy"] for c in have])
        kendall[name] = {"tau": None if np.isnan(tau) else float(tau),
                         "p_value": None if np.isnan(p_value) else float(p_value), "num_candidates": len(have)}
    result = {
        "benchmark": "ranking_kendall",
        "task": f"mnist5k, {args.samples_per_class} labels per class, {args.epochs:g} epochs, test on {args.max_eval_samples}",
        "quick": args.quick,
        "candidates": [{k: c[k] for k in ("name", "image_size", "scores", "test_accuracy")} for c in candidates],
        "accuracy_range": [float(accuracy.min()), float(accuracy.max())],
        "kendall_tau": kendall,
        "runtime_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
