"""A fast search-then-ensemble workflow for the job-array tests: members take the top-2 configurations.

``MEMBER_FAIL_ONCE=PATH`` makes member 1 fail on its first attempt (it creates PATH);
``MEMBER_SLEEP`` slows every member down; ``MEMBER_RANKS=K`` trains each member on K MPI ranks
(each rank leaves a file ``rank<R>-of-<K>`` holding its Slurm job id in the member's folder).
"""

import os
import time

import numpy as np

import hpwf

search = hpwf.Search(direction="minimize", n_trials=6, sampler="random", seed=2)


def objective(trial):
    x = trial.suggest_float("x", -3, 3)
    return (x - 1) ** 2


def train_member(member: hpwf.Member) -> float:
    rng = np.random.default_rng(7)
    y = rng.normal(member.params["x"], 0.5, 200)
    in_bag, out_of_bag = member.bootstrap(len(y))
    (member.folder / f"rank{member.group.rank}-of-{member.group.size}").write_text(os.environ.get("SLURM_JOB_ID", ""))
    time.sleep(float(os.environ.get("MEMBER_SLEEP", "0")))
    marker = os.environ.get("MEMBER_FAIL_ONCE")
    if marker and member.index == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("planted member failure")
    print(f"member {member.index} pid {os.getpid()} job {os.environ.get('SLURM_JOB_ID')} "
          f"task {os.environ.get('SLURM_ARRAY_TASK_ID')}")
    mu, var = y[in_bag].mean(), y[in_bag].var()
    y_test = np.random.default_rng(11).normal(1.0, 0.5, 50)  # one test set for every member
    member.save_predictions(y=y_test, mean=np.full(50, mu), var=np.full(50, var))
    return float(((y[out_of_bag] - mu) ** 2).mean())


ensemble = hpwf.Ensemble(members=4, train=train_member, top_k=2, seed=5,
                         ranks_per_trial=int(os.environ.get("MEMBER_RANKS", "1")))
