"""Exact mixture scores and interval diagnostics: what a statistician signs beside marginal PICP.

A regression ensemble is a Gaussian mixture sum_k w_k N(mu_k, s_k^2). ``uq.regression_metrics``
scores the moment-matched Gaussian N(mean, aleatoric + epistemic) ("gaussian" keys); here the
mixture itself is scored: NLL by log-sum-exp, CRPS in closed form (Grimit et al. 2006, checked
against scoringrules' ``crps_mixnorm``), central intervals from the mixture's quantiles.

Intervals (any method) are judged by (`interval_metrics`): marginal coverage, mean width, the
Winkler interval score (width + 2/alpha times the miss), and conditional coverage: by decile
of the predicted sigma, by decile of a 1-D input, by user-given group, and the worst slab (the
lowest coverage over slabs {a <= v.x <= b} holding at least 20 % of the points, v over a few
random directions and the sigma axis; Cauchois et al. 2021).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from hpwf.ensembles import _uq as uq

SLAB_SHARE = 0.2  # a slab holds at least this share of the points
SLAB_DIRECTIONS = 8


def _components(means: ArrayLike, variances: ArrayLike | None,
                weights: ArrayLike | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = np.atleast_2d(np.asarray(means, dtype=float))
    v = np.zeros_like(m) if variances is None else np.atleast_2d(np.asarray(variances, dtype=float))
    return m, np.maximum(v, 1e-12), uq.normalised_weights(weights, m.shape[0])


def mixture_nll(y: ArrayLike, means: ArrayLike, variances: ArrayLike | None = None,
                weights: ArrayLike | None = None) -> float:
    """Mean negative log-likelihood of y under the mixture (log-sum-exp over members).

    Example:
        >>> round(mixture_nll([0.0], [[0.0]], [[1.0]]), 6)  # one member: the Gaussian NLL
        0.918939
    """
    from scipy.special import logsumexp

    m, v, w = _components(means, variances, weights)
    y = np.asarray(y, dtype=float)
    logpdf = -0.5 * (np.log(2 * np.pi * v) + (y[None, :] - m) ** 2 / v)
    return float(-np.mean(logsumexp(logpdf, axis=0, b=w[:, None])))


def _a(mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """E|X| for X ~ N(mu, var)."""
    from scipy.stats import norm

    s = np.sqrt(var)
    return mu * (2 * norm.cdf(mu / s) - 1) + 2 * s * norm.pdf(mu / s)


def mixture_crps(y: ArrayLike, means: ArrayLike, variances: ArrayLike | None = None,
                 weights: ArrayLike | None = None) -> float:
    """Mean closed-form CRPS of the mixture: sum_i w_i A(y - mu_i, s_i^2) - 1/2 sum_ij w_i w_j A(mu_i - mu_j, s_i^2 + s_j^2).

    Example:
        >>> round(mixture_crps([0.0], [[0.0]], [[1.0]]), 6)  # one member: the Gaussian CRPS
        0.233695
    """
    m, v, w = _components(means, variances, weights)
    y = np.asarray(y, dtype=float)
    first = w @ _a(y[None, :] - m, v)
    second = np.zeros_like(y)
    for i in range(len(w)):  # O(K^2 N), K members
        second += w[i] * (w @ _a(m[i][None, :] - m, v[i][None, :] + v))
    return float(np.mean(first - 0.5 * second))


def mixture_quantile(p: float, means: ArrayLike, variances: ArrayLike | None = None,
                     weights: ArrayLike | None = None) -> np.ndarray:
    """The mixture's p-quantile at every point (bisection on its CDF to 1e-10 of the spread).

    Example:
        >>> round(float(mixture_quantile(0.975, [[0.0]], [[1.0]])[0]), 4)
        1.96
    """
    from scipy.special import ndtr

    m, v, w = _components(means, variances, weights)
    s = np.sqrt(v)
    lo, hi = (m - 40 * s).min(axis=0), (m + 40 * s).max(axis=0)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = w @ ndtr((mid[None, :] - m) / s) < p
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def mixture_metrics(y: ArrayLike, means: ArrayLike, variances: ArrayLike | None = None,
                    weights: ArrayLike | None = None) -> dict[str, float]:
    """The exact mixture's scores: mixture_nll, mixture_crps, mixture_picp_68/90/95, mixture_width_*."""
    y = np.asarray(y, dtype=float)
    out = {"mixture_nll": mixture_nll(y, means, variances, weights),
           "mixture_crps": mixture_crps(y, means, variances, weights)}
    for key, level in (("68", 0.6827), ("90", 0.90), ("95", 0.95)):
        lo = mixture_quantile((1 - level) / 2, means, variances, weights)
        hi = mixture_quantile((1 + level) / 2, means, variances, weights)
        out[f"mixture_picp_{key}"] = float(np.mean((lo <= y) & (y <= hi)))
        out[f"mixture_width_{key}"] = float(np.mean(hi - lo))
    return out


