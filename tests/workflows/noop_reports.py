"""Zero-length trials with 2 suggests and 3 reports (the 100,000-trial shape); trials whose
number is in ``NOOP_PRINT`` (comma-separated) print a line, so they get a folder and a log."""

import os

import hpwf

PRINT = {int(n) for n in os.environ.get("NOOP_PRINT", "").split(",") if n}


def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    y = trial.suggest_float("y", 0, 1)
    value = (x - 0.3) ** 2 + (y - 0.7) ** 2
    for step in range(3):
        trial.report(value * (3 - step), step)
    if trial.number in PRINT:
        print(f"trial {trial.number} says hello")
    return value


search = hpwf.Search(direction="minimize", n_trials=int(os.environ.get("NOOP_TRIALS", "12")), sampler="random", seed=0)
