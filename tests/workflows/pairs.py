"""Trials of two ranks launched with mpirun: each trial's rank 0 connects to the hub afresh.

The security tests use it so that agents keep connecting while the hub is under attack.
"""

import os
import time

import hpwf

search = hpwf.Search(direction="minimize", n_trials=int(os.environ.get("PAIRS_TRIALS", "6")), sampler="random",
                     pruner="none", ranks_per_trial=2, seed=0, trial_timeout=300,
                     heartbeat=60)  # a loaded test machine may take long to start mpirun


def objective(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    time.sleep(float(os.environ.get("PAIRS_SLEEP", "1")))
    return x * x
