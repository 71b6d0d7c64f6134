"""(5) Store throughput: trials/s with 8 writer processes on a journal file, SQLite and in memory.

Two ways of using a store, measured side by side for each store kind:

- ``optuna x8``: 8 processes (spawned, started together at a barrier) each run K no-op trials
  (ask, three ``suggest_float``, tell) with ``RandomSampler`` on one shared study. An in-memory
  store cannot be shared between processes, so for "memory" each process has its own study:
  an upper bound, not a shared study.
- ``hpwf x8``: ``hpwf.run(<no-op workflow>, workers=8, storage=...)`` with the same 8 x K trials.
  The 8 agents are the processes that finish trials, but only the coordinator writes to the
  store. Wall = first ask to last tell (the span, read from the study), which like the Optuna
  side excludes process start; the coordinator's ``session_wall_s`` (agents connecting and
  loading the workflow included) is reported too.

trials/s = trials / wall (first start to last finish). Each run checks that every trial is
COMPLETE and trial numbers are unique.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

from bench._common import NOOP_WORKFLOW, open_storage, quiet_optuna, rnd, scratch, span_of, write

WRITERS = 8
KINDS = ("journal", "sqlite", "memory")

def _writer(kind: str, location: str, count: int, seed: int, barrier: Any, out: Any) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(kind, location)
    sampler = optuna.samplers.RandomSampler(seed=seed)
    if kind == "memory":
        study = optuna.create_study(study_name="store", storage=storage, sampler=sampler)
    else:
        study = optuna.load_study(study_name="store", storage=storage, sampler=sampler)
    barrier.wait()
    start = time.time()
    for _ in range(count):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 1) + trial.suggest_float("y", 0, 1) + trial.suggest_float("z", 0, 1))
    end = time.time()
    numbers = [t.number for t in study.get_trials(deepcopy=False)] if kind == "memory" else []
    out.put((start, end, len(numbers)))


def optuna_writers(kind: str, location: str, per_writer: int) -> dict[str, Any]:
    """8 spawned processes share one study (each its own, in memory); wall from first start to last end."""
    import optuna

    if kind != "memory":
        optuna.create_study(study_name="store", storage=open_storage(kind, location))
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(kind, location, per_writer, i, barrier, out)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a {kind} writer exited {p.exitcode}")
    wall = max(r[1] for r in results) - min(r[0] for r in results)
    total = WRITERS * per_writer
    if kind == "memory":
        assert all(r[2] == per_writer for r in results)
    else:
        trials = optuna.load_study(study_name="store", storage=open_storage(kind, location)).get_trials(deepcopy=False)
        numbers = [t.number for t in trials]
        assert len(trials) == total and len(set(numbers)) == total, (len(trials), len(set(numbers)))
        assert all(t.state.name == "COMPLETE" for t in trials)
    return {"trials": total, "wall_s": rnd(wall, 3), "trials_per_s": rnd(total / wall, 1)}


def hpwf_agents(kind: str, location: str, wf: Path, run_dir: Path, total: int) -> dict[str, Any]:
    import hpwf

    url = {"journal": f"journal:{location}", "sqlite": location, "memory": "memory"}[kind]
    result = hpwf.run(str(wf), workers=WRITERS, run_dir=run_dir, storage=url, progress=False)
    trials = result.study.get_trials(deepcopy=False)
    assert result.summary["complete"] == total and len({t.number for t in trials}) == len(trials) == total
    wall = result.summary["session_wall_s"]
    span = span_of(trials)
    return {"trials": total, "session_wall_s": wall, "span_s": rnd(span, 3),
            "trials_per_s_session": rnd(total / wall, 1), "trials_per_s": rnd(total / span, 1)}


def run(quick: bool = False) -> dict[str, Any]:
    quiet_optuna()
    per_writer = 15 if quick else 100
    total = WRITERS * per_writer
    rows: list[dict[str, Any]] = []
    with scratch("store") as folder:
        wf = write(folder / "noop_trials.py", NOOP_WORKFLOW.format(n=total))
        for kind in KINDS:
            loc = {"journal": str(folder / f"{kind}-{{}}.journal"), "sqlite": f"sqlite:///{folder}/{kind}-{{}}.db",
                   "memory": ""}[kind]
            raw = optuna_writers(kind, loc.format("optuna"), per_writer)
            ours = hpwf_agents(kind, loc.format("hpwf"), wf, folder / f"hpwf-{kind}", total)
            rows.append({"storage": kind, "optuna_x8": raw, "hpwf_x8": ours,
                         "ratio": rnd(ours["trials_per_s"] / raw["trials_per_s"], 3)})
    by = {r["storage"]: r for r in rows}
    return {
        "benchmark": "store",
        "comparison": f"{WRITERS} writer processes x {per_writer} no-op trials (3 suggest_float, RandomSampler): "
                      "trials/s of plain Optuna processes sharing one study (memory: one study each) vs "
                      f"hpwf.run(workers={WRITERS}) where only the coordinator writes (first ask to last tell); "
                      "ratio = hpwf / optuna",
        "command": "python -m bench store",
        "trials": total,
        "ratio": by["journal"]["ratio"],
        "rows": rows,
        "line": "store (trials/s, optuna x8 | hpwf x8 span [session]): "
                + "; ".join(f"{r['storage']}: {r['optuna_x8']['trials_per_s']:.0f} | {r['hpwf_x8']['trials_per_s']:.0f} "
                            f"[{r['hpwf_x8']['trials_per_s_session']:.0f}]" for r in rows),
    }
