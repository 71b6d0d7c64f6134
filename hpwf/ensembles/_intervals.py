"""Conformal intervals beyond split conformal: Mondrian (adaptive), CQR, jackknife+ and CV+.

All work on arrays of saved predictions, nothing refits.

- **Mondrian normalised split conformal** (Vovk et al.; crepes' ``ConformalRegressor`` with
  ``bins``): scores |y - mu| / (sigma + beta) on the calibration set, one quantile per bin of
  the predicted sigma (bin edges from the calibration sigmas' quantiles) or per user group, so
  coverage holds within each bin, not only on average.
- **CQR** (Romano et al. 2019): from saved quantile predictions ``lower``/``upper``, scores
  max(lower - y, y - upper); the interval [lower - Q, upper + Q].
- **Jackknife+-after-bootstrap** (Kim, Xu & Barber 2020) and **CV+** (Barber et al. 2021):
  each member saves predictions on its out-of-bag training rows (split "oob", with ``index``,
  the row numbers in the shared training set). For a training row i, mu_{-i} aggregates the
  members that did not train on i; with R_i = |y_i - mu_{-i}(x_i)| (or / sigma_{-i}(x_i),
  normalised), the interval at x is [the floor(alpha (n + 1))-th smallest of
  mu_{-i}(x) - R_i, the ceil((1 - alpha)(n + 1))-th smallest of mu_{-i}(x) + R_i]. With
  members trained on folds every row is out of one member's fold: that is CV+. No row is held
  out from training for calibration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike

from hpwf.ensembles._conformal import Conformal


def _rank(n: int, level: float) -> int:
    return math.ceil((n + 1) * level - 1e-9)


POINTS_PER_BIN = 50  # bench/RESULTS.md section 7b: one per 100 left sigma regions under-covered


def default_bins(n_cal: int, per_bin: int = POINTS_PER_BIN, most: int = 10) -> int:
    """Mondrian's default number of sigma bins: one per ``per_bin`` calibration points, 1 to ``most``.

    A bin of m calibration points covers ceil((m + 1) level) / (m + 1) on average (0.961 at 95 %
    with m = 50, 0.950 with m = 100) and its coverage varies by sqrt(level (1 - level) / (m + 2))
    from one calibration draw to the next (0.042 at 90 % with m = 50): smaller bins adapt more to
    a sigma that is wrong in places but add that noise. Over 10 seeds (bench uq_methods) one bin
    per 50 points covered every sigma decile as well as the true model did; one per 100 did not.

    Example:
        >>> default_bins(88), default_bins(114), default_bins(500), default_bins(5000)
        (1, 2, 10, 10)
    """
    return max(1, min(most, n_cal // per_bin))


def sigma_bins(cal_sigma: ArrayLike, test_sigma: ArrayLike, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin labels of calibration and test points by the calibration sigmas' quantiles."""
    cal = np.asarray(cal_sigma, dtype=float)
    edges = np.quantile(cal, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, cal, side="right"), np.searchsorted(edges, np.asarray(test_sigma, float), side="right")