def winkler(y: ArrayLike, lower: ArrayLike, upper: ArrayLike, level: float) -> float:
    """Mean interval (Winkler) score at ``level``: width + (2 / alpha) * distance outside; lower is better.

    Example:
        >>> round(winkler([0.0, 3.0], [-1.0, -1.0], [1.0, 1.0], 0.9), 9)  # widths 2, 2; a miss by 2 costs 40
        22.0
    """
    y, lo, hi = (np.asarray(a, dtype=float) for a in (y, lower, upper))
    alpha = 1 - level
    miss = np.maximum(lo - y, 0) + np.maximum(y - hi, 0)
    return float(np.mean(hi - lo + 2 / alpha * miss))


def group_coverage(covered: np.ndarray, groups: np.ndarray) -> dict[Any, float]:
    """Coverage within each group label."""
    return {g.item() if hasattr(g, "item") else g: float(covered[groups == g].mean()) for g in np.unique(groups)}


def deciles(values: ArrayLike, bins: int = 10) -> np.ndarray:
    """Bin index 0..bins-1 of each value by its empirical quantile (ties share a bin)."""
    v = np.asarray(values, dtype=float)
    ranks = np.argsort(np.argsort(v, kind="stable"), kind="stable")
    return np.minimum(ranks * bins // max(len(v), 1), bins - 1)


def worst_slab_1d(covered: np.ndarray, values: np.ndarray, share: float = SLAB_SHARE) -> float:
    """Lowest coverage over contiguous runs (sorted by ``values``) of at least ``share`` of the points."""
    c = covered[np.argsort(values, kind="stable")].astype(float)
    n = len(c)
    if n > 2000:  # O(n^2): thin evenly
        c = c[np.linspace(0, n - 1, 2000).astype(int)]
        n = len(c)
    width = max(1, int(np.ceil(share * n)))
    sums = np.concatenate([[0.0], np.cumsum(c)])
    worst = 1.0
    for start in range(n - width + 1):
        ends = np.arange(start + width, n + 1)
        worst = min(worst, float(((sums[ends] - sums[start]) / (ends - start)).min()))
    return worst


def interval_metrics(y: ArrayLike, lower: ArrayLike, upper: ArrayLike, level: float, sigma: ArrayLike,
                     x: ArrayLike | None = None, groups: ArrayLike | None = None,
                     suffix: str = "90") -> tuple[dict[str, float], dict[str, list[float]]]:
    """Marginal and conditional figures of intervals at ``level``.

    Returns:
        (flat numbers for ``uq_metrics.json``'s model entry: ``picp_S``, ``width_S``, ``winkler_S``,
        ``worst_sigma_decile_S``, ``worst_x_bin_S``, ``worst_group_S``, ``worst_slab_S``;
        the per-bin lists: ``sigma_deciles_S``, ``x_bins_S``, ``groups_S``), S = ``suffix``.
    """
    y, lo, hi, s = (np.asarray(a, dtype=float).ravel() for a in (y, lower, upper, sigma))
    covered = (lo <= y) & (y <= hi)
    flat = {f"picp_{suffix}": float(covered.mean()), f"width_{suffix}": float(np.mean(hi - lo)),
            f"winkler_{suffix}": winkler(y, lo, hi, level)}
    lists: dict[str, list[float]] = {}
    by_sigma = group_coverage(covered, deciles(s))
    lists[f"sigma_deciles_{suffix}"] = list(by_sigma.values())
    flat[f"worst_sigma_decile_{suffix}"] = min(by_sigma.values())
    directions = [s]
    if x is not None:
        xs = np.asarray(x, dtype=float).reshape(len(y), -1)
        if xs.shape[1] == 1:
            by_x = group_coverage(covered, deciles(xs[:, 0]))
            lists[f"x_bins_{suffix}"] = list(by_x.values())
            flat[f"worst_x_bin_{suffix}"] = min(by_x.values())
            directions.append(xs[:, 0])
        else:
            rng = np.random.default_rng(0)
            directions += [xs @ v for v in rng.normal(size=(SLAB_DIRECTIONS, xs.shape[1]))]
    if groups is not None:
        by_group = group_coverage(covered, np.asarray(groups).ravel())
        lists[f"groups_{suffix}"] = list(by_group.values())
        flat[f"worst_group_{suffix}"] = min(by_group.values())
    flat[f"worst_slab_{suffix}"] = min(worst_slab_1d(covered, d) for d in directions)
    return flat, lists
