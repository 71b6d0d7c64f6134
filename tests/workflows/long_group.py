"""Reproduction 1 of the engine issue: a 2-rank Horovod trial that runs 5x its heartbeat."""

import os
import time

import hpwf
from hpwf.workflow import parallel

BEAT = float(os.environ.get("LONG_GROUP_BEAT", "1.0"))
search = hpwf.Search(direction="minimize", n_trials=1, ranks_per_trial=2, heartbeat=BEAT, sampler="random")


def objective(trial: hpwf.Trial) -> float:
    parallel.horovod(trial)
    value = 0.0
    for epoch in range(5):
        time.sleep(BEAT)
        value = parallel.average(float(epoch + trial.group.rank), trial)
        trial.report(value, epoch)
    return value
