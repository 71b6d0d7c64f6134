"""Real CPU training on the local backend: do the agents share the cores? (issue 22)

The shipped quickstart (`workflows/quickstart.py`: a torch MLP on digits, TPE + ASHA) with 2
workers, side by side, alternating, in fresh processes with no thread variable set:

* ``hpwf default``: ``hpwf run workflows/quickstart.py --workers 2`` as a user types it;
* ``hpwf hand-tuned``: the same with ``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1``
  set by hand (what a user had to do before);
* ``hpwf oversubscribed``: ``--threads-per-trial <cores>``, every agent's torch on every core
  (what the default did before issue 22);
* ``optuna n_jobs=2``: ``study.optimize(objective, n_jobs=2)`` on the same objective (the same
  sampler and pruner, in memory), threads in one process as an Optuna user runs it.

Figure: finished (complete + pruned) trials per minute of the whole command, and epochs
trained per minute (pruning differs a little between runs). Headline: default / hand-tuned
(aim >= 0.95) and default / Optuna (aim > 1), ratios of medians over rounds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench._common import PY, ROOT, median, scratch, show, timed, write

QUICKSTART = ROOT / "workflows" / "quickstart.py"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

OPTUNA_SCRIPT = """
import contextlib, importlib.util, io, json, sys, time
import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
spec = importlib.util.spec_from_file_location("quickstart", {quickstart!r})
qs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qs)


class SeededTrial:  # the one name hpwf's Trial adds that the quickstart uses
    def __init__(self, trial):
        self._trial, self.seed = trial, trial.number

    def __getattr__(self, name):
        return getattr(self._trial, name)


study = optuna.create_study(direction="maximize",
                            sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True),
                            pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3))
with contextlib.redirect_stdout(io.StringIO()):  # the objective prints every epoch
    study.optimize(lambda t: qs.objective(SeededTrial(t)), n_trials={n_trials}, n_jobs=2)
finished = [t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"]
print(json.dumps({{"finished": len(finished), "epochs": sum(len(t.intermediate_values) for t in finished)}}))
"""


def _clean_env() -> None:
    """No thread variable inherited from the shell that runs the benchmark."""
    for var in THREAD_VARS:
        os.environ.pop(var, None)


def _hpwf(folder: Path, name: str, n_trials: int, extra_env: dict[str, str], flags: list[str]) -> dict[str, Any]:
    import hpwf

    run_dir = folder / f"{name}-{time.time_ns()}"
    command = [PY, "-m", "hpwf", "run", str(QUICKSTART), "--workers", "2", "--n-trials", str(n_trials),
               "--run-dir", str(run_dir), "--quiet", *flags]
    wall, _ = timed(command, extra_env=extra_env, timeout=900)
    trials = [t for t in hpwf.load_study(run_dir).trials if t.state.name in ("COMPLETE", "PRUNED")]
    return {"wall_s": round(wall, 2), "finished": len(trials), "epochs": sum(len(t.intermediate_values) for t in trials),
            "command": show(command, folder)}


def _optuna(folder: Path, n_trials: int) -> dict[str, Any]:
    import json

    script = write(folder / "optuna_njobs.py", OPTUNA_SCRIPT.format(quickstart=str(QUICKSTART), n_trials=n_trials))
    command = [PY, str(script)]
    wall, proc = timed(command, timeout=900)
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), **counts, "command": show(command, folder)}


def run(quick: bool = False) -> dict[str, Any]:
    _clean_env()
    n_trials, rounds = (6, 1) if quick else (16, 3)
    cores = len(os.sched_getaffinity(0))
    by_hand = {var: "1" for var in THREAD_VARS}
    variants = {
        "hpwf_default": lambda f: _hpwf(f, "default", n_trials, {}, []),
        "hpwf_hand_tuned": lambda f: _hpwf(f, "hand", n_trials, by_hand, []),
        "optuna_n_jobs_2": lambda f: _optuna(f, n_trials),
        "hpwf_oversubscribed": lambda f: _hpwf(f, "over", n_trials, {}, ["--threads-per-trial", str(cores)]),
    }
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    with scratch("cpu-training") as folder:
        for _ in range(rounds):  # alternating: a busy minute hits every variant alike
            for name, go in variants.items():
                rows[name].append(go(folder))
    per_min = {name: median([60 * r["finished"] / r["wall_s"] for r in rs]) for name, rs in rows.items()}
    epochs_min = {name: median([60 * r["epochs"] / r["wall_s"] for r in rs]) for name, rs in rows.items()}
    vs_hand = per_min["hpwf_default"] / per_min["hpwf_hand_tuned"]
    vs_optuna = per_min["hpwf_default"] / per_min["optuna_n_jobs_2"]
    text = ", ".join(f"{k} {v:.1f}" for k, v in per_min.items())
    return {
        "ratio": round(vs_hand, 3), "vs_optuna": round(vs_optuna, 3),
        "vs_oversubscribed": round(per_min["hpwf_default"] / per_min["hpwf_oversubscribed"], 3),
        "trials_per_min": {k: round(v, 1) for k, v in per_min.items()},
        "epochs_per_min": {k: round(v, 1) for k, v in epochs_min.items()},
        "aim": "default >= 0.95x hand-tuned and > Optuna n_jobs=2",
        "met": vs_hand >= 0.95 and vs_optuna > 1.0, "n_trials": n_trials, "rounds": rounds, "cores": cores,
        "rows": rows,
        "comparison": f"workflows/quickstart.py (torch MLP on digits, TPE+ASHA), {n_trials} trials, 2 workers, "
                      f"{rounds} alternating rounds, whole command: finished trials per minute, medians; hpwf default "
                      "/ OMP,MKL,OPENBLAS_NUM_THREADS=1 by hand / Optuna study.optimize(n_jobs=2) in memory / "
                      f"--threads-per-trial {cores} (the old default)",
        "command": "python -m bench cpu_training",
        "line": f"cpu_training: trials/min {text}; default / hand-tuned {vs_hand:.2f}x, default / Optuna {vs_optuna:.2f}x",
    }
