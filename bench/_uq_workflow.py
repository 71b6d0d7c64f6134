"""The UQ benchmark's workflow (bench/uq.py runs it): MLPs on three bundled data sets.

UQ_BENCH_DATA: "sine" (heteroscedastic, known noise), "diabetes", "breast_cancer_texture" (mean
texture from the 27 other features) or "digits" (scikit-learn's bundled copies, nothing downloaded). UQ_BENCH_MODE: "greedy" (the search, then greedy
selection of its trials, no retraining) or "bootstrap" (8 members of the best configuration
on bootstrap resamples, for `hpwf ensemble --from`). Both calibrate: split conformal and
Mondrian (regression), temperature scaling and APS/RAPS sets (digits).
UQ_BENCH_QUICK=1: small sizes (a smoke test). UQ_BENCH_SMALL=1: the reduced sizes of
``bench uq_pipeline`` (8 trials, a few hundred epochs, narrower MLPs, 5 members), figures over
many seeds. UQ_BENCH_SEED (default 0): the data split (and the sine's draw), the search's and
the members' seeds. Bootstrap members also save their out-of-bag training rows ("oob"), so the
bootstrap ensemble is calibrated by jackknife+-after-bootstrap too.

Regression models are MLPs with a Gaussian head (mean, variance; Gaussian NLL loss) and
dropout; every trial saves validation, calibration and test predictions, with 30 MC-dropout
passes on the calibration and test sets. Classification models are MLPs with a softmax.
"""

from __future__ import annotations

import functools
import os

import numpy as np

import hpwf

DATA = os.environ.get("UQ_BENCH_DATA", "sine")
MODE = os.environ.get("UQ_BENCH_MODE", "greedy")
QUICK = os.environ.get("UQ_BENCH_QUICK") == "1"
SMALL = os.environ.get("UQ_BENCH_SMALL") == "1"
SEED = int(os.environ.get("UQ_BENCH_SEED", "0"))
CLASSIFICATION = DATA == "digits"
EPOCHS = ({"sine": 800, "diabetes": 200, "breast_cancer_texture": 200, "digits": 80} if SMALL else
          {"sine": 1500, "diabetes": 400, "breast_cancer_texture": 400, "digits": 150})[DATA] // (5 if QUICK else 1)
PASSES = 10 if SMALL else 30
TRIALS, MEMBERS, ROUNDS = (4, 3, 3) if QUICK else (8, 5, 8) if SMALL else (16, 8, 10)
MAX_WIDTH = 48 if SMALL else 128
SINE_SIZES = (("train", 600), ("val", 300), ("cal", 500), ("test", 1000)) if SMALL else \
    (("train", 1200), ("val", 400), ("cal", 1000), ("test", 1000))
CALIBRATE = ["temperature", "aps", "raps"] if CLASSIFICATION else ["conformal", "mondrian"]

search = hpwf.Search(direction="minimize", n_trials=TRIALS, sampler="tpe", seed=SEED)  # validation NLL


def noise_std(x: np.ndarray) -> np.ndarray:
    """The sine's true noise level."""
    return 0.01 + np.abs(x - 5.0) / 10.0


@functools.cache
def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train/val/cal/test splits (x standardised on train; regression targets too)."""
    rng = np.random.default_rng(SEED)
    if DATA == "sine":
        sets = {}
        for name, n in SINE_SIZES:
            x = rng.uniform(0, 10, n)
            sets[name] = (x[:, None], np.sin(x) + rng.normal(0, noise_std(x)))
        return sets
    from sklearn import datasets

    if DATA == "breast_cancer_texture":  # a real continuous target: mean texture from the non-texture features
        bc = datasets.load_breast_cancer()
        keep = [i for i, f in enumerate(bc.feature_names) if "texture" not in f]
        x, y = bc.data[:, keep], bc.data[:, list(bc.feature_names).index("mean texture")]
    else:
        x, y = (datasets.load_digits if CLASSIFICATION else datasets.load_diabetes)(return_X_y=True)
    order = rng.permutation(len(y))
    x, y = x[order].astype(float), y[order].astype(float)
    cuts = np.cumsum([0.45, 0.15, 0.2]) * len(y)
    idx = np.split(np.arange(len(y)), cuts.astype(int))
    mu, sd = x[idx[0]].mean(0), x[idx[0]].std(0) + 1e-8
    x = (x - mu) / sd
    if not CLASSIFICATION:
        y = (y - y[idx[0]].mean()) / y[idx[0]].std()
    return {name: (x[i], y[i]) for name, i in zip(("train", "val", "cal", "test"), idx)}


def hyperparameters(trial) -> dict:
    """The model's configuration; bootstrap members replay it (member.suggest_*)."""
    return {"lr": trial.suggest_float("lr", 1e-3, 3e-2, log=True),
            "hidden": trial.suggest_int("hidden", 16, MAX_WIDTH, log=True),
            "layers": trial.suggest_int("layers", 1, 3),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            "dropout": trial.suggest_float("dropout", 0.02, 0.2)}


