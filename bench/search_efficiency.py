"""(4) Search efficiency on workflows/mnist1d_mlp.py: epochs spent until the best validation accuracy
of plain random search is reached, for four searches side by side, averaged over seeds.

For each seed, the shipped workflow runs four times through ``hpwf.run(..., workers=2)`` with its
``hpwf.Search`` copied by ``dataclasses.replace``:

- random: ``sampler="random", pruner="none"``, ``n_trials`` trials;
- TPE+ASHA (stop only): ``sampler="tpe", pruner="asha"`` (``min_resource=2, reduction_factor=3``);
- TPE+SH with resumption: ``sampler="tpe", scheduler="asha-resume"`` (same rungs, ``max_resource=24``):
  a trial not promotable at a rung pauses and resumes from its checkpoint once promoted;
- PBT: ``sampler="random", scheduler="pbt", population=8, interval=4`` (6 generations of 4 epochs:
  ``n_trials`` = 48 segments = 8 x 24 epochs), exploring lr, weight decay and dropout.

The objective is the workflow's (24 epochs; the validation accuracy reported after each; it pauses
and restores when a scheduler asks).

- Every epoch trained is one row of a trial folder's ``metrics.csv`` (with its clock time); a
  resumed trial or a PBT segment never repeats an epoch, so epochs are counted once.
- target = the best accuracy of the random search (a completed trial's value; for PBT a segment's
  value is its model's accuracy at the segment's end, a checkpoint that exists).
- epochs to target = the epochs trained by the whole run (all trials, all ranks' work counted per
  epoch) up to the moment the first trial reaching the target completed, in clock order. A search
  that never reaches it is counted with its whole run's epochs and marked.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path
from typing import Any

from bench._common import ROOT, quiet_optuna, rnd, scratch

WORKFLOW = ROOT / "workflows" / "mnist1d_mlp.py"
WORKERS = 2
METHODS = ("random", "tpe_asha", "tpe_sha_resume", "pbt")
PBT_POPULATION, PBT_INTERVAL, EPOCHS = 8, 4, 24


def _epoch_times(run_dir: Path) -> list[float]:
    times = []
    for path in (run_dir / "trials").glob("*/metrics.csv"):
        with path.open() as f:
            times += [float(row["time"]) for row in csv.DictReader(f)]
    return sorted(times)


def _one(wf: Any, search: Any, run_dir: Path) -> dict[str, Any]:
    import hpwf

    start = time.perf_counter()
    result = hpwf.run(dataclasses.replace(wf, search=search), workers=WORKERS, run_dir=run_dir, progress=False)
    wall = time.perf_counter() - start
    trials = [t for t in result.study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    return {
        "trials": trials, "best": result.summary["best_value"], "wall_s": rnd(wall, 1), "times": _epoch_times(run_dir),
        "epochs_total": len(_epoch_times(run_dir)), "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "n_trials": len(trials),
    }


def _epochs_to(run: dict[str, Any], target: float) -> tuple[int, bool]:
    reached = [t.datetime_complete.timestamp() for t in run["trials"]
               if t.state.name == "COMPLETE" and t.value is not None and t.value >= target - 1e-12]
    if not reached:
        return run["epochs_total"], False
    when = min(reached)
    return sum(1 for t in run["times"] if t <= when), True


def searches(wf: Any, n_trials: int, quick: bool) -> dict[str, Any]:
    base = dataclasses.replace(wf.search, pruner="none", pruner_options={}, n_trials=n_trials)
    rungs = {"min_resource": 2, "reduction_factor": 3}
    population = 4 if quick else PBT_POPULATION
    return {
        "random": dataclasses.replace(base, sampler="random"),
        "tpe_asha": dataclasses.replace(base, sampler="tpe", pruner="asha", pruner_options=rungs),
        "tpe_sha_resume": dataclasses.replace(base, sampler="tpe", scheduler="asha-resume",
                                              scheduler_options={**rungs, "max_resource": EPOCHS}),
        "pbt": dataclasses.replace(base, sampler="random", scheduler="pbt", population=population,
                                   interval=PBT_INTERVAL, n_trials=population * (EPOCHS // PBT_INTERVAL),
                                   scheduler_options={"quantile": 0.25}),
    }


def run(quick: bool = False, seeds: list[int] | None = None) -> dict[str, Any]:
    """The figures; ``seeds`` overrides the seeds (default 0, 1, 2; one with ``quick``)."""
    import hpwf

    quiet_optuna()
    default, n_trials = ([0], 6) if quick else ([0, 1, 2], 20)
    seeds = seeds if seeds is not None else default
    wf = hpwf.load(WORKFLOW)
    assert wf.search is not None
    plans = searches(wf, n_trials, quick)
    rows: list[dict[str, Any]] = []
    with scratch("search") as folder:
        for seed in seeds:
            runs = {name: _one(wf, dataclasses.replace(search, seed=seed), folder / f"{name}-{seed}")
                    for name, search in plans.items()}
            target = runs["random"]["best"]
            row: dict[str, Any] = {"seed": seed, "target_accuracy": rnd(target)}
            for name, r in runs.items():
                epochs, reached = _epochs_to(r, target)
                row[name] = {"best": rnd(r["best"]), "epochs_to_target": epochs, "reached": reached,
                             "epochs_total": r["epochs_total"], "pruned": r["pruned"], "trials": r["n_trials"],
                             "wall_s": r["wall_s"]}
            rows.append(row)
    mean = {m: sum(r[m]["epochs_to_target"] for r in rows) / len(rows) for m in METHODS}
    total = {m: sum(r[m]["epochs_total"] for r in rows) / len(rows) for m in METHODS}
    ratio = {m: rnd(mean[m] / mean["random"], 3) for m in METHODS}
    reached = {m: sum(r[m]["reached"] for r in rows) for m in METHODS}
    return {
        "benchmark": "search_efficiency",
        "comparison": f"workflows/mnist1d_mlp.py, {len(seeds)} seeds, {WORKERS} workers: epochs trained (clock order) "
                      "until a completed trial reaches the best accuracy of random search; random and TPE+ASHA "
                      f"(min_resource=2, reduction_factor=3) with {n_trials} trials, TPE+SH with resumption "
                      f"(asha-resume, same rungs) with {n_trials} trials, PBT (population {plans['pbt'].population}, "
                      f"interval {PBT_INTERVAL}, {plans['pbt'].n_trials} segments)",
        "command": "python -m bench search_efficiency",
        "seeds": seeds, "n_trials": n_trials,
        "mean_epochs_to_target": mean, "mean_epochs_total": total, "ratio_to_random": ratio,
        "seeds_reaching_target": reached,
        "aim": "tpe_sha_resume <= 1/3 of random and < tpe_asha; pbt <= 1/2 of random",
        "rows": rows,
        "line": "search_efficiency (epochs to random's best, / random): "
                + ", ".join(f"{m} {ratio[m]:.2f}x ({mean[m]:.0f} epochs, {reached[m]}/{len(rows)} reached)" for m in METHODS)
                + "; whole runs " + ", ".join(f"{m} {total[m]:.0f}" for m in METHODS),
    }
