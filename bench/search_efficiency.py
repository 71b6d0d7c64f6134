"""(4) Search efficiency: epochs spent until the best validation accuracy of plain random search is
reached, for four searches, averaged over seeds. Two setups share this module:

- ``search_efficiency``: workflows/mnist1d_mlp.py, ``hpwf run --workers 2`` (one rank per trial),
  24 epochs, 20 trials, PBT population 8 x interval 4; the four searches of a seed run side by side.
- ``search_efficiency_nt3`` (bench/search_efficiency_nt3.py): workflows/nt3_cnn.py under
  ``mpirun -np 5 ... --backend mpi`` (2 groups of ``ranks_per_trial=2`` Horovod ranks), counted in
  rank-epochs; sizes in that module.

For each seed and search, a generated file imports the workflow and sets its ``hpwf.Search``
(``dataclasses.replace``), then runs through ``python -m hpwf run``:

- random: ``sampler="random", pruner="none"``, ``n_trials`` trials;
- TPE+ASHA (stop only): ``sampler="tpe", pruner="asha"`` with the setup's rungs;
- TPE+SH with resumption: ``sampler="tpe", scheduler="asha-resume"`` (same rungs, ``max_resource``
  = the workflow's epochs): a trial not promotable at a rung pauses, resumes from its checkpoint;
- PBT: ``sampler="random", scheduler="pbt"`` with the setup's population and interval
  (``n_trials`` = population x epochs / interval segments), exploring the float params.

- Every epoch trained is one row of a trial folder's ``metrics.csv`` (with its clock time), worth
  the trial's ranks (rank-epochs); a resumed trial or a PBT segment never repeats an epoch.
- target = the best accuracy of the random search (for PBT a segment's value is its model's).
- epochs to target = the (rank-)epochs trained by the whole run up to the moment the first trial
  reaching the target completed, in clock order. A search that never reaches it is counted with
  its whole run's epochs and marked. The counts do not depend on the machine's load.
"""

from __future__ import annotations

import csv
import dataclasses
import subprocess
from pathlib import Path
from typing import Any

from bench._common import MPIRUN, PY, ROOT, env, quiet_optuna, rnd, scratch, show, summary
from bench.search_efficiency_sim import interval

METHODS = ("random", "tpe_asha", "tpe_sha_resume", "pbt")


@dataclasses.dataclass(frozen=True)
class Setup:
    """One benchmark's workflow, launch and sizes (``quick`` values for a smoke test)."""

    name: str
    workflow: Path
    epochs: int  # the workflow's EPOCHS (checked)
    ranks: int  # ranks per trial: an epoch row counts this many rank-epochs
    launch: tuple[str, ...]  # before ``python -m hpwf run FILE``
    backend: tuple[str, ...]  # after it
    side_by_side: bool  # the four searches of a seed at once, or one after another
    seeds: tuple[tuple[int, ...], tuple[int, ...]]  # (full, quick)
    n_trials: tuple[int, int]
    population: tuple[int, int]
    interval: tuple[int, int]
    rungs: tuple[int, int]  # min_resource, reduction_factor


MNIST1D = Setup("search_efficiency", ROOT / "workflows" / "mnist1d_mlp.py", 24, 1, (), ("--workers", "2"),
                True, ((0, 1, 2), (0,)), (20, 6), (8, 4), (4, 4), (2, 3))
NT3 = Setup("search_efficiency_nt3", ROOT / "workflows" / "nt3_cnn.py", 8, 2, (MPIRUN, "-np", "5"),
            ("--backend", "mpi"), False, ((0, 1, 2, 3, 4, 5), (0,)), (12, 4), (4, 2), (2, 4), (2, 2))
SETUPS = {MNIST1D.name: MNIST1D, NT3.name: NT3}

FILE = '''"""One search of bench/search_efficiency.py: {workflow}, {method}, seed {seed}."""
import dataclasses
import sys

sys.path.insert(0, {folder!r})
import {module} as _workflow  # noqa: E402

from bench.search_efficiency import SETUPS, searches  # noqa: E402

search = dataclasses.replace(searches(_workflow.search, SETUPS[{setup!r}], {quick})[{method!r}], seed={seed})
objective = _workflow.objective
'''


