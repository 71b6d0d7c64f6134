"""(1) Bookkeeping efficiency: N trials of ``sleep(0.2)`` on 16 slots; efficiency = ideal / wall.

ideal = N x 0.2 s / 16 slots (12.5 s for the full 1,000 trials). Three walls are reported for
each run, from the same run:

- ``session``: the coordinator's own ``session_wall_s`` (summary.json): from the coordinator's
  start (after the backend has started its processes) to the last trial told. It includes the
  agents connecting and loading the workflow file, not process start.
- ``span``: first trial asked to last trial told, read from the study (the steady state).
- ``command``: the whole ``hpwf run`` / ``mpirun ... hpwf run`` command, process start,
  Dask/MPI start-up and shutdown included.

Runs: the local backend (16 single-threaded Dask worker processes) and the MPI backend
(``mpirun -np 17``: rank 0 coordinates, 16 agent ranks), both with the default store (a
journal file in the run directory); plus the local backend with the in-memory store, to show
how much of the loss is the store's.

Baselines measured in the same run, interleaved: Optuna's own ``study.optimize(n_jobs=16)``
(threads, in-memory store: the plain tool a user would script on one node) and bare Dask
futures (a LocalCluster of 2 processes x 8 threads, the sleep submitted and refilled on
completion, no Optuna). For them ``session`` is the loop's own wall (after start-up), and
``command`` the whole script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench._common import MPIRUN, PY, median, rnd, scratch, show, summary, timed, trial_span, write

SLOTS = 16
SLEEP_S = 0.2

WORKFLOW = """
import time

import hpwf

search = hpwf.Search(direction="minimize", n_trials={n}, sampler="random", seed=0)


def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)  # one sampled parameter: one round trip, as in real use
    time.sleep({sleep})
    return x
"""


OPTUNA_THREADS = """
import json, time
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    time.sleep({sleep})
    return x
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
start = time.perf_counter()
study.optimize(objective, n_trials={n}, n_jobs={slots})
print(json.dumps({{"wall": time.perf_counter() - start, "complete": len(study.trials)}}))
"""

DASK_FUTURES = """
import json, time
from distributed import Client, LocalCluster, as_completed
def task(i):
    time.sleep({sleep})
    return i
if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker={slots} // 2, dashboard_address=None) as cluster, Client(cluster) as client:
        start = time.perf_counter()
        pending = as_completed([client.submit(task, i, pure=False) for i in range({slots})])
        submitted = done = {slots}
        for future in pending:
            future.result()
            if submitted < {n}:
                pending.add(client.submit(task, submitted, pure=False))
                submitted += 1
        print(json.dumps({{"wall": time.perf_counter() - start, "complete": submitted}}))
