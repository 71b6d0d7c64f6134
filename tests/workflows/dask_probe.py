"""Each trial prints the addresses of the Dask worker it runs on and of its scheduler."""

import hpwf

search = hpwf.Search(direction="minimize", n_trials=2, sampler="random", pruner="none", seed=0)


def objective(trial: hpwf.Trial) -> float:
    from distributed import get_worker

    worker = get_worker()
    print(f"dask worker {worker.address} scheduler {worker.scheduler.address}")
    return trial.suggest_float("x", 0.0, 1.0)