def searches(base_search: Any, setup: Setup, quick: bool) -> dict[str, Any]:
    """The four searches, copies of the workflow's ``base_search``."""
    q = int(quick)
    base = dataclasses.replace(base_search, pruner="none", pruner_options={}, n_trials=setup.n_trials[q])
    rungs = {"min_resource": setup.rungs[0], "reduction_factor": setup.rungs[1]}
    population, interval = setup.population[q], setup.interval[q]
    return {
        "random": dataclasses.replace(base, sampler="random"),
        "tpe_asha": dataclasses.replace(base, sampler="tpe", pruner="asha", pruner_options=rungs),
        "tpe_sha_resume": dataclasses.replace(base, sampler="tpe", scheduler="asha-resume",
                                              scheduler_options={**rungs, "max_resource": setup.epochs}),
        "pbt": dataclasses.replace(base, sampler="random", scheduler="pbt", population=population,
                                   interval=interval, n_trials=population * (setup.epochs // interval),
                                   scheduler_options={"quantile": 0.25}),
    }


def epoch_rows(run_dir: Path, ranks: dict[int, int], default: int) -> list[tuple[float, int]]:
    """(clock time, rank-epochs) of every epoch row of every trial's ``metrics.csv``, in clock order:
    each row counts its trial's ranks (``ranks`` by trial number, else ``default``)."""
    from hpwf.rundir._trialdir import durable_results, trial_folder, trial_folders

    rows = []
    for path in (folder / "metrics.csv" for folder in trial_folders(run_dir)):
        if path.exists():
            n = ranks.get(int(path.parent.name), default)
            with path.open() as f:
                rows += [(float(row["time"]), n) for row in csv.DictReader(f)]
    for number, record in durable_results(run_dir).items():  # trials without a folder keep their rows here
        if record.get("metrics") and not (trial_folder(run_dir, number) / "metrics.csv").exists():
            rows += [(float(row["time"]), ranks.get(number, default)) for row in record["metrics"]]
    return sorted(rows)


def _load(run_dir: Path, ranks: int) -> dict[str, Any]:
    import hpwf

    study = hpwf.load_study(run_dir)
    everything = study.get_trials(deepcopy=False)
    trials = [t for t in everything if t.state.name in ("COMPLETE", "PRUNED")]
    rows = epoch_rows(run_dir, {t.number: int(t.params.get("ranks_per_trial", ranks)) for t in everything}, ranks)
    return {
        "trials": trials, "best": study.best_value, "rows": rows, "epochs_total": sum(n for _, n in rows),
        "epoch_rows": len(rows), "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "n_trials": len(trials), "wall_s": summary(run_dir)["session_wall_s"],
    }


def _epochs_to(run: dict[str, Any], target: float) -> tuple[int, bool]:
    reached = [t.datetime_complete.timestamp() for t in run["trials"]
               if t.state.name == "COMPLETE" and t.value is not None and t.value >= target - 1e-12]
    if not reached:
        return run["epochs_total"], False
    when = min(reached)
    return sum(n for t, n in run["rows"] if t <= when), True


def _command(setup: Setup, method: str, seed: int, quick: bool, folder: Path) -> list[str]:
    wf = folder / f"search_{method}_{seed}.py"  # never a stdlib name (the file's folder goes first on sys.path)
    wf.write_text(FILE.format(workflow=setup.workflow.name, method=method, seed=seed, folder=str(setup.workflow.parent),
                              module=setup.workflow.stem, setup=setup.name, quick=quick))
    return [*setup.launch, PY, "-m", "hpwf", "run", str(wf), *setup.backend,
            "--run-dir", str(folder / f"{method}-{seed}"), "--quiet"]


def _run_seed(setup: Setup, seed: int, quick: bool, folder: Path) -> list[list[str]]:
    """Run the four searches of ``seed`` (side by side or one after another); their commands."""
    commands = {m: _command(setup, m, seed, quick, folder) for m in METHODS}
    waves = [list(METHODS)] if setup.side_by_side else [[m] for m in METHODS]
    for wave in waves:
        procs = {m: subprocess.Popen(commands[m], cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True) for m in wave}
        for m, proc in procs.items():
            _, err = proc.communicate(timeout=1800)
            if proc.returncode:
                raise RuntimeError(f"search {m} (seed {seed}) exited {proc.returncode}: {err[-2000:]}")
    return list(commands.values())


def run(quick: bool = False, seeds: list[int] | None = None, setup: Setup = MNIST1D) -> dict[str, Any]:
    """The figures; ``seeds`` overrides the setup's seeds."""
    import hpwf

    quiet_optuna()
    q = int(quick)
    seeds = seeds if seeds is not None else list(setup.seeds[q])
    wf = hpwf.load(setup.workflow)
    epochs = getattr(wf.objective, "__globals__", {}).get("EPOCHS")
    if wf.search is None or epochs != setup.epochs:
        raise RuntimeError(f"{setup.workflow}: a search with EPOCHS = {setup.epochs} expected, found {epochs}")
    plans = searches(wf.search, setup, quick)
    unit = "epochs" if setup.ranks == 1 else "rank-epochs"
    rows: list[dict[str, Any]] = []
    with scratch("search") as folder:
        for seed in seeds:
            commands = _run_seed(setup, seed, quick, folder)
            runs = {name: _load(folder / f"{name}-{seed}", setup.ranks) for name in METHODS}
            target = runs["random"]["best"]
            row: dict[str, Any] = {"seed": seed, "target_accuracy": rnd(target)}
            for name, r in runs.items():
                epochs, hit = _epochs_to(r, target)
                row[name] = {"best": rnd(r["best"]), "epochs_to_target": epochs, "reached": hit,
                             "epochs_total": r["epochs_total"], "epoch_rows": r["epoch_rows"], "pruned": r["pruned"],
                             "trials": r["n_trials"], "wall_s": r["wall_s"]}
            rows.append(row)
        shown = show(commands[0], folder)
    mean = {m: sum(r[m]["epochs_to_target"] for r in rows) / len(rows) for m in METHODS}
    total = {m: sum(r[m]["epochs_total"] for r in rows) / len(rows) for m in METHODS}
    ratio = {m: rnd(mean[m] / mean["random"], 3) for m in METHODS}
    per_seed = seed_ratios(rows)
    reached = {m: sum(r[m]["reached"] for r in rows) for m in METHODS}
    n_trials, rungs, pbt = setup.n_trials[q], setup.rungs, plans["pbt"]
    how = " ".join(["mpirun", *setup.launch[1:]][:len(setup.launch)] + ["hpwf run", *setup.backend])
    return {
        "benchmark": setup.name,
        "comparison": f"{setup.workflow.relative_to(ROOT)}, {len(seeds)} seeds, `{how}` ({setup.ranks} rank(s) "
                      f"per trial): {unit} trained (clock order) "
                      f"until a completed trial reaches the best accuracy of random search; random and TPE+ASHA "
                      f"(min_resource={rungs[0]}, reduction_factor={rungs[1]}) with {n_trials} trials, TPE+SH with "
                      f"resumption (asha-resume, same rungs) with {n_trials} trials, PBT (population "
                      f"{pbt.population}, interval {pbt.interval}, {pbt.n_trials} segments); "
                      + ("searches of a seed side by side" if setup.side_by_side else "searches one after another"),
        "command": f"python -m bench {setup.name}", "search_command": shown, "unit": unit,
        "seeds": seeds, "n_trials": n_trials,
        "mean_epochs_to_target": mean, "mean_epochs_total": total, "ratio_to_random": ratio,
        "seeds_reaching_target": reached,
        "ratio_per_seed_interval": {m: [rnd(x, 3) for x in interval(v)] for m, v in per_seed.items()},
        "aim": "tpe_sha_resume <= 1/3 of random and < tpe_asha; pbt <= 1/2 of random",
        "rows": rows,
        "line": f"{setup.name} ({unit} to random's best, / random): "
                + ", ".join(f"{m} {ratio[m]:.2f}x ({mean[m]:.0f}, {reached[m]}/{len(rows)} reached)" for m in METHODS)
                + "; whole runs " + ", ".join(f"{m} {total[m]:.0f}" for m in METHODS)
                + "; per-seed ratio, mean [95 %]: " + ", ".join(f"{m} {_iv(per_seed[m])}" for m in METHODS if m != "random"),
    }


def seed_ratios(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each search's epochs to target over random's, seed by seed (a search that never reached it
    counts its whole run: a lower bound of its ratio)."""
    return {m: [r[m]["epochs_to_target"] / r["random"]["epochs_to_target"] for r in rows] for m in METHODS}


def _iv(xs: list[float], form: str = ".2f", unit: str = "x") -> str:
    mean, low, high = interval(xs)
    return f"{mean:{form}}{unit} [{low:{form}}, {high:{form}}]"


def pooled(name: str, results: Path = ROOT / "bench" / "results.jsonl", since: str = "") -> dict[str, Any]:
    """The rows of every full run of benchmark ``name`` recorded in ``results`` at or after the
    time ``since`` (the latest row of each seed), and the per-seed ratios' means and intervals."""
    import json

    latest: dict[int, dict[str, Any]] = {}
    for line in results.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("benchmark") == name and not rec.get("quick") and rec.get("time", "") >= since:
            latest.update({row["seed"]: row for row in rec.get("rows", [])})
    rows = [latest[s] for s in sorted(latest)]
    per_seed = seed_ratios(rows) if rows else {}
    gaps = {m: [r[m]["best"] - r["target_accuracy"] for r in rows] for m in METHODS} if rows else {}
    return {"seeds": sorted(latest), "rows": rows,
            "reached": {m: sum(r[m]["reached"] for r in rows) for m in METHODS},
            "ratio_per_seed": {m: [rnd(x, 3) for x in interval(v)] for m, v in per_seed.items()},
            "best_minus_random": {m: [rnd(x, 4) for x in interval(v)] for m, v in gaps.items()},
            "line": f"{name}, {len(rows)} seeds, per-seed ratio to random, mean [95 %] (a lower bound where a "
                    f"search did not reach the target: it counts its whole run); best accuracy minus random's: "
                    + ", ".join(f"{m} {_iv(v)} ({sum(r[m]['reached'] for r in rows)}/{len(rows)} reached), "
                                f"{_iv(gaps[m], '+.3f', '')}"
                                for m, v in per_seed.items() if m != "random")}
