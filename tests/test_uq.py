"""hpwf.ensembles._uq against closed forms and known facts (fast, numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hpwf.ensembles import _uq as uq

REG_KEYS = {"rmse", "mae", "nll", "crps", "picp_68", "picp_90", "picp_95", "width_68", "width_90",
            "width_95", "miscalibration_area", "mace", "ece", "rmsce", "n"}
CLS_KEYS = {"accuracy", "nll", "brier", "ece", "entropy", "mutual_information", "n"}


# uncertainty-toolbox's reference arrays (tests/test_metrics_*.py there) and its figures
TOOLBOX = dict(y_pred=np.array([1.0, 2.0, 3.0]), y_std=np.array([0.1, 0.5, 1.0]), y_true=np.array([1.5, 3.0, 2.0]))


def test_metrics_equal_uncertainty_toolbox_reference_values():
    y, mu, sd = TOOLBOX["y_true"], TOOLBOX["y_pred"], TOOLBOX["y_std"]
    assert abs(uq.gaussian_nll(y, mu, sd**2) - 4.920361108686675) < 1e-6  # the MEAN over points
    assert abs(uq.gaussian_crps(y, mu, sd) - 0.59080610693) < 1e-6
    assert abs(uq.miscalibration_area(y, mu, sd) - 0.37710437710437716) < 1e-6
    assert abs(uq.mace(y, mu, sd) - 0.3733333333333335) < 1e-6
    assert abs(uq.rmsce(y, mu, sd) - 0.4165757476562379) < 1e-6
    m = uq.regression_metrics(y, mu, sd**2)
    assert m["ece"] == m["mace"] and abs(m["nll"] - 4.920361108686675) < 1e-6
    exp, obs = uq.interval_proportions(y, mu, sd)
    np.testing.assert_allclose(exp, np.linspace(0, 1, 100))
    assert sorted(set(np.round(obs, 8))) == [0.0, 0.33333333, 0.66666667, 1.0]


def test_nll_is_a_mean_not_a_sum():
    per_point = -stats.norm.logpdf(TOOLBOX["y_true"], TOOLBOX["y_pred"], TOOLBOX["y_std"])
    assert uq.gaussian_nll(TOOLBOX["y_true"], TOOLBOX["y_pred"], TOOLBOX["y_std"] ** 2) == pytest.approx(per_point.mean())
    assert per_point.sum() == pytest.approx(3 * 4.920361108686675)


def test_area_between_splits_crossing_segments():
    assert uq.area_between([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert uq.area_between([0.0, 0.5, 1.0], [0.5, 0.5, 0.5]) == pytest.approx(0.25)
    assert uq.area_between([0.0, 1.0], [1.0, 0.0]) == pytest.approx(0.5)


def test_weighted_mixture():
    p = uq.mixture([[0.0], [3.0]], [[1.0], [1.0]], weights=[2, 1])
    assert p.mean[0] == pytest.approx(1.0)
    assert p.epistemic[0] == pytest.approx((2 * 1.0 + 1 * 4.0) / 3)
    with pytest.raises(ValueError):
        uq.mixture([[0.0], [3.0]], weights=[-1, 2])


def test_mixture_hand_computed():
    p = uq.mixture([[0.0, 1.0], [2.0, 1.0]], [[1.0, 0.5], [3.0, 0.5]])
    np.testing.assert_allclose(p.mean, [1.0, 1.0])
    np.testing.assert_allclose(p.aleatoric, [2.0, 0.5])
    np.testing.assert_allclose(p.epistemic, [1.0, 0.0])  # ddof=0 variance of member means
    np.testing.assert_allclose(p.total, p.aleatoric + p.epistemic)
    np.testing.assert_allclose(p.std, np.sqrt([3.0, 0.5]))


def test_mixture_mean_only_and_single_member():
    p = uq.mixture([[0.0, 4.0], [2.0, 0.0]])
    np.testing.assert_array_equal(p.aleatoric, [0.0, 0.0])
    np.testing.assert_allclose(p.epistemic, [1.0, 4.0])
    one = uq.mixture([[1.0, 2.0]], [[0.3, 0.4]])
    np.testing.assert_array_equal(one.epistemic, [0.0, 0.0])
    np.testing.assert_allclose(one.total, [0.3, 0.4])


def test_gaussian_nll_matches_scipy():
    rng = np.random.default_rng(0)
    y, mu = rng.normal(size=50), rng.normal(size=50)
    var = rng.uniform(0.1, 3.0, size=50)
    want = -stats.norm.logpdf(y, mu, np.sqrt(var)).mean()
    assert uq.gaussian_nll(y, mu, var) == pytest.approx(want, rel=1e-12)
    assert np.isfinite(uq.gaussian_nll([1.0], [1.0], [0.0]))  # variance floor


@pytest.mark.parametrize("y,mu,sigma", [(0.3, 0.0, 1.0), (-2.0, 0.5, 0.7), (4.0, 1.0, 2.5)])
def test_gaussian_crps_matches_numerical_integral(y, mu, sigma):
    lo = np.linspace(min(y, mu) - 12 * sigma, y, 100_001)  # split at y: no step inside a cell
    hi = np.linspace(y, max(y, mu) + 12 * sigma, 100_001)
    want = (np.trapezoid(stats.norm.cdf(lo, mu, sigma) ** 2, lo)
            + np.trapezoid(stats.norm.sf(hi, mu, sigma) ** 2, hi))
    assert uq.gaussian_crps([y], [mu], [sigma]) == pytest.approx(want, abs=1e-6)


def test_gaussian_crps_at_mean():
    sigma = 1.7
    want = sigma * (math.sqrt(2 / math.pi) - 1 / math.sqrt(math.pi))
    assert uq.gaussian_crps([3.0], [3.0], [sigma]) == pytest.approx(want, rel=1e-12)


def test_interval_width():
    assert uq.interval_width(1.0, 0.95) == pytest.approx(2 * 1.959964, abs=1e-6)
    assert uq.interval_width([1.0, 3.0], 0.95) == pytest.approx(2 * 1.959964 * 2, abs=1e-5)


@pytest.fixture(scope="module")
def calibrated():
    rng = np.random.default_rng(42)
    n = 200_000
    mean, std = rng.normal(size=n), rng.uniform(0.5, 2.0, size=n)
    return mean + std * rng.normal(size=n), mean, std


def test_calibrated_sample(calibrated):
    y, mean, std = calibrated
    m = uq.regression_metrics(y, mean, std**2)
    for key, nominal in [("picp_68", 0.6827), ("picp_90", 0.90), ("picp_95", 0.95)]:
        assert abs(m[key] - nominal) < 0.01
    assert m["miscalibration_area"] < 0.01
    assert m["mace"] < 0.01
    exp, obs = uq.calibration_curve(y, mean, std)
    np.testing.assert_allclose(exp, np.linspace(0.05, 0.95, 19))
    np.testing.assert_allclose(obs, exp, atol=0.01)


def test_overconfident_sample(calibrated):
    y, mean, std = calibrated
    good = uq.miscalibration_area(y, mean, std)
    assert uq.picp(y, mean, std / 3, 0.90) < 0.6
    assert uq.miscalibration_area(y, mean, std / 3) > 0.2 > good
    assert uq.mace(y, mean, std / 3) > 0.2


def test_regression_metrics_keys():
    m = uq.regression_metrics([0.0, 1.0, 2.0], [0.0, 1.5, 2.0], [1.0, 1.0, 1.0])
    assert set(m) == REG_KEYS
    assert m["n"] == 3 and m["mae"] == pytest.approx(0.5 / 3)
    assert m["width_68"] == pytest.approx(2 * stats.norm.ppf((1 + 0.6827) / 2))


def test_confident_correct_classifier():
    probs = np.eye(3)[[0, 1, 2, 1]]
    m = uq.classification_metrics([0, 1, 2, 1], probs)
    assert set(m) == CLS_KEYS
    assert m["accuracy"] == 1.0 and m["n"] == 4
    assert m["nll"] == pytest.approx(0.0, abs=1e-9)
    assert m["brier"] == pytest.approx(0.0, abs=1e-12)
    assert m["ece"] == pytest.approx(0.0, abs=1e-12)
    assert m["entropy"] == 0.0 and m["mutual_information"] == 0.0


def test_ece_calibrated_vs_overconfident():
    rng = np.random.default_rng(1)
    n, c = 50_000, 4
    probs = rng.dirichlet(np.ones(c), size=n)
    y = (rng.random(n)[:, None] > probs.cumsum(axis=1)).sum(axis=1)  # labels drawn from probs
    assert uq.expected_calibration_error(y, probs) < 0.02
    sharp = probs**4 / (probs**4).sum(axis=1, keepdims=True)  # same argmax, inflated confidence
    assert uq.expected_calibration_error(y, sharp) > 0.1


def test_entropy_and_mutual_information():
    np.testing.assert_allclose(uq.predictive_entropy([[0.5, 0.5], [1.0, 0.0]]), [math.log(2), 0.0])
    agree = np.tile([[0.2, 0.8], [0.6, 0.4]], (3, 1, 1))
    np.testing.assert_allclose(uq.mutual_information(agree), 0.0, atol=1e-12)
    mi = uq.mutual_information([[[1.0, 0.0]], [[0.0, 1.0]]])
    np.testing.assert_allclose(mi, [math.log(2)])
    m = uq.classification_metrics([0], [[[1.0, 0.0]], [[0.0, 1.0]]])
    assert m["mutual_information"] == pytest.approx(math.log(2))
    assert m["entropy"] == pytest.approx(math.log(2)) and m["nll"] == pytest.approx(math.log(2))


def test_summarize_table():
    text = uq.summarize({"ens": {"rmse": 0.25, "n": 10.0}, "single": {"rmse": 0.5}})
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "ens", "single"]
    assert lines[1].split() == ["rmse", "0.2500", "0.5000"]
    assert lines[2].split() == ["n", "10", "-"]
    assert len({len(line) for line in lines}) == 1  # fixed width
