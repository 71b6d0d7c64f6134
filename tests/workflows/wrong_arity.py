"""Reproduction 5 of the engine issue: two directions, an objective returning one value."""

import hpwf

search = hpwf.Search(directions=["minimize", "maximize"], n_trials=2, sampler="random", max_failures=10)


def objective(trial: hpwf.Trial) -> float:
    return trial.suggest_float("x", 0, 1)
