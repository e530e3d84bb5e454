"""How far a target domain is from the source, seen through a pretrained checkpoint's frozen features.

    hftransfer shift --model efficientnet_lite0 --source digits --target mnist5k --image_size 64

Two measures on the same number of source and target examples:
- proxy A-distance (Ben-David et al. 2007; Ganin et al. 2016): 2 (1 - 2 err), where err is the 5-fold
  cross-validated error of a linear domain classifier (standardised features, logistic regression). 0: the domains
  cannot be told apart; 2: they separate perfectly.
- squared MMD with a Gaussian kernel (bandwidth: the median pairwise distance), unbiased estimate.
Both also for two random halves of the source sample (the floor a finite sample gives when there is no shift).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ConfigError

DOMAIN_SHIFT = "domain_shift.json"  # what recipes/domain_adapt.py measured before training, next to the model
# reading of the proxy A-distance, on its fixed 0..2 scale (not fitted to any pair)
SHIFT_LEVELS = [(0.5, "small"), (1.5, "moderate"), (2.01, "large")]
ADVICE = {
    "small": "source-only fine-tuning should carry over; adaptation has little to correct",
    "moderate": "try domain adaptation against source-only (recipes/domain_adapt.py --method source_only, then the "
                "family's default method)",
    "large": "adapt: recipes/domain_adapt.py (its default method is the best measured for the model's family) and "
             "compare with --method source_only",
}


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """2 (1 - 2 err) of a 5-fold cross-validated logistic-regression domain classifier, clipped to [0, 2]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source, target])
    domain = np.r_[np.zeros(len(source)), np.ones(len(target))]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    error = 1.0 - float(cross_val_score(classifier, x, domain, cv=folds).mean())
    return float(np.clip(2.0 * (1.0 - 2.0 * error), 0.0, 2.0))


def gaussian_mmd2(source: np.ndarray, target: np.ndarray) -> float:
    """Unbiased squared MMD with an RBF kernel whose bandwidth is the median pairwise distance of the pooled sample."""
    x = np.concatenate([source, target]).astype(np.float64)
    squared = (x * x).sum(1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * x @ x.T, 0.0)
    bandwidth2 = float(np.median(distances[np.triu_indices(len(x), k=1)])) or 1.0
    kernel = np.exp(-distances / bandwidth2)
    n, m = len(source), len(target)
    k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within_s = (k_ss.sum() - np.trace(k_ss)) / (n * (n - 1))
    within_t = (k_tt.sum() - np.trace(k_tt)) / (m * (m - 1))
    return float(within_s + within_t - 2.0 * k_st.mean())


def shift_level(pad: float) -> str:
    return next(level for bound, level in SHIFT_LEVELS if pad < bound)


def measure_shift(source: np.ndarray, target: np.ndarray, seed: int = 0) -> dict:
    """Both measures on equally many rows of each domain, and the same for two halves of the source (the no-shift
    floor of this sample size)."""
    if len(source) < 10 or len(target) < 10:
        raise ConfigError(f"measuring a shift needs at least 10 examples of each domain, got {len(source)} and "
                          f"{len(target)}; pass more data or a larger --max-samples")
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target))
    source = source[rng.permutation(len(source))[:n]]
    target = target[rng.permutation(len(target))[:n]]
    half = n // 2
    pad = proxy_a_distance(source, target, seed)
    level = shift_level(pad)
    return {
        "examples_per_domain": n,
        "proxy_a_distance": round(pad, 4),
        "mmd2": round(gaussian_mmd2(source, target), 5),
        "source_halves": {"proxy_a_distance": round(proxy_a_distance(source[:half], source[half: 2 * half], seed), 4),
                          "mmd2": round(gaussian_mmd2(source[:half], source[half: 2 * half]), 5)},
        "shift": level,
        "advice": ADVICE[level],
    }


def domain_shift(model: str, source: str, target: str, *, source_split: str = "train", target_split: str = "train",
                 max_samples: int = 1000, image_size: int | None = None, batch_size: int = 64, seed: int = 0,
                 output: str | Path | None = None) -> dict:
    """Frozen features of `model` (the pooling a sentence-transformers checkpoint was trained with, else what a new
    head reads) on up to `max_samples` examples of each domain, and :func:`measure_shift` of them."""
    from .data.loading import load_classification_data
    from .features import load_with_source_head

    if max_samples < 10:
        raise ConfigError(f"--max-samples must be at least 10, got {max_samples}; the default is 1000")
    loaded, _ = load_with_source_head(model, image_size=image_size)
    source_data = load_classification_data(source, loaded.modality)
    target_data = load_classification_data(target, loaded.modality)
    result = {"model": model, "source": f"{source}:{source_split}", "target": f"{target}:{target_split}",
              **shift_between(loaded, source_data, target_data, source_split=source_split, target_split=target_split,
                              max_samples=max_samples, batch_size=batch_size, seed=seed)}
    if output:
        Path(output).write_text(json.dumps(result, indent=2) + "\n")
    return result


def shift_between(loaded, source_data, target_data, *, source_split: str = "train", target_split: str = "train",
                  max_samples: int = 1000, batch_size: int = 64, seed: int = 0) -> dict:
    """:func:`measure_shift` of a loaded model's frozen features on two loaded datasets (random states untouched: a
    recipe that measures first trains exactly as one that does not)."""
    import torch

    from .features import extract

    features = []
    with torch.random.fork_rng(devices=[]):
        for data, split in ((source_data, source_split), (target_data, target_split)):
            if split not in data.splits:
                raise ConfigError(f"{data.name!r} has no {split!r} split (it has {', '.join(data.splits)}); pass one "
                                  "of those")
            x, _, _ = extract(loaded, data, split=split, max_samples=max_samples, batch_size=batch_size, seed=seed)
            features.append(x)
    return measure_shift(*features, seed=seed)


def shift_card_line(result: dict) -> str:
    floor = result["source_halves"]
    return (f"{result['shift']} (before training, frozen features of {result['examples_per_domain']} examples per "
            f"domain: proxy A-distance {result['proxy_a_distance']:.3f}, MMD² {result['mmd2']:.4f}; two halves of the "
            f"source: {floor['proxy_a_distance']:.3f}, {floor['mmd2']:.4f})")


def format_shift(result: dict) -> str:
    floor = result["source_halves"]
    return "\n".join([
        f"{result['source']} -> {result['target']} through {result['model']} ({result['examples_per_domain']} examples "
        "of each)",
        f"  proxy A-distance {result['proxy_a_distance']:.3f}  (two halves of the source: {floor['proxy_a_distance']:.3f};"
        " 0 = indistinguishable, 2 = fully separable)",
        f"  MMD^2            {result['mmd2']:.5f}  (two halves of the source: {floor['mmd2']:.5f})",
        f"  shift: {result['shift']} -> {result['advice']}",
    ])
