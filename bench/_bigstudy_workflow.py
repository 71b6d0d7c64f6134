"""The trial of `bench bigstudy`: zero length, 2 suggests and 3 reports (random sampler)."""

import hpwf

search = hpwf.Search(direction="minimize", n_trials=100_000, sampler="random", seed=0)


def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    y = trial.suggest_float("y", 0, 1)
    value = (x - 0.3) ** 2 + (y - 0.7) ** 2
    for step in range(3):
        trial.report(value * (3 - step), step)
    return value
