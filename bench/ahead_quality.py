"""Does sampling ahead of the round trip change what a sampler finds? (issue 13)

The same search, with ``sample_ahead=True`` (values for the seen search space travel with the
trial) and ``False`` (every ``suggest_*`` asks the coordinator), for TPE, GP and CMA-ES, on
the same seeds, 4 workers. The objective is a shifted 4-d quadratic with a cosine ripple plus
an integer and a categorical parameter (a fixed space, so every trial after the first ones is
sampled ahead); it sleeps a little so trials overlap. Quality is the best value after the
budget (lower is better; 0 is the optimum); the headline is the mean best with sampling
ahead divided by the mean best without, per sampler.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from bench._common import PY, env, scratch, summary, write

WORKFLOW = """
import math, time
import hpwf

search = hpwf.Search(direction="minimize", n_trials={n_trials}, sampler="{sampler}", seed={seed},
                     sample_ahead={ahead})

def objective(trial):
    xs = [trial.suggest_float(f"x{{i}}", -3, 3) for i in range(4)]
    n = trial.suggest_int("n", 0, 8)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    time.sleep(0.03)
    value = sum((x - 0.5 * i) ** 2 + 0.3 * (1 - math.cos(3 * (x - 0.5 * i))) for i, x in enumerate(xs))
    return value + 0.2 * abs(n - 5) + (0.0 if kind == "b" else 0.5)
"""

SAMPLERS = {"tpe": 60, "cmaes": 60, "gp": 30}  # trials each (GP's asks are the slow ones)


def _best(folder: Path, sampler: str, seed: int, ahead: bool, n_trials: int) -> float:
    wf = write(folder / f"{sampler}-{seed}-{ahead}.py",
               WORKFLOW.format(n_trials=n_trials, sampler=sampler, seed=seed, ahead=ahead))
    run_dir = folder / f"run-{sampler}-{seed}-{ahead}"
    subprocess.run([PY, "-m", "hpwf", "run", str(wf), "--workers", "4", "--run-dir", str(run_dir), "--quiet"],
                   check=True, capture_output=True, env=env(), timeout=900)
    return float(summary(run_dir)["best_value"])


def run(quick: bool = False) -> dict[str, Any]:
    seeds = [0] if quick else [0, 1, 2, 3, 4]
    rows: dict[str, dict[str, list[float]]] = {}
    with scratch("ahead-quality") as folder:
        for sampler, n_trials in SAMPLERS.items():
            n_trials = 12 if quick else n_trials
            rows[sampler] = {"ahead": [], "round_trip": []}
            for seed in seeds:  # interleaved, same seed side by side
                rows[sampler]["ahead"].append(_best(folder, sampler, seed, True, n_trials))
                rows[sampler]["round_trip"].append(_best(folder, sampler, seed, False, n_trials))
    means = {s: {k: sum(v) / len(v) for k, v in r.items()} for s, r in rows.items()}
    ratios = {s: m["ahead"] / m["round_trip"] for s, m in means.items()}
    worst = max(ratios.values())
    text = ", ".join(f"{s} {m['ahead']:.3f} vs {m['round_trip']:.3f} ({ratios[s]:.2f}x)" for s, m in means.items())
    return {
        "ratio": round(worst, 3), "per_sampler": {s: round(r, 3) for s, r in ratios.items()},
        "best_values": rows, "seeds": seeds, "trials": SAMPLERS,
        "comparison": "mean best value over seeds with sample_ahead=True / with sample_ahead=False "
                      "(lower is better), same seeds and budget, 4 workers; headline: the worst sampler",
        "line": f"ahead_quality: mean best, sampled ahead vs round trip: {text}",
    }
