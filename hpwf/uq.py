"""Uncertainty quantification for bootstrap ensembles: aggregation and metrics (plain numpy).

Regression members are Gaussians (mean, variance) aggregated as a uniform mixture; classification
members are probability vectors. Metrics take arrays and return a float (or a per-sample array).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import erf, ndtri

_VAR_FLOOR = 1e-12
_PROB_FLOOR = 1e-12
_DEFAULT_LEVELS = np.linspace(0.05, 0.95, 19)
_FINE_LEVELS = np.linspace(0.01, 0.99, 99)


@dataclass(frozen=True)
class Predictive:
    """Aggregated Gaussian predictive distribution, arrays of shape (N,)."""

    mean: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """Total predictive variance: aleatoric + epistemic."""
        return self.aleatoric + self.epistemic

    @property
    def std(self) -> np.ndarray:
        """Total predictive standard deviation."""
        return np.sqrt(self.total)


def mixture(means: ArrayLike, variances: ArrayLike | None = None) -> Predictive:
    """Aggregate K members' Gaussian predictions as a uniform mixture.

    Args:
        means: member means, shape (K, N).
        variances: member variances, shape (K, N), or None for mean-only members (aleatoric 0).

    Returns:
        Predictive with mean = mean of means, aleatoric = mean of variances,
        epistemic = population variance (ddof=0) of means.

    Example:
        >>> p = mixture([[0.0], [2.0]], [[1.0], [3.0]])
        >>> float(p.mean[0]), float(p.aleatoric[0]), float(p.epistemic[0]), float(p.total[0])
        (1.0, 2.0, 1.0, 3.0)
    """
    m = np.atleast_2d(np.asarray(means, dtype=float))
    if variances is None:
        alea = np.zeros(m.shape[1])
    else:
        v = np.atleast_2d(np.asarray(variances, dtype=float))
        if v.shape != m.shape:
            raise ValueError(f"variances shape {v.shape} != means shape {m.shape}")
        alea = v.mean(axis=0)
    return Predictive(mean=m.mean(axis=0), aleatoric=alea, epistemic=m.var(axis=0))


def _arrays(*xs: ArrayLike) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(x, dtype=float) for x in xs)


def _z(level: float) -> float:  # two-sided standard-normal quantile of a central interval
    return float(ndtri((1.0 + level) / 2.0))


def gaussian_nll(y: ArrayLike, mean: ArrayLike, var: ArrayLike) -> float:
    """Average negative log-likelihood of y under N(mean, var), var floored at 1e-12.

    Example:
        >>> round(gaussian_nll([0.0], [0.0], [1.0]), 6)  # 0.5 * log(2 pi)
        0.918939
    """
    ys, ms, vs = _arrays(y, mean, var)
    vs = np.maximum(vs, _VAR_FLOOR)
    return float(np.mean(0.5 * (np.log(2 * np.pi * vs) + (ys - ms) ** 2 / vs)))


def gaussian_crps(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> float:
    """Average closed-form CRPS of N(mean, std^2): s[z(2Phi(z)-1) + 2phi(z) - 1/sqrt(pi)].

    Example:
        >>> round(gaussian_crps([0.0], [0.0], [1.0]), 6)  # sqrt(2/pi) - 1/sqrt(pi)
        0.233695
    """
    y, mean, std = _arrays(y, mean, std)
    std = np.maximum(std, np.sqrt(_VAR_FLOOR))
    z = (y - mean) / std
    cdf = 0.5 * (1.0 + erf(z / np.sqrt(2.0)))
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    return float(np.mean(std * (z * (2 * cdf - 1) + 2 * pdf - 1 / np.sqrt(np.pi))))


def _abs_z(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.abs(y - mean) / np.maximum(std, np.sqrt(_VAR_FLOOR))


def picp(y: ArrayLike, mean: ArrayLike, std: ArrayLike, level: float) -> float:
    """Coverage (PICP): fraction of y within mean +/- z*std, z = Phi^-1((1 + level) / 2)."""
    y, mean, std = _arrays(y, mean, std)
    return float(np.mean(_abs_z(y, mean, std) <= _z(level)))


def interval_width(std: ArrayLike, level: float) -> float:
    """Average width 2*z*std of the central `level` interval (sharpness)."""
    return float(np.mean(2.0 * _z(level) * np.asarray(std, dtype=float)))


def calibration_curve(
    y: ArrayLike, mean: ArrayLike, std: ArrayLike, levels: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Expected vs observed central-interval coverage.

    Args:
        levels: expected coverage levels; default np.linspace(0.05, 0.95, 19).

    Returns:
        (expected, observed), both shape (L,).

    Example:
        >>> exp, obs = calibration_curve([0.0, 3.0], [0.0, 0.0], [1.0, 1.0], [0.5, 0.99])
        >>> obs.tolist()
        [0.5, 0.5]
    """
    y, mean, std = _arrays(y, mean, std)
    expected = _DEFAULT_LEVELS.copy() if levels is None else np.asarray(levels, dtype=float)
    zq = ndtri((1.0 + expected) / 2.0)
    az = _abs_z(y, mean, std).ravel()
    observed = (az[None, :] <= zq[:, None]).mean(axis=1)
    return expected, observed


