"""Split-conformal intervals from normalised residuals, so intervals keep their heteroscedastic shape.

On a calibration set the model never trained on, the scores are s_i = |y_i - mu_i| / sigma_i.
For a level 1 - alpha the multiplier q is the ceil((n + 1)(1 - alpha))-th smallest score (the
finite-sample quantile at ceil((n + 1)(1 - alpha)) / n), and the interval is mu +/- q sigma.
If the calibration and test points are exchangeable, a test point falls in it with probability
at least 1 - alpha (and below 1 - alpha + 1 / (n + 1) when scores have no ties). When
ceil((n + 1)(1 - alpha)) > n the interval is unbounded (q = inf).

Calibrated figures (`calibrated_metrics`): coverage, widths and calibration error come from
the conformal intervals at each level. The conformal method gives intervals, not a
distribution, so there is no conformal NLL or CRPS: ``rescaled_nll`` and ``rescaled_crps`` are
those of the Gaussian N(mu, (c sigma)^2) with c^2 = mean(s_i^2), the maximum-likelihood
sigma-rescaling on the same calibration set, labelled as such. RMSE and MAE do not change
(the means do not move).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from hpwf.ensembles import _uq as uq

LEVELS = {"68": 0.6827, "90": 0.90, "95": 0.95}


@dataclass(frozen=True)
class Conformal:
    """Sorted normalised residuals of a calibration set; ``multiplier(level)`` is q."""

    scores: np.ndarray

    @classmethod
    def fit(cls, y: ArrayLike, mean: ArrayLike, var: ArrayLike) -> Conformal:
        """Scores |y - mean| / sqrt(var) on the calibration set (var floored at 1e-12).

        Example:
            >>> Conformal.fit([1.0, 2.0, 4.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]).scores.tolist()
            [1.0, 2.0, 4.0]
        """
        y, mean, var = (np.asarray(a, dtype=float).ravel() for a in (y, mean, var))
        if not len(y):
            raise ValueError("conformal calibration needs at least one calibration point")
        return cls(np.sort(np.abs(y - mean) / np.sqrt(np.maximum(var, 1e-12))))

    @property
    def n(self) -> int:
        """Calibration points."""
        return len(self.scores)

    def multiplier(self, level: float) -> float:
        """q for a central interval of coverage ``level``: the ceil((n+1) level)-th smallest score.

        Example:
            >>> Conformal(np.arange(1.0, 10.0)).multiplier(0.9)  # n = 9: the 9th smallest
            9.0
            >>> Conformal(np.arange(1.0, 10.0)).multiplier(0.95)  # ceil(9.5) = 10 > n
            inf
        """
        rank = math.ceil((self.n + 1) * level - 1e-9)  # the tolerance keeps (n+1)*0.9 = 9.000...01 at 9
        if rank > self.n:
            return math.inf
        return 0.0 if rank < 1 else float(self.scores[rank - 1])

    def interval(self, mean: ArrayLike, var: ArrayLike, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper ends mu -/+ q sigma of the conformal interval at ``level``."""
        mu, sigma = np.asarray(mean, dtype=float), np.sqrt(np.maximum(np.asarray(var, dtype=float), 1e-12))
        q = self.multiplier(level)
        return mu - q * sigma, mu + q * sigma

    def coverage(self, y: ArrayLike, mean: ArrayLike, var: ArrayLike, levels: ArrayLike) -> np.ndarray:
        """Observed coverage of the conformal intervals at each level (the calibrated curve)."""
        y, mu = np.asarray(y, dtype=float), np.asarray(mean, dtype=float)
        z = np.abs(y - mu) / np.sqrt(np.maximum(np.asarray(var, dtype=float), 1e-12))
        qs = np.array([self.multiplier(float(p)) for p in np.asarray(levels, dtype=float)])
        return (z[None, :] <= qs[:, None]).mean(axis=1)

    @property
    def scale(self) -> float:
        """c with c^2 = mean(s^2): the maximum-likelihood rescaling of sigma on the calibration set."""
        return float(np.sqrt(np.mean(self.scores**2)))


def calibrated_metrics(conformal: Conformal, y: ArrayLike, mean: ArrayLike, var: ArrayLike) -> dict[str, float]:
    """The keys of ``uq.regression_metrics`` after calibration (nll, crps as rescaled_nll, rescaled_crps),
    plus q_68/q_90/q_95, scale, n_cal.

    Example:
        >>> cal = Conformal.fit(np.linspace(-2, 2, 99), np.zeros(99), np.ones(99))
        >>> m = calibrated_metrics(cal, np.linspace(-2, 2, 99), np.zeros(99), np.ones(99))
        >>> m["picp_90"] >= 0.9
        True
    """
    y, mu, v = (np.asarray(a, dtype=float) for a in (y, mean, var))
    sigma = np.sqrt(np.maximum(v, 1e-12))
    out = uq.regression_metrics(y, mu, (conformal.scale * sigma) ** 2)  # nll, crps, rmse, mae, n
    out["rescaled_nll"], out["rescaled_crps"] = out.pop("nll"), out.pop("crps")  # sigma-rescaling, not conformal
    for key, level in LEVELS.items():
        q = conformal.multiplier(level)
        out[f"picp_{key}"] = float(np.mean(np.abs(y - mu) <= q * sigma))
        out[f"width_{key}"] = float(np.mean(2 * q * sigma))
        out[f"q_{key}"] = q
    expected = np.linspace(0.0, 1.0, 100)
    observed = conformal.coverage(y, mu, v, expected)
    out["miscalibration_area"] = uq.area_between(expected, observed)
    out["mace"] = out["ece"] = float(np.mean(np.abs(observed - expected)))
    out["rmsce"] = float(np.sqrt(np.mean((observed - expected) ** 2)))
    out["scale"] = conformal.scale
    out["n_cal"] = float(conformal.n)
    return out