"""


def _baseline(label: str, script: Path, ideal: float, folder: Path) -> dict[str, Any]:
    import json

    command = [PY, str(script)]
    wall, proc = timed(command, timeout=900)
    loop = json.loads(proc.stdout.strip().splitlines()[-1])["wall"]
    return {"variant": label, "command": show(command, folder), "session_wall_s": rnd(loop, 3), "span_s": None,
            "command_wall_s": rnd(wall, 3), "efficiency_session": rnd(ideal / loop), "efficiency_span": None,
            "efficiency_command": rnd(ideal / wall), "utilisation": None}


def _measure(label: str, command: list[str], run_dir: Path, ideal: float, folder: Path,
             has_span: bool = True) -> dict[str, Any]:
    wall, _ = timed(command, timeout=900)
    s = summary(run_dir)
    if s["complete"] != int(round(ideal * SLOTS / SLEEP_S)):
        raise RuntimeError(f"{label}: {s['complete']} trials complete, expected all")
    span = trial_span(run_dir) if has_span else None
    return {
        "variant": label,
        "command": show(command, folder),
        "session_wall_s": s["session_wall_s"],
        "span_s": rnd(span, 3),
        "command_wall_s": rnd(wall, 3),
        "efficiency_session": rnd(ideal / s["session_wall_s"]),
        "efficiency_span": rnd(ideal / span) if span else None,
        "efficiency_command": rnd(ideal / wall),
        "utilisation": s["utilisation"],
    }


def run(quick: bool = False) -> dict[str, Any]:
    n, repeats = (200, 1) if quick else (1000, 2)
    ideal = n * SLEEP_S / SLOTS
    variants = [  # (label, command for a run directory, span readable from the study)
        ("local, journal file",
         lambda wf, d: [PY, "-m", "hpwf", "run", str(wf), "--workers", str(SLOTS), "--run-dir", str(d), "--quiet"], True),
        ("mpi (mpirun -np 17), journal file",
         lambda wf, d: [MPIRUN, "-np", str(SLOTS + 1), PY, "-m", "hpwf", "run", str(wf), "--backend", "mpi",
                        "--run-dir", str(d), "--quiet"], True),
        ("local, in-memory store",
         lambda wf, d: [PY, "-m", "hpwf", "run", str(wf), "--workers", str(SLOTS), "--run-dir", str(d),
                        "--storage", "memory", "--quiet"], False),
    ]
    baselines = [("optuna study.optimize(n_jobs=16), threads, in-memory", OPTUNA_THREADS),
                 ("bare dask futures (LocalCluster 2 x 8 threads)", DASK_FUTURES)]
    measured: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in variants}
    measured.update({label: [] for label, _ in baselines})
    with scratch("efficiency") as folder:
        wf = write(folder / "sleep_trials.py", WORKFLOW.format(n=n, sleep=SLEEP_S))
        scripts = {label: write(folder / f"baseline{k}.py", text.format(n=n, sleep=SLEEP_S, slots=SLOTS))
                   for k, (label, text) in enumerate(baselines)}
        for i in range(repeats):  # variants interleaved, so that each sees the machine's load alike
            for k, (label, command, has_span) in enumerate(variants):
                d = folder / f"run-{k}-{i}"
                measured[label].append(_measure(label, command(wf, d), d, ideal, folder, has_span))
            for label, script in scripts.items():
                measured[label].append(_baseline(label, script, ideal, folder))
    runs = []
    for label, reps in measured.items():
        row: dict[str, Any] = {"variant": label, "command": reps[0]["command"]}
        for key in ("efficiency_session", "efficiency_span", "efficiency_command", "utilisation",
                    "session_wall_s", "span_s", "command_wall_s"):
            values = [r[key] for r in reps if r[key] is not None]
            row[key] = rnd(median(values)) if values else None
            row[key + "_runs"] = [r[key] for r in reps]
        runs.append(row)
    by = {r["variant"]: r for r in runs}
    local, mpi = by["local, journal file"], by["mpi (mpirun -np 17), journal file"]
    threads = by[baselines[0][0]]
    return {
        "benchmark": "efficiency",
        "comparison": f"{n} trials of sleep({SLEEP_S}) + 1 suggest_float on {SLOTS} slots; "
                      f"efficiency = ideal {ideal:.2f} s / wall; session = coordinator's session_wall_s "
                      "(excludes process start), span = first ask to last tell, command = whole command; "
                      f"median of {repeats} interleaved runs per variant",
        "n_trials": n, "slots": SLOTS, "ideal_s": ideal, "repeats": repeats,
        "ratio": local["efficiency_session"],  # local backend, coordinator-measured wall
        "ratio_mpi": mpi["efficiency_session"],
        "vs_optuna_threads": rnd(local["efficiency_session"] / threads["efficiency_session"]),
        "aim": "session >= 0.97, command >= 0.90, and not below Optuna threads' efficiency in the same run",
        "runs": runs,
        "line": "efficiency (ideal/wall, session | span | command): "
                + "; ".join(f"{r['variant']}: {r['efficiency_session']:.1%} | "
                            f"{'-' if r['efficiency_span'] is None else format(r['efficiency_span'], '.1%')} | "
                            f"{r['efficiency_command']:.1%}" for r in runs),
    }
