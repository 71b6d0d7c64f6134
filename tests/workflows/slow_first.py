"""Trial 0 sleeps far past its trial_timeout; every other trial returns at once.

SLOW_TRIALS sets the budget, SLOW_S how long trial 0 sleeps.
"""

import os
import time

import hpwf

search = hpwf.Search(
    direction="minimize",
    n_trials=int(os.environ.get("SLOW_TRIALS", "40")),
    sampler="random",
    seed=0,
    trial_timeout=3.0,
    heartbeat=2.0,
)


def objective(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    if trial.number == 0:
        time.sleep(float(os.environ.get("SLOW_S", "60")))
    return x * x
