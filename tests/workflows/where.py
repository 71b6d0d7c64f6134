"""A quick search for the multi-node tests: each trial records the host it ran on.

WHERE_TRIALS sets the budget, WHERE_SLEEP how long a trial takes, WHERE_RETRIES how often a
failed trial runs again, WHERE_RANKS the ranks per trial (rank R > 0 records ``host.rankR.txt``).
"""

import os
import socket
import time

import hpwf

search = hpwf.Search(
    direction="minimize",
    n_trials=int(os.environ.get("WHERE_TRIALS", "6")),
    sampler="random",
    seed=0,
    retries=int(os.environ.get("WHERE_RETRIES", "0")),
    heartbeat=float(os.environ.get("WHERE_HEARTBEAT", "10")),
    ranks_per_trial=int(os.environ.get("WHERE_RANKS", "1")),
)


def objective(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    rank = trial.group.rank
    (trial.folder / ("host.txt" if rank == 0 else f"host.rank{rank}.txt")).write_text(socket.gethostname())
    time.sleep(float(os.environ.get("WHERE_SLEEP", "0.5")))
    return x * x
