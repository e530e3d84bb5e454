"""Transferability scores: closed forms, a brute-force LogME check, synthetic rankings and the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.covariance import LedoitWolf

from hftransfer.errors import DataError
from hftransfer.ranking import SCORES, Score, hscore, leep, logme, nce, score_all

# ----------------------------------------------------------------------------------------------- NCE


def test_nce_zero_when_labels_are_a_function_of_source_labels():
    z = np.array([0, 0, 1, 1, 2, 2, 2])
    y = np.array([5, 5, 3, 3, 5, 5, 5])  # y = f(z), not injective, arbitrary label values
    assert nce(z, y) == pytest.approx(0.0, abs=1e-12)


def test_nce_minus_log_k_when_source_labels_are_constant():
    y = np.repeat(np.arange(4), 3)  # uniform over K = 4
    assert nce(np.zeros(12, dtype=int), y) == pytest.approx(-math.log(4), rel=1e-12)


def test_nce_hand_computed_2x2():
    # P(z=0) = 4/6 with Y|z=0 ~ (3/4, 1/4); Y|z=1 is always 1  =>  -H(Y|Z) = 2/3 (3/4 log 3/4 + 1/4 log 1/4)
    z = np.array([0, 0, 0, 0, 1, 1])
    y = np.array([0, 0, 0, 1, 1, 1])
    expected = 2 / 3 * (0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert nce(z, y) == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------------------------- LEEP


def test_leep_one_hot_source_probs_is_mean_log_empirical_conditional():
    # z = [0,0,1,1], y = [0,1,1,1]: P(y|z=0) = (1/2, 1/2), P(y=1|z=1) = 1  =>  mean(log .5, log .5, 0, 0)
    probs = np.eye(2)[[0, 0, 1, 1]]
    y = np.array([0, 1, 1, 1])
    assert leep(probs, y) == pytest.approx(0.5 * math.log(0.5), rel=1e-12)


def test_leep_hand_computed_soft_probs():
    # joint = 1/2 [[.75,.25],[.25,.75]], P(z) = (.5,.5) => P(y|z) = [[.75,.25],[.25,.75]];
    # each sample: .75*.75 + .25*.25 = .625
    probs = np.array([[0.75, 0.25], [0.25, 0.75]])
    assert leep(probs, np.array([0, 1])) == pytest.approx(math.log(0.625), rel=1e-12)


def test_leep_rejects_unnormalised_probs():
    with pytest.raises(DataError, match="softmax"):
        leep(np.array([[2.0, 1.0], [0.5, 0.5]]), np.array([0, 1]))


# ----------------------------------------------------------------------------------------------- H-score


def test_hscore_1d_is_var_of_class_means_over_var():
    # f = [1,2,3,5], y = [0,0,1,1]: class means 1.5, 4; mean 2.75; var(g) = 1.5625, var(f) = 2.1875 -> 5/7
    f = np.array([[1.0], [2.0], [3.0], [5.0]])
    assert hscore(f, np.array([0, 0, 1, 1])) == pytest.approx(5 / 7, rel=1e-12)


def test_hscore_matches_independent_pinv_formula():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(30, 4)) @ rng.normal(size=(4, 4))
    y = rng.integers(0, 3, size=30)
    g = np.stack([f[y == c].mean(0) for c in y])  # E[f | y] per sample, loop on purpose
    expected = np.trace(np.linalg.pinv(np.cov(f, rowvar=False)) @ np.cov(g, rowvar=False))
    assert hscore(f, y) == pytest.approx(expected, rel=1e-9)


def test_hscore_shrinkage_matches_ledoit_wolf_formula():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(25, 6))
    y = rng.integers(0, 3, size=25)
    lw = LedoitWolf().fit(f)
    g = np.stack([f[y == c].mean(0) for c in y])
    cov_g = np.cov(g, rowvar=False, bias=True)
    expected = np.trace(np.linalg.inv(lw.covariance_) @ ((1 - lw.shrinkage_) * cov_g))
    assert hscore(f, y, shrinkage=True) == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------------------------- LogME


def _direct_log_evidence(f: np.ndarray, y: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """log N(y | 0, I/beta + F F^T/alpha): the marginal likelihood written directly in sample space."""
    n = f.shape[0]
    cov = np.exp(-log_beta) * np.eye(n) + np.exp(-log_alpha) * f @ f.T
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (n * math.log(2 * math.pi) + logdet + y @ np.linalg.solve(cov, y))


def _brute_force_max(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(grid maximum, maximum after Nelder-Mead refinement from the best grid point) over (log alpha, log beta)."""
    grid = np.linspace(-10, 10, 61)
    vals = np.array([[_direct_log_evidence(f, y, a, b) for b in grid] for a in grid])
    i, j = np.unravel_index(vals.argmax(), vals.shape)
    res = minimize(
        lambda p: -_direct_log_evidence(f, y, *p),
        [grid[i], grid[j]],
        method="Nelder-Mead",
        options=dict(xatol=1e-9, fatol=1e-12, maxiter=4000),
    )
    return float(vals.max()), float(-res.fun)


