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
- The four searches of a seed run at the same time, each ``hpwf.run`` in its own process (so a
  loaded machine gives them the same share); the epochs they count do not depend on it.
- epochs to target = the epochs trained by the whole run (all trials, all ranks' work counted per
  epoch) up to the moment the first trial reaching the target completed, in clock order. A search
  that never reaches it is counted with its whole run's epochs and marked.
"""

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import ROOT, env, quiet_optuna, rnd, scratch

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


def _one(wf_path: Path, method: str, seed: int, n_trials: int, quick: bool, run_dir: Path) -> None:
    """Run one search (in its own process: ``python -m bench.search_efficiency METHOD SEED ...``)."""
    import hpwf

    quiet_optuna()
    wf = hpwf.load(wf_path)
    search = dataclasses.replace(searches(wf, n_trials, quick)[method], seed=seed)
    start = time.perf_counter()
    hpwf.run(dataclasses.replace(wf, search=search), workers=WORKERS, run_dir=run_dir, progress=False)
    (run_dir / "bench_wall_s").write_text(f"{time.perf_counter() - start:.1f}")


def _load(run_dir: Path) -> dict[str, Any]:
    import hpwf

    study = hpwf.load_study(run_dir)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    times = _epoch_times(run_dir)
    return {
        "trials": trials, "best": study.best_value, "times": times, "epochs_total": len(times),
        "pruned": sum(t.state.name == "PRUNED" for t in trials), "n_trials": len(trials),
        "wall_s": float((run_dir / "bench_wall_s").read_text()),
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
        for seed in seeds:  # the four searches of a seed run side by side, each in its own process
            procs = {name: subprocess.Popen(
                [sys.executable, "-m", "bench.search_efficiency", name, str(seed), str(n_trials), str(int(quick)),
                 str(folder / f"{name}-{seed}")], cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True) for name in plans}
            for name, proc in procs.items():
                _, err = proc.communicate()
                if proc.returncode:
                    raise RuntimeError(f"search {name} (seed {seed}) exited {proc.returncode}: {err[-2000:]}")
            runs = {name: _load(folder / f"{name}-{seed}") for name in plans}
            target = runs["random"]["best"]
            row: dict[str, Any] = {"seed": seed, "target_accuracy": rnd(target)}
            for name, r in runs.items():
                epochs, hit = _epochs_to(r, target)
                row[name] = {"best": rnd(r["best"]), "epochs_to_target": epochs, "reached": hit,
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


if __name__ == "__main__":
    _method, _seed, _n, _quick, _dir = sys.argv[1:6]
    _one(WORKFLOW, _method, int(_seed), int(_n), bool(int(_quick)), Path(_dir))
