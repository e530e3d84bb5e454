"""Transferability scores that rank candidate pretrained checkpoints for a target classification task.

Every score is "higher is better" and needs one forward pass of the target data through a checkpoint:
penultimate ``features`` (LogME, H-score) or source-head ``source_probs`` (LEEP; NCE uses their argmax).
All computation is float64, vectorised numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from hftransfer.errors import DataError
from hftransfer.registry import Registry

__all__ = ["Score", "SCORES", "logme", "leep", "nce", "hscore", "score_all"]

Needs = Literal["features", "source_probs", "source_labels"]


@dataclass(frozen=True)
class Score:
    """A registered score: ``fn(inputs, labels) -> float``, where ``inputs`` is what ``needs`` names."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    needs: Needs
    higher_is_better: bool = True


SCORES: Registry[Score] = Registry("transferability score")


# ----------------------------------------------------------------------------------------------- input checks


def _as_labels(labels: np.ndarray, n: int | None = None, what: str = "labels") -> tuple[np.ndarray, int]:
    """1-D labels -> (codes in [0, K), K); any label values are allowed, only equality matters."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{what} must be 1-D [N], got shape {labels.shape}; pass one class id per sample")
    if labels.shape[0] == 0:
        raise DataError(f"{what} is empty; scores need at least one target sample")
    if n is not None and labels.shape[0] != n:
        raise DataError(f"{what} has {labels.shape[0]} entries but the inputs have {n} rows; pass one per sample")
    classes, codes = np.unique(labels, return_inverse=True)
    return codes.reshape(-1), len(classes)


def _as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"{what} must be 2-D [N, D], got shape {x.shape}; flatten or pool per sample first")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{what} contains NaN or inf; check the forward pass (e.g. fp16 overflow)")
    return x


def _one_hot(codes: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((codes.shape[0], k))
    out[np.arange(codes.shape[0]), codes] = 1.0
    return out


# ----------------------------------------------------------------------------------------------- LogME


def _logme_evidence(
    features: np.ndarray, targets: np.ndarray, max_iter: int = 1000, tol: float = 1e-10
) -> np.ndarray:
    """Maximised log evidence of y = F w + e, w ~ N(0, 1/alpha I), e ~ N(0, 1/beta I), one value per target column.

    The fixed-point updates (MacKay 1992; You et al. 2021, Alg. 1) run for all K columns at once on the thin SVD
    F = U diag(s) V^T, so both N < D and N > D cost O(N D min(N, D)) once, then O(min(N, D) K) per iteration.
    """
    n = features.shape[0]
    u, s, _ = np.linalg.svd(features, full_matrices=False)  # u [N, r], r = min(N, D)
    sigma = (s**2)[:, None]  # eigenvalues of F^T F, [r, 1]; the other D - r are 0
    z2 = (u.T @ targets) ** 2  # squared coordinates of y in the column space of F, [r, K]
    # part of ||y||^2 outside the column space of F (non-zero only when N > rank)
    y_perp = np.maximum((targets**2).sum(0) - z2.sum(0), 0.0)
    tiny = np.finfo(np.float64).tiny

    # Everything but the scale depends on lam = alpha / beta only: A = beta (lam I + F^T F) and the posterior
    # mean m = (lam I + F^T F)^-1 F^T y. lam -> inf (w = 0 is best) or lam -> 0 (noise-free interpolation,
    # N <= D) are limits the evidence approaches smoothly, so lam is kept in a wide band around the spectrum.
    scale = float(sigma.max()) if sigma.size and sigma.max() > 0 else 1.0
    lam_min, lam_max = 1e-12 * scale, 1e12 * scale

    def stats(lam: np.ndarray):
        denom = lam + sigma  # [r, K]
        gamma = (sigma / denom).sum(0)  # effective number of parameters
        mm = (sigma * z2 / denom**2).sum(0)  # m^T m
        res = np.maximum(y_perp + (lam**2 * z2 / denom**2).sum(0), tiny)  # ||F m - y||^2
        return gamma, mm, res

    lam = np.full(targets.shape[1], scale)
    for _ in range(max_iter):
        gamma, mm, res = stats(lam)
        # alpha = gamma / m^T m and beta = (N - gamma) / ||F m - y||^2 set d evidence / d(alpha, beta) = 0
        ratio = np.divide(gamma * res, mm * (n - gamma), out=np.full_like(lam, lam_max), where=mm > 0)
        new_lam = np.clip(ratio, lam_min, lam_max)
        done = np.all(np.abs(new_lam - lam) <= tol * new_lam)
        lam = new_lam
        if done:
            break

    gamma, mm, res = stats(lam)
    beta = (n - gamma) / res
    alpha = lam * beta
    # log p(y | F, alpha, beta), Bishop PRML Eq. (3.86), as in You et al. 2021, with
    # D/2 log alpha - 1/2 log|alpha I + beta F^T F| = -1/2 sum log(1 + sigma / lam)
    return (
        0.5 * n * np.log(beta)
        - 0.5 * np.log1p(sigma / lam).sum(0)
        - 0.5 * beta * res
        - 0.5 * alpha * mm
        - 0.5 * n * np.log(2 * np.pi)
    )


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME (You et al., ICML 2021): maximum log evidence of a Bayesian linear model per one-hot class column.

    Returns the class-averaged log evidence divided by N (higher is better).
    """
    f = _as_matrix(features, "features")
    codes, k = _as_labels(labels, f.shape[0])
    evidence = _logme_evidence(f, _one_hot(codes, k))
    return float(evidence.mean() / f.shape[0])