def miscalibration_area(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> float:
    """Mean |observed - expected| coverage over levels np.linspace(0.01, 0.99, 99)."""
    exp, obs = calibration_curve(y, mean, std, _FINE_LEVELS)
    return float(np.mean(np.abs(obs - exp)))


def mace(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> float:
    """Mean absolute calibration error over the default 19 levels (0.05..0.95)."""
    exp, obs = calibration_curve(y, mean, std)
    return float(np.mean(np.abs(obs - exp)))


def regression_metrics(y: ArrayLike, mean: ArrayLike, var: ArrayLike) -> dict[str, float]:
    """Accuracy, proper scores, coverage, sharpness and calibration of Gaussian predictions.

    Keys: rmse, mae, nll, crps, picp_68/90/95, width_68/90/95, miscalibration_area, mace, n
    (68 is level 0.6827, i.e. +/-1 sigma).

    Example:
        >>> p = mixture([[0.0, 1.0], [0.2, 1.2]], [[1.0, 1.0], [1.0, 1.0]])
        >>> m = regression_metrics([0.1, 1.1], p.mean, p.total)
        >>> m["rmse"], m["n"]
        (0.0, 2.0)
    """
    y, mean, var = _arrays(y, mean, var)
    std = np.sqrt(np.maximum(var, 0.0))
    err = y - mean
    out: dict[str, float] = {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "nll": gaussian_nll(y, mean, var),
        "crps": gaussian_crps(y, mean, std),
    }
    levels = {"68": 0.6827, "90": 0.90, "95": 0.95}
    out.update({f"picp_{k}": picp(y, mean, std, lv) for k, lv in levels.items()})
    out.update({f"width_{k}": interval_width(std, lv) for k, lv in levels.items()})
    out["miscalibration_area"] = miscalibration_area(y, mean, std)
    out["mace"] = mace(y, mean, std)
    out["n"] = float(y.size)
    return out


def predictive_entropy(probs: ArrayLike) -> np.ndarray:
    """Per-sample entropy (nats) of probs, shape (N, C) -> (N,)."""
    p = np.asarray(probs, dtype=float)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def mutual_information(member_probs: ArrayLike) -> np.ndarray:
    """Per-sample epistemic uncertainty (BALD): H(mean_k p_k) - mean_k H(p_k), clipped at 0.

    Example:
        >>> round(float(mutual_information([[[1.0, 0.0]], [[0.0, 1.0]]])[0]), 6)  # log 2
        0.693147
    """
    p = np.asarray(member_probs, dtype=float)
    mi = predictive_entropy(p.mean(axis=0)) - predictive_entropy(p).mean(axis=0)
    return np.maximum(mi, 0.0)


def expected_calibration_error(y: ArrayLike, probs: ArrayLike, bins: int = 15) -> float:
    """Top-label ECE with `bins` equal-width confidence bins over [0, 1] (right-closed bins)."""
    p = np.asarray(probs, dtype=float)
    y = np.asarray(y).astype(int)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, correct, bins) - np.bincount(idx, conf, bins))
    return float(gap.sum() / max(count.sum(), 1))


def classification_metrics(y: ArrayLike, member_probs: ArrayLike) -> dict[str, float]:
    """Metrics of the ensemble-mean classifier; member_probs (K, N, C) or (N, C) (K=1).

    Keys: accuracy, nll, brier, ece, entropy, mutual_information, n.

    Example:
        >>> m = classification_metrics([0, 1], [[1.0, 0.0], [0.0, 1.0]])
        >>> m["accuracy"], m["brier"], m["mutual_information"]
        (1.0, 0.0, 0.0)
    """
    mp = np.asarray(member_probs, dtype=float)
    if mp.ndim == 2:
        mp = mp[None]
    y = np.asarray(y).astype(int)
    p = mp.mean(axis=0)
    n = p.shape[0]
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    return {
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
        "nll": float(np.mean(-np.log(np.maximum(p[np.arange(n), y], _PROB_FLOOR)))),
        "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1))),
        "ece": expected_calibration_error(y, p),
        "entropy": float(np.mean(predictive_entropy(p))),
        "mutual_information": float(np.mean(mutual_information(mp))),
        "n": float(n),
    }


def summarize(metrics_by_model: dict[str, dict[str, float]]) -> str:
    """Fixed-width text table: rows = metric names (first-seen order), columns = models.

    Example:
        >>> print(summarize({"a": {"rmse": 0.5}}))
        metric       a
        rmse    0.5000
    """
    models = list(metrics_by_model)
    names = list(dict.fromkeys(k for m in metrics_by_model.values() for k in m))
    cells = [[format_metric(k, metrics_by_model[m].get(k)) for m in models] for k in names]
    w0 = max([len("metric"), *map(len, names)])
    widths = [max([len(m), *(len(r[j]) for r in cells)]) for j, m in enumerate(models)]
    lines = ["  ".join(["metric".ljust(w0), *(m.rjust(w) for m, w in zip(models, widths))])]
    for k, row in zip(names, cells):
        lines.append("  ".join([k.ljust(w0), *(c.rjust(w) for c, w in zip(row, widths))]))
    return "\n".join(lines)


COUNT_KEYS = ("n", "members")  # counts, stored as numbers: printed as integers


def format_metric(name: str, v: float | None) -> str:
    """A metric for a table: counts as integers, anything else to 4 decimals, a missing one as ``-``."""
    if v is None:
        return "-"
    return str(int(v)) if name in COUNT_KEYS or (isinstance(v, int) and not isinstance(v, bool)) else f"{v:.4f}"
