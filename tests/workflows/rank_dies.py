"""One rank of one group SIGKILLs itself mid-trial while its peer waits in an allreduce."""

import os
import signal
import time

import hpwf
from hpwf.workflow import parallel
from tests.objectives import first_time

search = hpwf.Search(direction="minimize", n_trials=int(os.environ.get("DIE_TRIALS", "6")),
                     sampler="random", ranks_per_trial=2, seed=0)


def objective(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    for epoch in range(3):
        time.sleep(0.2)
        if epoch == 1 and trial.group.rank == 1 and first_time(os.environ["DIE_MARKER"], trial.number):
            os.kill(os.getpid(), signal.SIGKILL)
        value = parallel.average(x + epoch, trial)  # the peer of a dead rank blocks here
        trial.report(value, epoch)
    return x

