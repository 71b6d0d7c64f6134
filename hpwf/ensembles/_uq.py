"""Uncertainty quantification for ensembles: aggregation and metrics (plain numpy).

Regression members are Gaussians (mean, variance) aggregated as a (weighted) mixture;
classification members are probability vectors. Metrics take arrays and return a float (or a
per-sample array). Scores are averages over the points (never sums), and the calibration
metrics follow uncertainty-toolbox's definitions (central intervals, 100 expected proportions
``np.linspace(0, 1, 100)``), checked against its reference values in tests/test_uq.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from hpwf.ensembles._uq_classify import (
    classification_metrics, expected_calibration_error, mutual_information, normalised_weights, predictive_entropy,
    reliability_bins)

_VAR_FLOOR = 1e-12
_DEFAULT_LEVELS = np.linspace(0.05, 0.95, 19)
_TOOLBOX_PROPORTIONS = np.linspace(0.0, 1.0, 100)


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


def mixture(means: ArrayLike, variances: ArrayLike | None = None, weights: ArrayLike | None = None) -> Predictive:
    """Aggregate K members' Gaussian predictions as a mixture (uniform unless ``weights``).

    Args:
        means: member means, shape (K, N).
        variances: member variances, shape (K, N), or None for mean-only members (aleatoric 0).
        weights: K non-negative member weights (normalised here); default uniform.

    Returns:
        Predictive with mean = weighted mean of means, aleatoric = weighted mean of variances,
        epistemic = weighted population variance (ddof=0) of means.

    Example:
        >>> p = mixture([[0.0], [2.0]], [[1.0], [3.0]])
        >>> float(p.mean[0]), float(p.aleatoric[0]), float(p.epistemic[0]), float(p.total[0])
        (1.0, 2.0, 1.0, 3.0)
    """
    m = np.atleast_2d(np.asarray(means, dtype=float))
    w = normalised_weights(weights, m.shape[0])
    if variances is None:
        alea = np.zeros(m.shape[1])
    else:
        v = np.atleast_2d(np.asarray(variances, dtype=float))
        if v.shape != m.shape:
            raise ValueError(f"variances shape {v.shape} != means shape {m.shape}")
        alea = w @ v
    mean = w @ m
    return Predictive(mean=mean, aleatoric=alea, epistemic=w @ (m - mean) ** 2)


def _arrays(*xs: ArrayLike) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(x, dtype=float) for x in xs)


def _z(level: float) -> float:  # two-sided standard-normal quantile of a central interval
    return float(_ndtri((1.0 + level) / 2.0))


def gaussian_nll(y: ArrayLike, mean: ArrayLike, var: ArrayLike) -> float:
    """Negative log-likelihood of y under N(mean, var), averaged over the points (not summed).

    The same convention as uncertainty-toolbox's ``nll_gaussian`` (``scaled=True``, its
    default); var is floored at 1e-12.

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
    cdf = 0.5 * (1.0 + _erf(z / np.sqrt(2.0)))
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
    zq = _ndtri((1.0 + expected) / 2.0)
    az = _abs_z(y, mean, std).ravel()
    observed = (az[None, :] <= zq[:, None]).mean(axis=1)
    return expected, observed


def interval_proportions(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """uncertainty-toolbox's expected and observed proportions of central intervals.

    Expected: ``np.linspace(0, 1, 100)``; observed: the fraction of points whose normalised
    residual lies in [Phi^-1(0.5 - p/2), Phi^-1(0.5 + p/2)] (ends included).
    """
    y, mean, std = _arrays(y, mean, std)
    expected = _TOOLBOX_PROPORTIONS.copy()
    zq = _ndtri(0.5 + expected / 2.0)
    az = _abs_z(y, mean, std).ravel()
    return expected, (az[None, :] <= zq[:, None]).mean(axis=1)


def area_between(expected: ArrayLike, observed: ArrayLike) -> float:
    """Area between the piecewise-linear curve (expected, observed) and the diagonal.

    Segments that cross the diagonal are split where they cross, so this is the area of the
    regions between the two curves (what uncertainty-toolbox computes with polygons).

    Example:
        >>> area_between([0.0, 1.0], [1.0, 0.0])  # two triangles of area 1/4
        0.5
    """
    x = np.asarray(expected, dtype=float)
    d = np.asarray(observed, dtype=float) - x
    dx, d0, d1 = np.diff(x), d[:-1], d[1:]
    same = d0 * d1 >= 0
    span = np.abs(d0) + np.abs(d1)
    crossing = np.where(span > 0, (d0**2 + d1**2) / (2 * np.where(span > 0, span, 1.0)), 0.0)
    return float(np.sum(dx * np.where(same, span / 2.0, crossing)))


def miscalibration_area(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> float:
    """uncertainty-toolbox's miscalibration area: between the interval calibration curve and the diagonal."""
    return area_between(*interval_proportions(y, mean, std))


def mace(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> float:
    """Mean absolute calibration error (uncertainty-toolbox's, = its ECE for regression):
    mean |observed - expected| over the 100 central-interval proportions."""
    exp, obs = interval_proportions(y, mean, std)
    return float(np.mean(np.abs(obs - exp)))


def rmsce(y: ArrayLike, mean: ArrayLike, std: ArrayLike) -> float:
    """Root mean squared calibration error over the same 100 proportions (uncertainty-toolbox's)."""
    exp, obs = interval_proportions(y, mean, std)
    return float(np.sqrt(np.mean((obs - exp) ** 2)))


def regression_metrics(y: ArrayLike, mean: ArrayLike, var: ArrayLike) -> dict[str, float]:
    """Accuracy, proper scores, coverage, sharpness and calibration of Gaussian predictions.

    Keys: rmse, mae, nll, crps, picp_68/90/95, width_68/90/95, miscalibration_area, mace,
    ece (= mace: the regression calibration error to read), rmsce, n (68 is level 0.6827, i.e.
    +/-1 sigma). nll and crps are averages over the points.

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
    out["mace"] = out["ece"] = mace(y, mean, std)
    out["rmsce"] = rmsce(y, mean, std)
    out["n"] = float(y.size)
    return out


def model_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The entries of a ``uq_metrics.json`` object that are models (flat name -> number maps).

    Other entries (``"selection"``: which trials or members, with which weights) are left out.
    """
    return {name: m for name, m in metrics.items()
            if isinstance(m, dict) and all(isinstance(v, (int, float)) for v in m.values())}


def summarize(metrics_by_model: dict[str, Any]) -> str:
    """Fixed-width text table: rows = metric names (first-seen order), columns = models.

    Example:
        >>> print(summarize({"a": {"rmse": 0.5}}))
        metric       a
        rmse    0.5000
    """
    metrics_by_model = model_metrics(metrics_by_model)
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


def _erf(x: Any) -> Any:
    from scipy.special import erf  # imported when scoring, not when an agent imports hpwf

    return erf(x)


def _ndtri(p: Any) -> Any:
    from scipy.special import ndtri

    return ndtri(p)
