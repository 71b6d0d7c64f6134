"""Split-conformal intervals: the finite-sample quantile, and coverage on many seeded draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpwf.ensembles._conformal import Conformal, calibrated_metrics


def test_quantile_is_the_ceil_n_plus_1_rank():
    scores = np.arange(1.0, 20.0)  # n = 19
    cp = Conformal(scores)
    assert cp.multiplier(0.90) == 18.0  # ceil(20 * 0.9) = 18
    assert cp.multiplier(0.95) == 19.0  # ceil(20 * 0.95) = 19
    assert cp.multiplier(0.68) == 14.0  # ceil(13.6) = 14
    assert Conformal(np.arange(1.0, 10.0)).multiplier(0.95) == math.inf  # ceil(9.5) = 10 > 9
    assert cp.multiplier(0.0) == 0.0


def test_scores_are_normalised_residuals():
    cp = Conformal.fit([1.0, -4.0, 0.5], [0.0, 0.0, 0.0], [1.0, 4.0, 0.25])
    np.testing.assert_allclose(cp.scores, [1.0, 1.0, 2.0])
    lo, hi = cp.interval([0.0, 10.0], [1.0, 4.0], 0.5)  # rank ceil(4 * 0.5) = 2 -> q = 1
    np.testing.assert_allclose(lo, [-1.0, 8.0])
    np.testing.assert_allclose(hi, [1.0, 12.0])


def _draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A heteroscedastic model that is overconfident by a factor 2: true sd = 2 * predicted sd."""
    x = rng.uniform(0, 10, n)
    sd = 0.05 + np.abs(x - 5) / 10
    return np.sin(x) + 2 * sd * rng.normal(size=n), np.sin(x), sd**2


@pytest.mark.parametrize("level", [0.6827, 0.90, 0.95])
def test_coverage_holds_on_many_seeded_draws(level: float) -> None:
    """Marginal coverage over calibration draws: E[coverage] in [level, level + 1/(n+1)]."""
    n_cal, n_test, draws = 199, 2000, 400
    covered = []
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        cp = Conformal.fit(*_draw(rng, n_cal))
        y, mu, var = _draw(rng, n_test)
        lo, hi = cp.interval(mu, var, level)
        covered.append(np.mean((y >= lo) & (y <= hi)))
    mean = float(np.mean(covered))
    # standard error of the mean over draws is about sqrt(level (1 - level) / n_cal / draws) < 0.002
    assert level - 0.006 <= mean <= level + 1 / (n_cal + 1) + 0.006, mean
    assert float(np.quantile(covered, 0.05)) > level - 0.08  # no draw is far off


def test_raw_overconfident_model_is_fixed_by_calibration():
    rng = np.random.default_rng(0)
    cp = Conformal.fit(*_draw(rng, 1000))
    y, mu, var = _draw(rng, 5000)
    m = calibrated_metrics(cp, y, mu, var)
    assert 0.88 <= m["picp_90"] <= 0.92 and 0.93 <= m["picp_95"] <= 0.97
    assert 1.9 < m["scale"] < 2.1  # the model is overconfident by 2
    assert m["q_90"] == pytest.approx(2 * 1.645, rel=0.08)
    assert m["ece"] < 0.02 and m["miscalibration_area"] < 0.02
    assert {"rescaled_nll", "rescaled_crps", "rmse", "width_90", "n_cal"} <= set(m) and "nll" not in set(m)


def test_docstring_examples_of_the_uq_modules() -> None:
    import doctest
    import importlib

    from hpwf.ensembles import _conformal as conformal
    from hpwf.workflow import _predictions as predictions
    from hpwf.ensembles import _selection as selection
    from hpwf.ensembles import _uq as uq

    ensemble = importlib.import_module("hpwf.ensembles._members")
    new = [importlib.import_module(f"hpwf.ensembles.{m}") for m in ("_scores", "_intervals", "_classify", "_calibrate")]
    for module in (uq, selection, conformal, predictions, ensemble, *new):
        assert doctest.testmod(module).failed == 0, module.__name__
