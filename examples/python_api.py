"""Run a search defined in Python (as in a notebook), without a workflow file.

    python examples/python_api.py [RUN_DIR]
"""

from __future__ import annotations

import sys

import hpwf


def objective(trial: hpwf.Trial) -> float:
    x = trial.suggest_float("x", -3, 3)
    y = trial.suggest_int("y", 0, 4)
    return (x - 1) ** 2 + y


if __name__ == "__main__":
    run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/python-api"
    workflow = hpwf.Workflow(objective=objective, search=hpwf.Search(direction="minimize", n_trials=6, seed=0))
    result = hpwf.run(workflow, workers=2, run_dir=run_dir, progress=False)
    print(f"complete: {result.summary['complete']}, best: {result.summary['best_value']:.4f}")
    print(hpwf.status(run_dir)["best_params"])
