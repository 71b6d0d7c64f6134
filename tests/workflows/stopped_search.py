"""Reproduction 4 of the engine issue: a search of slow trials with an ensemble after it."""

import os
import time

import numpy as np

import hpwf

search = hpwf.Search(direction="minimize", n_trials=8, sampler="random")


def objective(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(float(os.environ.get("TRIAL_SLEEP", "3")))
    return x


def train_member(member: hpwf.Member) -> float:
    y = np.zeros(10)
    member.save_predictions(y=y, mean=y, var=y + 1)
    return 0.0


ensemble = hpwf.Ensemble(members=2, train=train_member, top_k=1)
