"""A fast UQ workflow for tests (numpy only): greedy selection + conformal, optional bootstrap members.

y = sin(x) + N(0, (0.05 + |x - 5| / 10)^2). A model is a ridge polynomial for the mean and one
for the log-variance, built by ``build(trial)`` from its suggested parameters; members replay
the same builder (``build(member)``). Trials save validation, calibration and test predictions.

Members save their out-of-bag predictions ("oob"), so the ensemble is calibrated three ways:
split conformal, Mondrian by predicted sigma, and jackknife+-after-bootstrap.

Environment: UQ_MEMBERS (default 4; 0 = no retraining, the trials themselves form the
ensemble), UQ_TRIALS (default 8), UQ_SIZE (greedy rounds, default 4), UQ_SELECT=topk (the 2
best trials by the search's value instead of greedy), UQ_PLANT=1 (a trial's value is minus its
number: later trials are better), UQ_SELECT_OPTIONS (JSON: greedy's select_options).
"""

import functools
import json
import os

import numpy as np

import hpwf

search = hpwf.Search(direction="minimize", n_trials=int(os.environ.get("UQ_TRIALS", "8")), sampler="random", seed=1)


@functools.cache
def data():
    rng = np.random.default_rng(0)
    sets = {}
    for name, n in (("train", 300), ("val", 200), ("cal", 300), ("test", 600)):
        x = rng.uniform(0, 10, n)
        sets[name] = (x, np.sin(x) + rng.normal(0, 0.05 + np.abs(x - 5) / 10))
    return sets


def build(trial):
    """The model: what the objective and the members both call (members replay the params)."""
    return {"degree": trial.suggest_int("degree", 2, 9), "ridge": trial.suggest_float("ridge", 1e-6, 1e-1, log=True),
            "var_degree": trial.suggest_categorical("var_degree", [0, 2, 4])}


def features(x, degree):
    return np.vander((x - 5) / 5, degree + 1)


def fit(model, x, y):
    a = features(x, model["degree"])
    w = np.linalg.solve(a.T @ a + model["ridge"] * np.eye(a.shape[1]), a.T @ y)
    b = features(x, model["var_degree"])
    log_r2 = np.log((y - a @ w) ** 2 + 1e-8) + 1.27  # E[log chi2_1] = -1.27
    v = np.linalg.lstsq(b, log_r2, rcond=None)[0]
    return lambda xs: (features(xs, model["degree"]) @ w, np.exp(features(xs, model["var_degree"]) @ v))


def save_all(who, predict):
    for split in ("val", "cal", "test"):
        x, y = data()[split]
        mean, var = predict(x)
        who.save_predictions(split, x=x, y=y, mean=mean, var=var)


def objective(trial):
    predict = fit(build(trial), *data()["train"])
    save_all(trial, predict)
    x, y = data()["val"]
    mean, var = predict(x)
    if os.environ.get("UQ_PLANT"):
        return -float(trial.number)
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + (y - mean) ** 2 / (2 * var)))


def train_member(member):
    x, y = data()["train"]
    in_bag, out_of_bag = member.bootstrap(len(x))
    predict = fit(build(member), x[in_bag], y[in_bag])  # the objective's own builder, replayed
    save_all(member, predict)
    mean, var = predict(x[out_of_bag])
    member.save_predictions("oob", index=out_of_bag, x=x[out_of_bag], y=y[out_of_bag], mean=mean, var=var)
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + (y[out_of_bag] - mean) ** 2 / (2 * var)))


members = int(os.environ.get("UQ_MEMBERS", "4"))
selection = {"select": "topk", "top_k": 2} if os.environ.get("UQ_SELECT") == "topk" else \
    {"select": "greedy", "size": int(os.environ.get("UQ_SIZE", "4"))}
if os.environ.get("UQ_SELECT_OPTIONS"):
    selection["select_options"] = json.loads(os.environ["UQ_SELECT_OPTIONS"])
calibrate = ["conformal", "mondrian", "jackknife+"] if members else "conformal"  # jackknife+: members' out-of-bag rows
ensemble = hpwf.Ensemble(**selection, calibrate=calibrate, calibrate_options={"beta": 0.01},
                         **({"members": members, "train": train_member} if members else {}))
