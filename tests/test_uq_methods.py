"""Issue 23's methods on arrays, each checked against MAPIE, crepes, scoringrules, netcal or scipy on the same arrays."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from hpwf.ensembles import _scores as scores
from hpwf.ensembles import _uq as uq
from hpwf.ensembles._classify import conformal_sets, fit_temperature, label_scores, tempered
from hpwf.ensembles._intervals import OutOfBag, cqr, jackknife_plus, mondrian, sigma_bins


class _Table(BaseEstimator):
    """A prefit model that returns saved predictions: X's only column is the row number."""

    def __init__(self, table: np.ndarray | None = None) -> None:
        self.table = table

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Table:
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.table is not None
        return self.table[np.asarray(x)[:, 0].astype(int)]


class _TableClassifier(ClassifierMixin, _Table):
    def fit(self, x: np.ndarray, y: np.ndarray) -> _TableClassifier:
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _Table.predict(self, x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(1)


class _TableRegressor(RegressorMixin, _Table):
    pass


def _members(n_members: int = 4, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    means = y[None, :] + rng.normal(0, 0.8, (n_members, n))
    var = rng.uniform(0.2, 1.5, (n_members, n))
    return y, means, var


def test_mixture_nll_is_exact_and_beside_the_moment_matched_gaussian() -> None:
    """Defect 5: with member means spread by 1.0 the Gaussian NLL is not the mixture's."""
    from scipy.stats import norm

    y, means, var = _members()
    w = np.array([0.1, 0.2, 0.3, 0.4])
    brute = -np.mean(np.log(sum(wk * norm.pdf(y, m, np.sqrt(v)) for wk, m, v in zip(w, means, var))))
    assert scores.mixture_nll(y, means, var, w) == pytest.approx(brute, rel=1e-12)
    spread = np.stack([np.full(2000, -1.0), np.full(2000, 1.0)])  # means spread by 1.0 around the target
    target = np.random.default_rng(1).choice([-1.0, 1.0], 2000) + np.random.default_rng(2).normal(0, 0.3, 2000)
    mix = uq.mixture(spread, np.full_like(spread, 0.09))
    assert scores.mixture_nll(target, spread, np.full_like(spread, 0.09)) < uq.gaussian_nll(target, mix.mean, mix.total) - 0.3


def test_mixture_crps_agrees_with_scoringrules() -> None:
    import scoringrules as sr

    y, means, var = _members()
    w = np.array([0.1, 0.2, 0.3, 0.4])
    ref = sr.crps_mixnorm(y, means.T, np.sqrt(var).T, np.tile(w, (len(y), 1)), backend="numpy")
    assert scores.mixture_crps(y, means, var, w) == pytest.approx(float(np.mean(ref)), rel=1e-10)


def test_mixture_quantiles_invert_the_cdf() -> None:
    from scipy.special import ndtr

    _, means, var = _members()
    for p in (0.05, 0.5, 0.95):
        q = scores.mixture_quantile(p, means, var)
        assert np.allclose(np.mean(ndtr((q[None] - means) / np.sqrt(var)), axis=0), p, atol=1e-9)


def test_winkler_and_conditional_coverage_see_what_marginal_picp_hides() -> None:
    """Defect 6: a useless N(0, 1) predictor covers 0.90 overall, but not by x region."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 3000)
    y = rng.normal(0, 0.3 + 0.27 * np.abs(x - 5), 3000)  # its spread changes with x
    lo, hi = -1.645 * np.ones(3000), 1.645 * np.ones(3000)
    flat, lists = scores.interval_metrics(y, lo, hi, 0.9, np.ones(3000), x=x)
    assert 0.86 <= flat["picp_90"] <= 0.94
    assert flat["worst_x_bin_90"] < 0.8 and max(lists["x_bins_90"]) == 1.0
    assert flat["worst_slab_90"] < flat["picp_90"] - 0.1  # slabs of >= 20 % of the points
    assert flat["winkler_90"] > flat["width_90"] == pytest.approx(3.29)


def test_jackknife_plus_and_cv_plus_agree_with_mapie() -> None:
    from mapie.regression import CrossConformalRegressor, JackknifeAfterBootstrapRegressor
    from mapie.subsample import Subsample
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(120, 3)), rng.normal(size=(40, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=120)
    for splitter, mapie in ((KFold(5), CrossConformalRegressor(LinearRegression(), confidence_level=0.9, cv=KFold(5))),
                            (Subsample(20, random_state=1), JackknifeAfterBootstrapRegressor(
                                LinearRegression(), confidence_level=0.9, resampling=Subsample(20, random_state=1)))):
        _, ref = mapie.fit_conformalize(x, y).predict_interval(xt)
        oob, test = [], []
        for train, out in splitter.split(x):
            model = LinearRegression().fit(x[train], y[train])
            oob.append(OutOfBag(out, y[out], model.predict(x[out])))
            test.append(model.predict(xt))
        lo, hi = jackknife_plus(oob, np.array(test), 0.9)
        assert np.allclose(lo, ref[:, 0, 0], atol=1e-12) and np.allclose(hi, ref[:, 1, 0], atol=1e-12)


def test_mondrian_normalised_agrees_with_crepes() -> None:
    from crepes import ConformalRegressor

    rng = np.random.default_rng(0)
    mu_c, s_c = rng.normal(size=400), rng.uniform(0.2, 2, 400)
    y_c = mu_c + s_c * rng.normal(size=400)
    mu_t, s_t = rng.normal(size=100), rng.uniform(0.2, 2, 100)
    cal_bins, test_bins = sigma_bins(s_c, s_t, 4)
    ref = ConformalRegressor().fit(y_c - mu_c, sigmas=s_c + 0.1, bins=cal_bins).predict_int(
        mu_t, sigmas=s_t + 0.1, bins=test_bins, confidence=0.9)
    lo, hi = mondrian(y_c, mu_c, s_c, mu_t, s_t, 0.9, beta=0.1, cal_bins=cal_bins, test_bins=test_bins)
    assert np.allclose(lo, ref[:, 0]) and np.allclose(hi, ref[:, 1])


def test_cqr_agrees_with_mapie() -> None:
    from mapie.regression import ConformalizedQuantileRegressor

    rng = np.random.default_rng(0)
    y = rng.normal(size=250)
    lower, upper = y - 1.2 + rng.normal(0, 0.5, 250), y + 1.0 + rng.normal(0, 0.5, 250)
    rows = np.arange(250)[:, None]
    models = [_TableRegressor(lower), _TableRegressor(upper), _TableRegressor((lower + upper) / 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapie = ConformalizedQuantileRegressor(models, confidence_level=0.9, prefit=True).conformalize(rows[:200], y[:200])
        _, ref = mapie.predict_interval(rows[200:], symmetric_correction=True)  # Romano et al.'s CQR
    lo, hi = cqr(y[:200], lower[:200], upper[:200], lower[200:], upper[200:], 0.9)
    assert np.allclose(lo, ref[:, 0, 0]) and np.allclose(hi, ref[:, 1, 0])


def _classes(n: int, seed: int, c: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = np.exp(2 * rng.normal(size=(n, c)))
    p /= p.sum(1, keepdims=True)
    return np.array([rng.choice(c, p=row) for row in p]), p


def test_aps_sets_marginal_and_class_conditional_agree_with_crepes() -> None:
    from crepes import ConformalClassifier

    cal_y, cal_p = _classes(300, 0)
    _, test_p = _classes(200, 1)
    true = label_scores(cal_p)[np.arange(300), cal_y]
    test_scores = label_scores(test_p)
    for by_class in (False, True):
        ref = ConformalClassifier().fit(true, bins=cal_y if by_class else None)
        # crepes' p-values, the set {p > alpha} (crepes' predict_set keeps p >= alpha, one more label on ties)
        columns = [ref.predict_p(test_scores[:, [c]], bins=np.full(200, c) if by_class else None,
                                 smoothing=False)[:, 0] > 0.1 + 1e-12 for c in range(6)]
        assert np.array_equal(np.column_stack(columns),
                              conformal_sets(cal_y, cal_p, test_p, 0.9, "aps", by_class=by_class))


def test_raps_sets_cover_and_are_no_larger_than_aps() -> None:
    cal_y, cal_p = _classes(2000, 0, 10)
    y, p = _classes(2000, 1, 10)
    aps = conformal_sets(cal_y, cal_p, p, 0.9, "aps")
    raps = conformal_sets(cal_y, cal_p, p, 0.9, "raps", lam=0.05, k_reg=1)
    assert aps[np.arange(2000), y].mean() == pytest.approx(0.9, abs=0.02)
    assert raps[np.arange(2000), y].mean() == pytest.approx(0.9, abs=0.02)
    assert raps.sum(1).mean() <= aps.sum(1).mean()


def test_temperature_scaling_agrees_with_a_scipy_reference() -> None:
    from scipy.optimize import minimize

    y, p = _classes(500, 3)
    sharp = tempered(p, 0.5)  # overconfident by a temperature of 2
    t = fit_temperature(y, sharp)

    def nll(v: np.ndarray) -> float:
        q = tempered(sharp, float(v[0]))
        return float(-np.mean(np.log(q[np.arange(500), y])))

    ref = minimize(nll, x0=[1.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14}).x[0]
    assert t == pytest.approx(ref, rel=1e-4) and t == pytest.approx(2.0, rel=0.2)
    assert uq.expected_calibration_error(y, tempered(sharp, t)) < uq.expected_calibration_error(y, sharp)


@pytest.mark.parametrize("classes", [3, 2])
def test_temperature_scaling_agrees_with_netcal(classes: int) -> None:
    """netcal's TemperatureScaling, method "mle" (scipy's BFGS on the mean cross-entropy computed in
    torch), minimises the same objective as hpwf's bounded search over log T: it fits a weight w on
    log p, softmax(w log p) (sigmoid(w logit p) for two classes), so T = 1 / w. BFGS stops at a
    gradient of 1e-5, a little short of the optimum (3.8e-5 in T, 2e-10 in NLL on the binary
    case), hence a tolerance of 1e-4 on T and the check that hpwf's NLL is no worse than netcal's."""
    from netcal.scaling import TemperatureScaling

    def nll(y: np.ndarray, q: np.ndarray) -> float:
        return float(-np.mean(np.log(q[np.arange(len(y)), y])))

    for seed, true_t in ((0, 0.5), (1, 2.0)):  # over- and under-confident
        y, p = _classes(500, seed, classes)
        probs = tempered(p, true_t)
        given = probs if classes > 2 else probs[:, 1]  # netcal's binary input: the positive class's probability
        t = fit_temperature(y, probs)
        ref = TemperatureScaling(method="mle")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pyro's, inside netcal
            ref.fit(given, y)
        ref_t = 1.0 / float(np.asarray(ref.temperature).ravel()[0])
        assert t == pytest.approx(ref_t, rel=1e-4) and abs(np.log(t)) > 0.4  # far from T = 1: not agreeing by default
        ours, theirs = tempered(probs, t), np.asarray(ref.transform(given), dtype=float)
        assert np.abs((ours if classes > 2 else ours[:, 1]) - theirs).max() < 1e-5
        assert nll(y, ours) <= nll(y, tempered(probs, ref_t)) + 1e-12


def test_mapie_jackknife_after_bootstrap_replays_saved_member_predictions() -> None:
    """bench/_uq_reference's replay hands MAPIE hpwf's members instead of its own bootstrap fits:
    ``SavedBags`` yields the members' in-bag/out-of-bag rows, ``Replay`` predicts a member's saved
    predictions. On the same bootstrap bags MAPIE fitting the models itself, MAPIE replaying their
    saved predictions and hpwf's ``jackknife_plus`` (absolute) give the same intervals; 5 members of
    40 rows leave some rows in every bag, which all three leave out of the ranks."""
    from mapie.regression import JackknifeAfterBootstrapRegressor
    from mapie.subsample import Subsample
    from sklearn.linear_model import LinearRegression

    from bench._uq_reference import mapie_jackknife_ab

    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(40, 3)), rng.normal(size=(25, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=40)
    bags = [(rows, np.setdiff1d(np.arange(40), rows)) for rows in rng.integers(0, 40, (5, 40))]
    oob, test = [], []
    for rows, out in bags:
        model = LinearRegression().fit(x[rows], y[rows])
        oob.append(OutOfBag(out, y[out], model.predict(x[out])))
        test.append(model.predict(xt))
    assert np.isin(np.arange(40), np.concatenate([o.index for o in oob]), invert=True).sum() == 4

    class Bags(Subsample):  # type: ignore[misc]
        def split(self, X: np.ndarray, *args: object, **kwargs: object) -> object:
            return iter(bags)

    levels = [0.6827, 0.9, 0.95]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MAPIE warns about the rows in every bag
        fitted = JackknifeAfterBootstrapRegressor(LinearRegression(), confidence_level=levels,
                                                  resampling=Bags(n_resamplings=5)).fit_conformalize(x, y)
        _, own = fitted.predict_interval(xt)
    replayed = mapie_jackknife_ab([o.index for o in oob], [o.y for o in oob], [o.mean for o in oob], np.array(test),
                                  levels)
    for j, level in enumerate(levels):
        lo, hi = jackknife_plus(oob, np.array(test), level)
        assert np.abs(replayed[j][0] - own[:, 0, j]).max() < 1e-12 and np.abs(replayed[j][1] - own[:, 1, j]).max() < 1e-12
        assert np.abs(lo - replayed[j][0]).max() < 1e-12 and np.abs(hi - replayed[j][1]).max() < 1e-12
        assert np.isfinite(lo).all() and (hi - lo).min() > 0
