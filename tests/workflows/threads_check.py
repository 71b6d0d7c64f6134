"""Every rank of every trial writes the thread counts it trains with (tests/test_threads.py).

torch is imported at the top, as most workflow files do: the agent must have set the thread
variables before it loads this file.
"""

import json
import os

import torch

import hpwf

search = hpwf.Search(
    direction="minimize", n_trials=int(os.environ.get("THREADS_TRIALS", "2")), sampler="random", seed=0,
    ranks_per_trial=int(os.environ.get("THREADS_RANKS", "1")),
    threads_per_trial=int(os.environ["THREADS_OPTION"]) if os.environ.get("THREADS_OPTION") else None,
)


def objective(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    seen = {var: os.environ.get(var) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    seen["torch"] = torch.get_num_threads()
    (trial.folder / f"threads.rank{trial.group.rank}.json").write_text(json.dumps(seen))
    if trial.group.comm is not None:
        trial.group.comm.barrier()  # the leader reports once every rank has written
    return x