def fit(params: dict, x: np.ndarray, y: np.ndarray, seed: int):
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    width, layers = int(params["hidden"]), int(params["layers"])
    body: list = []
    for i in range(layers):
        body += [nn.Linear(x.shape[1] if i == 0 else width, width), nn.SiLU(), nn.Dropout(float(params["dropout"]))]
    model = nn.Sequential(*body, nn.Linear(width, 10 if CLASSIFICATION else 2))
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    xt = torch.tensor(x, dtype=torch.float32)
    if CLASSIFICATION:
        yt = torch.tensor(y, dtype=torch.long)
        loss_fn = lambda out: nn.functional.cross_entropy(out, yt)  # noqa: E731
    else:
        yt = torch.tensor(y[:, None], dtype=torch.float32)
        gauss = nn.GaussianNLLLoss()
        loss_fn = lambda out: gauss(out[:, :1], yt, _var(out))  # noqa: E731
    for _ in range(EPOCHS):
        opt.zero_grad()
        loss_fn(model(xt)).backward()
        opt.step()
        sched.step()
    return model


def _var(out):
    import torch

    return torch.nn.functional.softplus(out[:, 1:]) + 1e-6


def predict(model, x: np.ndarray, passes: int = 0) -> dict[str, np.ndarray]:
    """Eval-mode predictions; with ``passes``, also that many MC-dropout passes (train mode)."""
    import torch

    xt = torch.tensor(x, dtype=torch.float32)
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        model.eval()
        o = model(xt)
        if CLASSIFICATION:
            return {"probs": torch.softmax(o, 1).numpy()}
        out.update(mean=o[:, 0].numpy(), var=_var(o)[:, 0].numpy())
        if passes:
            model.train()
            mc = [model(xt) for _ in range(passes)]
            out.update(mc_mean=np.stack([m[:, 0].numpy() for m in mc]), mc_var=np.stack([_var(m)[:, 0].numpy() for m in mc]))
    return out


def nll(model, split: str) -> float:
    x, y = data()[split]
    p = predict(model, x)
    if CLASSIFICATION:
        return float(-np.mean(np.log(np.maximum(p["probs"][np.arange(len(y)), y.astype(int)], 1e-12))))
    return float(np.mean(0.5 * np.log(2 * np.pi * p["var"]) + (y - p["mean"]) ** 2 / (2 * p["var"])))


def save_all(who, model) -> None:
    for split in ("val", "cal", "test"):
        x, y = data()[split]
        extra = {"x": x[:, 0]} if DATA == "sine" else {}
        who.save_predictions(split, y=y, **extra, **predict(model, x, 0 if split == "val" or CLASSIFICATION else PASSES))


def objective(trial: hpwf.Trial) -> float:
    x, y = data()["train"]
    model = fit(hyperparameters(trial), x, y, trial.seed)
    save_all(trial, model)
    return nll(model, "val")


def train_member(member: hpwf.Member) -> float:
    x, y = data()["train"]
    in_bag, out_of_bag = member.bootstrap(len(y))
    model = fit(hyperparameters(member), x[in_bag], y[in_bag], member.seed)
    save_all(member, model)
    if not CLASSIFICATION:  # out-of-bag rows: jackknife+-after-bootstrap needs no calibration split
        member.save_predictions("oob", index=out_of_bag, y=y[out_of_bag], **predict(model, x[out_of_bag]))
    return nll(model, "val")


if MODE == "bootstrap":
    ensemble = hpwf.Ensemble(members=MEMBERS, train=train_member, top_k=1, seed=SEED,
                             calibrate=CALIBRATE + ([] if CLASSIFICATION else ["jackknife+"]))
else:
    ensemble = hpwf.Ensemble(select="greedy", size=ROUNDS, calibrate=CALIBRATE)
