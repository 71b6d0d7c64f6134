"""(7b) UQ methods over seeds: greedy vs seed vs bootstrap ensembles, split / Mondrian / jackknife+ / CV+
intervals, temperature scaling and APS / RAPS sets, each figure a mean over seeds with its standard error.

The full `hpwf run` pipeline of bench/uq.py takes 39 minutes per seed on this shared 2-core
machine, so this benchmark runs the post-training methods of hpwf (the same functions
``hpwf.ensembles`` calls when it aggregates) on member predictions made here with small numpy
models, the whole of it again for every seed: data split, candidate models, members,
selection, calibration, scoring. Regression models: random Fourier features (bandwidth,
count, ridge are the hyperparameters; the seed draws the features) with a ridge for the mean
and one for the log-variance, a Gaussian per point. Classifiers (digits): random Fourier
features + logistic regression.

Per data set and seed: 8 candidate configurations trained on "train", greedy selection on
"val" (best prefix of 10 rounds, hpwf's greedy); the seed ensemble (5 members of the best
configuration, full "train", different seeds: hpwf's recommended default); the bootstrap
ensemble (5 members on bootstrap resamples of "train"); split-conformal and Mondrian
(sigma-binned, sigma + beta) intervals from the seed ensemble calibrated on "cal";
jackknife+-after-bootstrap (20 bootstrap members) and CV+ (5 folds) on "train" + "cal", so no
row is held out of training; MAPIE's APS and crepes' Mondrian regressor on the same arrays.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Callable

import numpy as np

SEEDS = int(os.environ.get("UQ_METHODS_SEEDS", "10"))  # more seeds shrink the SE on the small sets
LEVELS = {"68": 0.6827, "90": 0.90, "95": 0.95}
ALL_SETS = ("sine", "diabetes", "breast_cancer_texture", "digits")
SETS = tuple(os.environ.get("UQ_METHODS_SETS", ",".join(ALL_SETS)).split(","))  # a subset, for more seeds
REGRESSION_SETS = tuple(n for n in ALL_SETS[:3] if n in SETS)


# --- data -----------------------------------------------------------------------------------
def _data(name: str, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    if name == "sine":
        out = {}
        for split, n in (("train", 600), ("val", 300), ("cal", 500), ("test", 1000)):
            x = rng.uniform(0, 10, n)
            out[split] = (x[:, None], np.sin(x) + rng.normal(0, 0.01 + np.abs(x - 5) / 10))
        return out
    from sklearn import datasets

    if name == "diabetes":
        x, y = datasets.load_diabetes(return_X_y=True)
    elif name == "breast_cancer_texture":  # a real continuous target: mean texture from the non-texture features
        bc = datasets.load_breast_cancer()
        keep = [i for i, f in enumerate(bc.feature_names) if "texture" not in f]
        x, y = bc.data[:, keep], bc.data[:, list(bc.feature_names).index("mean texture")]
    else:
        x, y = datasets.load_digits(return_X_y=True)
    order = rng.permutation(len(y))
    x, y = x[order].astype(float), y[order].astype(float)
    cuts = (np.cumsum([0.45, 0.15, 0.2]) * len(y)).astype(int)
    idx = dict(zip(("train", "val", "cal", "test"), np.split(np.arange(len(y)), cuts)))
    mu, sd = x[idx["train"]].mean(0), x[idx["train"]].std(0) + 1e-8
    x = (x - mu) / sd
    if name != "digits":
        y = (y - y[idx["train"]].mean()) / y[idx["train"]].std()
    return {k: (x[i], y[i]) for k, i in idx.items()}


def _true_nll(x: np.ndarray, y: np.ndarray) -> float:
    sd = 0.01 + np.abs(x[:, 0] - 5) / 10
    return float(np.mean(0.5 * np.log(2 * math.pi * sd**2) + (y - np.sin(x[:, 0])) ** 2 / (2 * sd**2)))


# --- models ---------------------------------------------------------------------------------
Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _features(x: np.ndarray, d: int, scale: float, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    w, b = rng.normal(0, 1 / scale, (x.shape[1], d)), rng.uniform(0, 2 * math.pi, d)
    return lambda z: np.sqrt(2 / d) * np.cos(z @ w + b)


def _ridge(a: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
    return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ t)


def fit(config: dict[str, float], x: np.ndarray, y: np.ndarray, seed: int) -> Predict:
    """A heteroscedastic Gaussian regressor: ridge on random features for the mean, then for log r^2."""
    phi = _features(x, int(config["d"]), config["scale"], seed)
    a = np.hstack([phi(x), np.ones((len(x), 1))])
    w = _ridge(a, y, config["ridge"])
    phi_v = _features(x, 30, config["scale"] * 1.5, seed + 7919)
    b = np.hstack([phi_v(x), np.ones((len(x), 1))])
    v = _ridge(b, np.log((y - a @ w) ** 2 + 1e-6) + 1.27, 1.0)

    def predict(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.hstack([phi(z), np.ones((len(z), 1))]) @ w
        return mean, np.exp(np.clip(np.hstack([phi_v(z), np.ones((len(z), 1))]) @ v, -12, 6))

    return predict


def _configs(rng: np.random.Generator, k: int = 8) -> list[dict[str, float]]:
    return [{"d": float(rng.choice([50, 100, 200])), "scale": float(np.exp(rng.uniform(np.log(0.5), np.log(6)))),
             "ridge": float(np.exp(rng.uniform(np.log(1e-3), np.log(1.0))))} for _ in range(k)]


def _arrays(predict: Predict, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    mean, var = predict(x)
    return {"y": y, "mean": mean, "var": var}


# --- one seed -------------------------------------------------------------------------------
def _regression(name: str, seed: int) -> dict[str, float]:
    from crepes import ConformalRegressor

    from hpwf.ensembles import _scores as scores
    from hpwf.ensembles import _uq as uq
    from hpwf.ensembles._conformal import Conformal
    from hpwf.ensembles._intervals import OutOfBag, default_bins, jackknife_plus, mondrian, sigma_bins
    from hpwf.ensembles._selection import combine, greedy

    d = _data(name, seed)
    (xtr, ytr), (xv, yv), (xc, yc), (xt, yt) = d["train"], d["val"], d["cal"], d["test"]
    rng = np.random.default_rng(1000 + seed)
    configs = _configs(rng)
    cands = {i: fit(c, xtr, ytr, seed * 100 + i) for i, c in enumerate(configs)}
    val = {i: _arrays(p, xv, yv) for i, p in cands.items()}
    sel = greedy(val, 10, "nll", min_distinct=1)
    best = min(sel.single, key=lambda i: sel.single[i])
    out: dict[str, float] = {}

    def score(key: str, members: list[Predict], weights: list[float] | None = None) -> dict[str, np.ndarray]:
        test = [_arrays(p, xt, yt) for p in members]
        c = combine(test, weights)
        out[f"{key}_nll"] = uq.gaussian_nll(yt, c["mean"], c["var"])
        means, vs = np.stack([t["mean"] for t in test]), np.stack([t["var"] for t in test])
        out[f"{key}_mixture_nll"] = scores.mixture_nll(yt, means, vs, weights)
        return c

    score("greedy", [cands[i] for i in sel.weights], list(sel.weights.values()))
    seeds = [fit(configs[best], xtr, ytr, seed * 100 + 50 + m) for m in range(5)]
    ens = score("seed", seeds)
    boots = []
    for m in range(5):
        rows = np.random.default_rng(seed * 100 + 60 + m).integers(0, len(ytr), len(ytr))
        boots.append(fit(configs[best], xtr[rows], ytr[rows], seed * 100 + 60 + m))
    score("bootstrap", boots)
    if name == "sine":
        out["true_nll"] = _true_nll(xt, yt)
    # Split conformal and Mondrian from the seed ensemble, calibrated on "cal".
    cal = combine([_arrays(p, xc, yc) for p in seeds])
    s_cal, s_t = np.sqrt(cal["var"]), np.sqrt(ens["var"])
    cp = Conformal.fit(yc, cal["mean"], cal["var"])
    bins = default_bins(len(yc))  # hpwf's default: one bin per 50 calibration points
    out["mondrian_bins"] = float(bins)
    cb, tb = sigma_bins(s_cal, s_t, bins)
    cb100, tb100 = sigma_bins(s_cal, s_t, default_bins(len(yc), per_bin=100))  # the default before issue 23's end
    beta = 0.01 * float(np.median(s_cal))
    methods: dict[str, Callable[[float], tuple[np.ndarray, np.ndarray]]] = {
        "raw": lambda lv: (ens["mean"] - uq._z(lv) * s_t, ens["mean"] + uq._z(lv) * s_t),
        "split": lambda lv: cp.interval(ens["mean"], ens["var"], lv),
        "mondrian": lambda lv: mondrian(yc, cal["mean"], s_cal, ens["mean"], s_t, lv, beta, cb, tb),
        "mondrian/100": lambda lv: mondrian(yc, cal["mean"], s_cal, ens["mean"], s_t, lv, beta, cb100, tb100),
    }
    if name == "sine":  # the true model's exact intervals: the floor of any method's conditional figures
        true_sd = 0.01 + np.abs(xt[:, 0] - 5) / 10
        methods["oracle"] = lambda lv: (np.sin(xt[:, 0]) - uq._z(lv) * true_sd, np.sin(xt[:, 0]) + uq._z(lv) * true_sd)
    crepes = ConformalRegressor().fit(yc - cal["mean"], sigmas=s_cal + beta, bins=cb)
    ref = crepes.predict_int(ens["mean"], sigmas=s_t + beta, bins=tb, confidence=0.9)
    out["mondrian_vs_crepes_maxdiff"] = float(np.abs(ref - np.column_stack(methods["mondrian"](0.9))).max())
    # Jackknife+-after-bootstrap and CV+ on train + cal: no calibration rows held out of training.
    xa, ya = np.vstack([xtr, xc]), np.concatenate([ytr, yc])
    for key, splits in (("jackknife+ab", _bootstraps(len(ya), 20, seed)), ("cv+", _folds(len(ya), 5, seed))):
        oob, test_means, test_vars = [], [], []
        for m, (train, held) in enumerate(splits):
            p = fit(configs[best], xa[train], ya[train], seed * 100 + 70 + m)
            mean, var = p(xa[held])
            oob.append(OutOfBag(held, ya[held], mean, var))
            tm, tv = p(xt)
            test_means.append(tm)
            test_vars.append(tv)
        tm_, tv_ = np.stack(test_means), np.stack(test_vars)
        methods[key] = (lambda lv, o=oob, a=tm_, b=tv_: jackknife_plus(o, a, lv, b, normalised=True))
    for key, interval in methods.items():
        for lk, lv in LEVELS.items():
            lo, hi = interval(lv)
            sd = true_sd if key == "oracle" else s_t  # deciles of the sigma the method is given
            f, lists = scores.interval_metrics(yt, lo, hi, lv, sd, x=xt, suffix=lk)
            out[f"{key}_picp_{lk}"], out[f"{key}_width_{lk}"] = f[f"picp_{lk}"], f[f"width_{lk}"]
            if lk == "90":
                for k in ("winkler_90", "worst_sigma_decile_90", "worst_slab_90"):
                    out[f"{key}_{k}"] = f[k]
                for d, c in enumerate(lists["sigma_deciles_90"]):  # each decile's coverage, for its mean over seeds
                    out[f"{key}_sigma_decile{d}_90"] = c
    return out


def _bootstraps(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed + 555)
    out = []
    for _ in range(k):
        rows = rng.integers(0, n, n)
        out.append((rows, np.setdiff1d(np.arange(n), rows)))
    return out


def _folds(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    parts = np.array_split(np.random.default_rng(seed + 777).permutation(n), k)
    return [(np.setdiff1d(np.arange(n), p), np.sort(p)) for p in parts]


def _classification(seed: int) -> dict[str, float]:
    import warnings

    from sklearn.linear_model import LogisticRegression

    from hpwf.ensembles import _uq as uq
    from hpwf.ensembles._classify import conformal_sets, fit_temperature, set_metrics, tempered

    d = _data("digits", seed)
    (xtr, ytr), (xc, yc), (xt, yt) = d["train"], d["cal"], d["test"]
    probs_c, probs_t = [], []
    for m in range(5):
        phi = _features(xtr, 200, 8.0, seed * 100 + m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=10.0, max_iter=200).fit(phi(xtr), ytr.astype(int))
        probs_c.append(model.predict_proba(phi(xc)))
        probs_t.append(model.predict_proba(phi(xt)))
    pc, pt = np.mean(probs_c, axis=0), np.mean(probs_t, axis=0)
    t = fit_temperature(yc, pc)
    tc, tt = tempered(pc, t), tempered(pt, t)
    out = {"accuracy": float(np.mean(pt.argmax(1) == yt)), "ece_before": uq.expected_calibration_error(yt, pt),
           "ece_after": uq.expected_calibration_error(yt, tt), "nll_before": uq.classification_metrics(yt, pt)["nll"],
           "nll_after": uq.classification_metrics(yt, tt)["nll"], "temperature": t}
    for kind in ("aps", "raps"):
        for by_class in (False, True):
            sets = conformal_sets(yc, tc, tt, 0.9, kind, lam=0.01, k_reg=1, by_class=by_class, seed=seed)
            f, per = set_metrics(yt, sets)
            key = f"{kind}{'_classwise' if by_class else ''}"
            out[f"{key}_coverage"], out[f"{key}_size"] = f["set_coverage_90"], f["set_size_90"]
            out[f"{key}_worst_class"] = f["worst_class_coverage_90"]
    out["mapie_aps_coverage"], out["mapie_aps_size"] = _mapie_aps(yc, tc, tt, yt, seed=seed)
    out["mapie_aps_randomized_coverage"], out["mapie_aps_randomized_size"] = _mapie_aps(yc, tc, tt, yt, True, seed)
    return out


def _mapie_aps(yc: np.ndarray, tc: np.ndarray, tt: np.ndarray, yt: np.ndarray,
               randomized: bool = False, seed: int = 0) -> tuple[float, float]:
    """MAPIE's split-conformal APS on the same (temperature-scaled) probabilities, its defaults;
    ``randomized``: its randomised last label (include_last_label="randomized"), as hpwf's APS.
    MAPIE draws random numbers even with its defaults: ``seed`` is its random_state (one per
    data seed, so the seeds do not share one draw)."""
    import warnings

    from mapie.classification import SplitConformalClassifier
    from sklearn.base import BaseEstimator, ClassifierMixin

    table = np.vstack([tc, tt])

    class Saved(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
        def fit(self, x: np.ndarray, y: np.ndarray) -> Saved:
            self.classes_ = np.arange(table.shape[1])
            return self

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            return table[x[:, 0].astype(int)]

        def predict(self, x: np.ndarray) -> np.ndarray:
            return self.predict_proba(x).argmax(1)

    rows = np.arange(len(table))[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapie = SplitConformalClassifier(Saved().fit(rows, yc), confidence_level=0.9, conformity_score="aps",
                                         prefit=True, random_state=seed).conformalize(rows[: len(tc)], yc.astype(int))
        params = {"include_last_label": "randomized"} if randomized else None
        _, sets = mapie.predict_set(rows[len(tc):], conformity_score_params=params)
    s = sets[:, :, 0]
    return float(s[np.arange(len(yt)), yt.astype(int)].mean()), float(s.sum(1).mean())


# --- over seeds -----------------------------------------------------------------------------
def _summary(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    keys = rows[0].keys()
    return {k: [round(float(np.mean([r[k] for r in rows])), 4),
                round(float(np.std([r[k] for r in rows], ddof=1) / math.sqrt(len(rows))), 4)] for k in keys}


def _aims(res: dict[str, dict[str, list[float]]]) -> dict[str, bool]:
    aims: dict[str, bool] = {}
    for name in REGRESSION_SETS:
        f = res[name]
        for method in ("split", "mondrian", "jackknife+ab", "cv+"):
            aims[f"{name}: {method} marginal coverage within 1.5 points at 68/90/95"] = all(
                abs(f[f"{method}_picp_{k}"][0] - lv) <= 0.015 for k, lv in LEVELS.items())
        aims[f"{name}: Mondrian worst-sigma-decile coverage@90 >= 0.85"] = f["mondrian_worst_sigma_decile_90"][0] >= 0.85
        g, b = f["greedy_nll"], f["bootstrap_nll"]
        aims[f"{name}: greedy NLL <= bootstrap NLL within 1 SE"] = g[0] <= b[0] + math.hypot(g[1], b[1])
        aims[f"{name}: jackknife+ab width@90 <= split's"] = f["jackknife+ab_width_90"][0] <= f["split_width_90"][0]
    c = res.get("digits", {})
    for kind in ("aps", "raps") if c else ():
        aims[f"digits: {kind} set coverage@90 in [0.89, 0.91]"] = 0.89 <= c[f"{kind}_coverage"][0] <= 0.91
        aims[f"digits: {kind} mean set size <= MAPIE APS's"] = c[f"{kind}_size"][0] <= c["mapie_aps_size"][0]
    return aims


def run(quick: bool = False) -> dict[str, Any]:
    seeds = range(2 if quick else SEEDS)
    res: dict[str, dict[str, list[float]]] = {}
    for name in REGRESSION_SETS:
        res[name] = _summary([_regression(name, s) for s in seeds])
        for key in {k.split("_sigma_decile")[0] for k in res[name] if re.search(r"_sigma_decile\d_90$", k)}:
            # the worst decile of the coverage averaged over seeds: what a method does in a region,
            # free of the minimum-of-ten-noisy-deciles bias of worst_sigma_decile
            deciles = [res[name].pop(f"{key}_sigma_decile{d}_90") for d in range(10)]
            res[name][f"{key}_worst_mean_sigma_decile_90"] = min(deciles)
    if "digits" in SETS:
        res["digits"] = _summary([_classification(s) for s in seeds])
    aims = _aims(res)
    sine = res.get("sine")
    line = (f"uq_methods ({len(seeds)} seeds, {', '.join(SETS)})"
            + (f": sine NLL seed-ensemble {sine['seed_nll'][0]:.3f} vs true {sine['true_nll'][0]:.3f}" if sine else "")
            + f"; aims met {sum(aims.values())}/{len(aims)}")
    return {"benchmark": "uq_methods", "line": line, "results": res, "aims": aims, "seeds": len(seeds),
            "comparison": "greedy / seed / bootstrap ensembles; split, Mondrian, jackknife+-after-bootstrap, CV+ "
                          "intervals; temperature scaling, APS/RAPS against MAPIE's APS; [mean, SE] over seeds"}