# ----------------------------------------------------------------------------------------------- LEEP


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP (Nguyen et al., ICML 2020): mean log-likelihood of the "expected empirical predictor"
    sum_z P(y|z) theta_z(x) built from the source head's probabilities theta(x)."""
    theta = _as_matrix(source_probs, "source_probs")
    if np.any(theta < 0) or not np.allclose(theta.sum(1), 1.0, atol=1e-4):
        raise DataError("source_probs rows must be probabilities summing to 1; apply softmax to the logits first")
    codes, k = _as_labels(labels, theta.shape[0])
    n = theta.shape[0]
    joint = _one_hot(codes, k).T @ theta / n  # empirical joint P(y, z), [K, Z]
    p_z = joint.sum(0, keepdims=True)  # P(z)
    cond = np.divide(joint, p_z, out=np.zeros_like(joint), where=p_z > 0)  # empirical conditional P(y | z)
    eep = np.einsum("nz,nz->n", theta, cond[codes])  # EEP likelihood sum_z P(y_i | z) theta_z(x_i)
    return float(np.log(eep).mean())


# ----------------------------------------------------------------------------------------------- NCE


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE (Tran et al., ICCV 2019): negative conditional entropy -H(Y | Z) of target labels Y given
    source labels Z (e.g. argmax of the source head), from their empirical joint distribution."""
    z_codes, n_z = _as_labels(source_labels, what="source_labels")
    y_codes, n_y = _as_labels(labels, z_codes.shape[0])
    n = y_codes.shape[0]
    joint = np.bincount(z_codes * n_y + y_codes, minlength=n_z * n_y).reshape(n_z, n_y) / n  # P(z, y)
    p_z = joint.sum(1, keepdims=True)
    cond = np.divide(joint, p_z, out=np.ones_like(joint), where=joint > 0)  # P(y | z); log 1 = 0 where P(z,y) = 0
    return float((joint * np.log(cond)).sum())  # -H(Y|Z) = sum P(z,y) log P(y|z)


# ----------------------------------------------------------------------------------------------- H-score


def hscore(features: np.ndarray, labels: np.ndarray, shrinkage: bool = False) -> float:
    """H-score (Bao et al., ICIP 2019): tr(cov(f)^+ cov(E[f|y])), with a pseudo-inverse.

    ``shrinkage=True`` is the regularised H_alpha of Ibrahim et al. 2022 ("Newer is not always better"):
    tr(cov_alpha(f)^-1 (1 - alpha) cov(E[f|y])) with the Ledoit-Wolf estimate and its shrinkage alpha;
    use it when N is not much larger than D, where the plain score saturates near K - 1.
    """
    f = _as_matrix(features, "features")
    codes, k = _as_labels(labels, f.shape[0])
    n = f.shape[0]
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    mu = f.mean(0)
    class_means = (_one_hot(codes, k).T @ f) / counts[:, None]  # E[f | y], [K, D]
    dm = class_means - mu
    cov_g = (dm * (counts / n)[:, None]).T @ dm  # cov of g(x) = E[f | y(x)] over samples (1/N normalisation)
    if shrinkage:
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf(assume_centered=False).fit(f)
        cov_f = lw.covariance_  # (1 - alpha) S + alpha mu I, S with 1/N normalisation
        cov_g = (1.0 - lw.shrinkage_) * cov_g
    else:
        fc = f - mu
        cov_f = fc.T @ fc / n
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))


# ----------------------------------------------------------------------------------------------- registry


SCORES.register("logme", Score("logme", logme, "features"))
SCORES.register("hscore", Score("hscore", hscore, "features"))
SCORES.register("leep", Score("leep", leep, "source_probs"))
SCORES.register("nce", Score("nce", nce, "source_labels"))


def score_all(
    features: np.ndarray | None = None,
    source_probs: np.ndarray | None = None,
    *,
    labels: np.ndarray,
    source_labels: np.ndarray | None = None,
    names: list[str] | None = None,
) -> dict[str, float]:
    """Compute every registered score whose inputs are given (or only ``names``); NCE uses ``source_labels``,
    else the argmax of ``source_probs``. Asking by name for a score whose input is missing is an error."""
    if source_labels is None and source_probs is not None:
        source_labels = np.asarray(source_probs).argmax(1)
    available = {"features": features, "source_probs": source_probs, "source_labels": source_labels}
    wanted = SCORES.names() if names is None else list(names)
    out: dict[str, float] = {}
    for name in wanted:
        score = SCORES.get(name)
        inputs = available[score.needs]
        if inputs is None:
            if names is None:
                continue
            raise DataError(f"score {name!r} needs {score.needs}; pass {score.needs}= to score_all")
        out[name] = score.fn(inputs, labels)
    return out