@pytest.mark.parametrize(
    "n,d,rank",
    [(20, 3, 3), (8, 12, 8), (8, 12, 3)],  # N > D; N < D full row rank; N < D rank-deficient
)
def test_logme_equals_brute_force_evidence_maximum(n, d, rank):
    rng = np.random.default_rng(n * 100 + d * 10 + rank)
    f = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
    y = (f @ rng.normal(size=d) + rng.normal(size=n) > 0).astype(int)
    y[:2] = [0, 1]  # both classes present
    grid_max, refined = zip(*(_brute_force_max(f, (y == c).astype(float)) for c in (0, 1)))
    # LogME averages the per-class maxima and divides by N
    ours = logme(f, y)
    assert ours >= np.mean(grid_max) / n - 1e-9  # a fixed point of the updates is at least as good as any grid point
    assert ours == pytest.approx(np.mean(refined) / n, rel=1e-6, abs=1e-8)


def test_logme_ignores_label_values():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(40, 5))
    y = rng.integers(0, 3, size=40)
    assert logme(f, y) == pytest.approx(logme(f, np.array([10, 20, 30])[y]), rel=1e-12)


# ----------------------------------------------------------------------------------------------- rankings


def _features(separation: float, seed: int = 0, n: int = 300, d: int = 16, k: int = 3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    means = rng.normal(size=(k, d))
    return separation * means[y] + rng.normal(size=(n, d)), y


def _source_probs(flip: float, seed: int = 0, n: int = 300, k: int = 3, z: int = 5):
    """Source classes z = 2y (+1 at random) for a fraction 1 - flip of samples, uniform for the rest."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    zs = np.where(rng.random(n) < flip, rng.integers(0, z, size=n), (2 * y + rng.integers(0, 2, size=n)) % z)
    logits = 3.0 * np.eye(z)[zs] + rng.normal(size=(n, z))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True), y


@pytest.mark.parametrize("score", [logme, hscore])
def test_feature_scores_rank_informative_features_first(score):
    values = [score(*_features(sep)) for sep in (2.0, 0.7, 0.0)]  # strong, weak, random
    assert values[0] > values[1] > values[2], values


@pytest.mark.parametrize("score", [leep, lambda p, y: nce(p.argmax(1), y)])
def test_source_prob_scores_rank_correlated_heads_first(score):
    values = [score(*_source_probs(flip)) for flip in (0.0, 0.5, 1.0)]  # correlated, noisy, random
    assert values[0] > values[1] > values[2], values


def test_shrinkage_hscore_separates_where_plain_hscore_saturates():
    # N - 1 <= D: the plain H-score is ~K-1 for any features; the Ledoit-Wolf variant still ranks them
    good, y = _features(1.5, n=30, d=60)
    bad, _ = _features(0.0, n=30, d=60, seed=1)
    assert hscore(good, y) == pytest.approx(hscore(bad, y), rel=1e-6)
    assert hscore(good, y) == pytest.approx(2.0, rel=1e-6)
    assert hscore(good, y, shrinkage=True) > hscore(bad, y, shrinkage=True)


# ----------------------------------------------------------------------------------------------- registry


def test_registry_lists_all_scores_with_their_inputs():
    assert {"logme", "leep", "nce", "hscore"} <= set(SCORES.names())
    needs = {name: SCORES.get(name).needs for name in ("logme", "leep", "nce", "hscore")}
    assert needs == {"logme": "features", "hscore": "features", "leep": "source_probs", "nce": "source_labels"}
    assert all(isinstance(SCORES.get(n), Score) and SCORES.get(n).name == n for n in SCORES.names())


def test_score_all_computes_only_scores_with_inputs():
    f, y = _features(1.0, n=60)
    p, _ = _source_probs(0.3, n=60)
    assert set(score_all(features=f, labels=y)) == {"logme", "hscore"}
    only_probs = score_all(source_probs=p, labels=y)
    assert set(only_probs) == {"leep", "nce"}
    assert only_probs["nce"] == nce(p.argmax(1), y)
    assert only_probs["leep"] == leep(p, y)
    both = score_all(f, p, labels=y)
    assert set(both) == {"logme", "hscore", "leep", "nce"}
    assert both["logme"] == logme(f, y) and both["hscore"] == hscore(f, y)
    assert set(score_all(source_labels=p.argmax(1), labels=y)) == {"nce"}
    assert set(score_all(f, p, labels=y, names=["nce"])) == {"nce"}


def test_score_all_errors_on_named_score_without_inputs():
    f, y = _features(1.0, n=30)
    with pytest.raises(DataError, match="source_probs"):
        score_all(features=f, labels=y, names=["leep"])
    with pytest.raises(KeyError, match="unknown transferability score"):
        score_all(features=f, labels=y, names=["nope"])


def test_length_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="one per sample"):
        logme(np.zeros((5, 2)), np.zeros(4, dtype=int))
