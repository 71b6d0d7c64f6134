"""Trial 0's leader (group rank 0) hangs far past its trial_timeout, its heartbeat beating on;
its other rank and every other trial return at once. Trials run on 2 ranks.

HUNG_S sets how long the leader hangs; when it returns it writes ``leader_returned`` (its
time) into trial 0's folder.
"""

import os
import time
from pathlib import Path

import hpwf

search = hpwf.Search(direction="minimize", n_trials=6, sampler="random", seed=0, trial_timeout=3.0, heartbeat=2.0,
                     ranks_per_trial=2)


def objective(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    if trial.number == 0 and trial.group.rank == 0:
        time.sleep(float(os.environ.get("HUNG_S", "60")))
        Path(trial.folder).mkdir(parents=True, exist_ok=True)
        (Path(trial.folder) / "leader_returned").write_text(str(time.time()))
    return x * x
