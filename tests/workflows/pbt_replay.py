"""PBT over a deterministic objective (tests/objectives.py ``pbt_walk``), for ``hpwf replay``'s tests."""

import hpwf
from tests.objectives import pbt_walk

search = hpwf.Search(direction="minimize", n_trials=12, sampler="random", scheduler="pbt", population=4,
                     interval=2, scheduler_options={"quantile": 0.25}, seed=0)


def objective(trial: hpwf.Trial) -> float:
    return pbt_walk(trial, steps=6)