def mondrian(cal_y: ArrayLike, cal_mean: ArrayLike, cal_sigma: ArrayLike, mean: ArrayLike, sigma: ArrayLike,
             level: float, beta: float = 0.0, cal_bins: ArrayLike | None = None,
             test_bins: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised split-conformal interval mu -/+ q_b (sigma + beta), q_b from bin b's calibration points.

    Without bins it is split conformal with the score |y - mu| / (sigma + beta). A test bin with
    no calibration point gets an unbounded interval.

    Example:
        >>> lo, hi = mondrian([1.0, 2.0, 10.0, 20.0], [0.0] * 4, [1.0] * 4, [0.0, 0.0], [1.0, 1.0], 0.5,
        ...                   cal_bins=[0, 0, 1, 1], test_bins=[0, 1])
        >>> hi.tolist()
        [2.0, 20.0]
    """
    cy, cm, cs = (np.asarray(a, dtype=float) for a in (cal_y, cal_mean, cal_sigma))
    mu, s = np.asarray(mean, dtype=float), np.asarray(sigma, dtype=float)
    cb = np.zeros(len(cy), int) if cal_bins is None else np.asarray(cal_bins)
    tb = np.zeros(len(mu), int) if test_bins is None else np.asarray(test_bins)
    q = np.full(len(mu), np.inf)
    for b in np.unique(tb):
        inside = cb == b
        if inside.any():
            q[tb == b] = Conformal.fit(cy[inside], cm[inside], (cs[inside] + beta) ** 2).multiplier(level)
    half = q * (s + beta)
    return mu - half, mu + half


def cqr(cal_y: ArrayLike, cal_lower: ArrayLike, cal_upper: ArrayLike, lower: ArrayLike, upper: ArrayLike,
        level: float) -> tuple[np.ndarray, np.ndarray]:
    """Conformalised quantile regression: [lower - Q, upper + Q], Q the ceil((n+1) level)-th score.

    Example:
        >>> cqr([0.0, 1.0, 5.0], [0.0] * 3, [2.0] * 3, [0.0], [2.0], 0.5)[1].tolist()  # scores -1, -0, 3
        [2.0]
    """
    y, lo, hi = (np.asarray(a, dtype=float) for a in (cal_y, cal_lower, cal_upper))
    scores = np.sort(np.maximum(lo - y, y - hi))
    r = _rank(len(scores), level)
    big_q = math.inf if r > len(scores) else float(scores[max(r, 1) - 1])
    return np.asarray(lower, dtype=float) - big_q, np.asarray(upper, dtype=float) + big_q


@dataclass(frozen=True)
class OutOfBag:
    """One member's predictions on its out-of-bag rows of the shared training set."""

    index: np.ndarray  # row numbers in the training set
    y: np.ndarray
    mean: np.ndarray
    var: np.ndarray | None = None


def _leave_out(oob: Sequence[OutOfBag], test_mean: np.ndarray, test_var: np.ndarray | None,
               weights: np.ndarray) -> tuple[Any, ...]:
    """Per training row i with a member out of bag: y_i, mu_{-i}(x_i), s_{-i}(x_i), mu_{-i}(X), s_{-i}(X)."""
    rows = np.unique(np.concatenate([o.index for o in oob]))
    k, n = len(oob), len(rows)
    where = {int(r): j for j, r in enumerate(rows)}
    w = np.zeros((n, k))
    own_m, own_m2, own_v, y = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k)), np.zeros(n)
    for m, o in enumerate(oob):
        j = np.array([where[int(r)] for r in o.index], dtype=int)
        w[j, m] = weights[m]
        own_m[j, m] = o.mean
        own_m2[j, m] = o.mean**2
        own_v[j, m] = 0.0 if o.var is None else o.var
        y[j] = o.y
    w /= w.sum(axis=1, keepdims=True)
    mu_i = (w * own_m).sum(1)
    var_i = (w * own_v).sum(1) + np.maximum((w * own_m2).sum(1) - mu_i**2, 0.0)
    mu_x = w @ test_mean  # (n, N): the leave-row-out ensemble at every test point
    var_x = None
    if test_var is not None:
        var_x = w @ test_var + np.maximum(w @ test_mean**2 - mu_x**2, 0.0)
    return y, mu_i, var_i, mu_x, var_x


def jackknife_plus(oob: Sequence[OutOfBag], test_mean: ArrayLike, level: float, test_var: ArrayLike | None = None,
                   weights: ArrayLike | None = None, normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Jackknife+-after-bootstrap (or CV+, with fold members) intervals on the test points.

    Args:
        oob: each member's out-of-bag predictions (same order as ``test_mean``'s rows).
        test_mean: the members' test means, shape (K, N); ``test_var`` their variances.
        level: coverage 1 - alpha.
        weights: the members' weights (default equal).
        normalised: residuals divided by the leave-row-out sigma (needs variances).

    Returns:
        (lower, upper), each (N,); unbounded where the ranks fall outside 1..n.
    """
    tm = np.atleast_2d(np.asarray(test_mean, dtype=float))
    tv = None if test_var is None else np.atleast_2d(np.asarray(test_var, dtype=float))
    w = np.ones(len(oob)) if weights is None else np.asarray(weights, dtype=float)
    y, mu_i, var_i, mu_x, var_x = _leave_out(oob, tm, tv, w)
    resid = np.abs(y - mu_i)
    if normalised:
        if var_x is None:
            raise ValueError("normalised jackknife+ needs the members' variances")
        resid = resid / np.sqrt(np.maximum(var_i, 1e-12))
        half = resid[:, None] * np.sqrt(np.maximum(var_x, 1e-12))
    else:
        half = resid[:, None] * np.ones_like(mu_x)
    n = len(y)
    hi_rank, lo_rank = _rank(n, level), math.floor((1 - level) * (n + 1) + 1e-9)
    upper = np.full(tm.shape[1], np.inf) if hi_rank > n else np.sort(mu_x + half, axis=0)[hi_rank - 1]
    lower = np.full(tm.shape[1], -np.inf) if lo_rank < 1 else np.sort(mu_x - half, axis=0)[lo_rank - 1]
    return lower, upper
