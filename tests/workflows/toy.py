"""A fast workflow for tests: a noisy quadratic 'trained' for a few 'epochs', no torch."""

import os
import time

import hpwf

search = hpwf.Search(direction="minimize", n_trials=12, sampler="tpe", pruner="median",
                     pruner_options={"n_startup_trials": 2, "n_warmup_steps": 1}, seed=1)

EPOCHS = int(os.environ.get("TOY_EPOCHS", "4"))
SLEEP = float(os.environ.get("TOY_SLEEP", "0.02"))


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    if os.environ.get("TOY_FAIL_ABOVE") and x > float(os.environ["TOY_FAIL_ABOVE"]):
        raise RuntimeError(f"toy failure for x={x:.3f}")
    loss = (x - 2) ** 2 + (0.5 if kind == "b" else 0.0)
    for epoch in range(EPOCHS):
        time.sleep(SLEEP)
        value = loss + 10.0 / (epoch + 1)
        print(f"epoch {epoch} value {value}")
        trial.report(value, epoch)
        if trial.should_prune():
            raise hpwf.TrialPruned()
    return loss
