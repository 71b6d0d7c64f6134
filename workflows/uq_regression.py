"""Heteroscedastic 1-D regression with known noise: search, greedy ensemble, conformal intervals.

y = sin(x) + ε, ε ~ N(0, (0.01 + |x − 5| / 10)²), x ∈ [0, 10] (seeded). Each model is an MLP
with a Gaussian head (mean and variance, trained with the Gaussian NLL). The search tunes it;
every trial saves its validation, calibration and test predictions (and 30 MC-dropout passes).
Greedy selection (Caruana, with replacement) then picks the trials whose mixture has the best
validation NLL; K = 8 members retrain those configurations on bootstrap resamples (in
proportion to their weights), and hpwf combines them as a mixture: total variance = aleatoric
(mean of member variances) + epistemic (variance of member means). Split-conformal
calibration on the calibration set gives intervals with finite-sample coverage.

    hpwf run workflows/uq_regression.py && hpwf report runs/<its run dir>
"""

from __future__ import annotations

import functools

import numpy as np

import hpwf

search = hpwf.Search(direction="minimize", n_trials=8, sampler="tpe", seed=0)  # validation NLL


def noise_std(x: np.ndarray) -> np.ndarray:
    return 0.01 + np.abs(x - 5.0) / 10.0


@functools.cache
def data(seed: int = 0) -> dict[str, np.ndarray]:
    """Train/validation/test sets drawn from the known generating process."""
    rng = np.random.default_rng(seed)
    draw = lambda n: rng.uniform(0, 10, n)  # noqa: E731
    sets = {}
    for name, n in (("train", 1200), ("val", 400), ("cal", 400), ("test", 1000)):
        x = np.sort(draw(n))
        sets[f"x_{name}"], sets[f"y_{name}"] = x, np.sin(x) + rng.normal(0, noise_std(x))
    return sets


def fit(params: dict, x: np.ndarray, y: np.ndarray, seed: int, report=None):
    """Train a mean-variance MLP; returns the model. ``report(epoch_nll, epoch)`` if given."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    hidden, dropout = int(params["hidden"]), float(params.get("dropout", 0.1))
    body = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))
    opt = torch.optim.Adam(body.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    xt = torch.tensor((x[:, None] - 5) / 3, dtype=torch.float32)
    yt = torch.tensor(y[:, None], dtype=torch.float32)
    loss_fn = nn.GaussianNLLLoss()
    for epoch in range(params.get("epochs", 400)):
        opt.zero_grad()
        mean, var = _split(body(xt))
        loss = loss_fn(mean, yt, var)
        loss.backward()
        opt.step()
        if report is not None and epoch % 50 == 49:
            report(float(loss), epoch)
    return body


def _split(out):
    import torch

    return out[:, :1], torch.nn.functional.softplus(out[:, 1:]) + 1e-6


def predict(model, x: np.ndarray, passes: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance; with ``passes`` > 0, that many MC-dropout passes (shape (T, N))."""
    import torch

    xt = torch.tensor((x[:, None] - 5) / 3, dtype=torch.float32)
    model.train(passes > 0)
    with torch.no_grad():
        outs = [_split(model(xt)) for _ in range(max(passes, 1))]
    means = np.stack([m.numpy()[:, 0] for m, _ in outs])
    variances = np.stack([v.numpy()[:, 0] for _, v in outs])
    return (means, variances) if passes else (means[0], variances[0])


def gaussian_nll(y, mean, var) -> float:
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + (y - mean) ** 2 / (2 * var)))


def hyperparameters(trial) -> dict:
    """The model's configuration; members replay it (``member.suggest_*`` return their values)."""
    return {
        "lr": trial.suggest_float("lr", 1e-3, 3e-2, log=True),
        "hidden": trial.suggest_int("hidden", 16, 96, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        "dropout": 0.1,
    }


def save_predictions(who, model, mc: bool) -> None:
    """Validation (for selection), calibration (for conformal) and test predictions (scored)."""
    d = data()
    for split in ("val", "cal", "test"):
        x = d[f"x_{split}"]
        mean, var = predict(model, x)
        extra = {}
        if mc and split != "val":  # MC dropout of this model, for comparison
            extra["mc_mean"], extra["mc_var"] = predict(model, x, passes=30)
        who.save_predictions(split, x=x, y=d[f"y_{split}"], mean=mean, var=var, **extra)


def objective(trial: hpwf.Trial) -> float:
    d = data()
    model = fit(hyperparameters(trial), d["x_train"], d["y_train"], trial.seed, report=trial.report)
    save_predictions(trial, model, mc=True)
    return gaussian_nll(d["y_val"], *predict(model, d["x_val"]))


def train_member(member: hpwf.Member) -> float:
    d = data()
    in_bag, out_of_bag = member.bootstrap(len(d["x_train"]))
    model = fit(hyperparameters(member), d["x_train"][in_bag], d["y_train"][in_bag], member.seed)
    save_predictions(member, model, mc=member.index == 0)
    member.save_weights(model.state_dict())
    oob = out_of_bag if len(out_of_bag) else in_bag
    return gaussian_nll(d["y_train"][oob], *predict(model, d["x_train"][oob]))


# Greedy selection of 8 rounds over the trials, 8 bootstrap members of the chosen configurations,
# conformal intervals. Without members=/train= the selected trials themselves form the ensemble.
ensemble = hpwf.Ensemble(select="greedy", size=8, members=8, train=train_member, calibrate="conformal", seed=0)
