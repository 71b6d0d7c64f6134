"""``run``, ``resume``, ``ensemble``, ``replay`` and ``status`` (`hpwf.report`): the Python entry
points behind the CLI.

A run has phases that share one set of agents: the search, then the ensemble (if declared).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpwf.backends import Backend, make_backend
from hpwf.engine.phases import Phase, SearchPhase
from hpwf.engine.setup import (
    check_fits, check_storage, ensemble_phase, override, remove_if_unused, resumed_ensemble_phase, run_and_score,
    run_record, scored)
from hpwf.ensembles import member_direction
from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.report import status
from hpwf.rundir import RunRecord, check_run_trusted, is_shared, load_study, make_run_dir, read_summary, run_umask
from hpwf.secrets import refuse_password
from hpwf.workflow import ENSEMBLE_DIR, Search, Workflow, load


@dataclass
class RunResult:
    """What a finished run gives back (the search phase's study and summary, if it had one)."""

    run_dir: Path
    study: optuna.Study
    summary: dict[str, Any]
    uq_metrics: dict[str, Any] | None = None


def run(
    workflow: str | Path | Workflow,
    *,
    backend: str | Backend = "local",
    workers: int | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    run_dir: str | Path | None = None,
    storage: str | None = None,
    seed: int | None = None,
    progress: bool = True,
    shared_group: bool = False,
    ensemble: bool = True,
    threads_per_trial: int | None = None,
) -> RunResult:
    """Run a workflow's search to its budget in a new run directory, then its ensemble if any.

    Args:
        workflow: a workflow file, or a `Workflow` made of Python objects.
        backend: "local" (a Dask LocalCluster), another backend name, or a `Backend` object.
        workers: agents for the local backend (default: the machine's cores).
        n_trials, timeout, storage, seed, threads_per_trial: override the workflow's `Search`.
        run_dir: where everything goes (default: ``runs/<name>-<time>``), created readable by
            you only; with ``shared_group`` its group may read it too (never write).
        ensemble: False runs the search only (the members run elsewhere, e.g. as a Slurm
            job array: `hpwf.slurm._array`).

    Raises:
        ConfigError: bad input, including a storage URL that holds a password (use
            ``~/.pgpass`` or ``PGPASSWORD``) or a run directory someone else can write.

    Example:
        >>> result = hpwf.run("workflows/quickstart.py", workers=2)  # doctest: +SKIP
        >>> result.summary["complete"]  # doctest: +SKIP
    """
    wf = workflow if isinstance(workflow, Workflow) else load(workflow)
    refuse_password(storage, "--storage")
    if storage is None and wf.search is not None:
        refuse_password(wf.search.storage, f"{wf.path or 'workflow'}: Search(storage=...)")
    chosen = backend if isinstance(backend, Backend) else make_backend(backend, workers=workers)
    folder = Path(run_dir) if run_dir else Path("runs") / f"{wf.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (folder / "run.json").exists():
        raise ConfigError(f"{folder}: already holds a run; continue it with `hpwf resume {folder}`")
    phases: list[Phase] = []
    if wf.search is not None:
        search = override(wf.search, {"n_trials": n_trials, "timeout": timeout, "storage": storage, "seed": seed,
                                       "threads_per_trial": threads_per_trial})
        wf = dataclasses.replace(wf, search=search)
        phases.append(SearchPhase(folder, run_record(wf.name, search, wf, chosen, workers), search, wf))
    if wf.ensemble is not None and wf.ensemble.retrains and ensemble:
        phases.append(ensemble_phase(wf, folder, chosen, workers, storage))
    if not phases:
        raise ConfigError(f"{wf.path or 'workflow'}: no search to run (the ensemble runs elsewhere)")
    for phase in phases:  # every check before anything is written: an error leaves no run dir
        check_fits(phase.search, chosen)
        check_storage(phase)
    with run_umask(shared_group):
        created = not folder.exists()
        make_run_dir(folder, shared_group)
        try:
            return _start(wf, phases, folder, chosen, storage, progress)
        except ConfigError:
            if created:
                remove_if_unused(folder)
            raise


def _start(wf: Workflow, phases: list[Phase], folder: Path, chosen: Backend, storage: str | None,
           progress: bool) -> RunResult:
    """Run a new run's phases in its freshly made folder."""
    if wf.search is None:  # the run dir's own record points at the members' study
        root = dataclasses.replace(phases[0].record, options=dict(phases[0].record.options))
        root.storage = storage
        root.save(folder)
    return RunResult(*run_and_score(phases, chosen, progress, scored(wf, phases), checked=True))


def resume(
    run_dir: str | Path,
    *,
    workflow: Workflow | None = None,
    backend: str | Backend | None = None,
    workers: int | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
    ensemble: bool = True,
    threads_per_trial: int | None = None,
) -> RunResult:
    """Continue an interrupted (or finished) run to its budget; completed trials are kept.

    Trials a killed coordinator left RUNNING are failed and run again; finished ensemble
    members are never retrained. ``ensemble=False`` resumes the search only.

    Raises:
        ConfigError: the run directory or its ``run.json`` is someone else's or writable by
            others (whoever can write them chooses the code that runs).
    """
    folder = Path(run_dir)
    check_run_trusted(folder)
    record = RunRecord.load(folder)
    if record.options.get("replay_of"):
        source = record.options["replay_of"]
        raise ConfigError(f"{folder}: a replay of {source['run']} (trial {source['trial']}); replay it again into "
                          f"a new run dir: hpwf replay {source['run']} --trial {source['trial']} --run-dir NEW_DIR")
    if workflow is None:
        if record.workflow is None:
            raise ConfigError(f"{folder}: started from Python objects; resume it with hpwf.resume(..., workflow=...)")
        workflow = load(record.workflow)
    options = dict(record.options)
    options.update({k: v for k, v in {"n_trials": n_trials, "timeout": timeout, "workers": workers,
                                      "threads_per_trial": threads_per_trial}.items() if v is not None})
    chosen = backend if isinstance(backend, Backend) else make_backend(backend or record.backend, workers=options.get("workers"))
    phases: list[Phase] = []
    if workflow.search is not None:
        search = override(workflow.search, {k: options.get(k) for k in ("n_trials", "timeout", "seed", "threads_per_trial")}
                          | {"storage": record.storage})
        record.options = options
        phases.append(SearchPhase(folder, record, search, dataclasses.replace(workflow, search=search), fresh=False))
    if workflow.ensemble is not None and workflow.ensemble.retrains and (ensemble or workflow.search is None):
        phases.append(resumed_ensemble_phase(workflow, folder, chosen, options.get("workers"), record.storage))
    with run_umask(is_shared(folder)):
        return RunResult(*run_and_score(phases, chosen, progress, scored(workflow, phases)))


def ensemble(
    workflow: str | Path | Workflow,
    source_run: str | Path,
    *,
    top_k: int | None = None,
    members: int | None = None,
    backend: str | Backend = "local",
    workers: int | None = None,
    progress: bool = True,
) -> RunResult:
    """Build (or rebuild) the workflow's ensemble from the search run's current results.

    The selection is made again from the search as it is now (after ``hpwf resume`` added
    trials, too). Members already trained with the same configuration, source trial and seed
    are kept; the others train now. An ensemble without ``train=`` only selects and scores.
    """
    from hpwf.ensembles import missing_members, plan

    wf = workflow if isinstance(workflow, Workflow) else load(workflow)
    if wf.ensemble is None:
        raise ConfigError(f"{wf.path or 'workflow'}: no `ensemble = hpwf.Ensemble(...)` defined")
    if members is not None and not wf.ensemble.retrains:
        raise ConfigError(f"--members: the ensemble in {wf.path or 'workflow'} trains no members (no train=)")
    changes: dict[str, Any] = {k: v for k, v in {"top_k": top_k, "members": members}.items() if v is not None}
    if top_k is not None:
        changes.update(params=None, select="topk", size=None)
    spec = dataclasses.replace(wf.ensemble, **changes)
    wf = dataclasses.replace(wf, ensemble=spec)
    folder = Path(source_run)
    check_run_trusted(folder)
    record = RunRecord.load(folder)
    source = load_study(folder)
    if not spec.retrains:
        return _aggregate_only(folder, source, spec)
    planned = plan(spec, None if spec.params is not None else source, folder)
    sub = folder / ENSEMBLE_DIR
    todo = missing_members(planned, load_study(sub)) if (sub / "run.json").exists() else planned.members
    member_direction(wf)  # a missing direction is an error before anything is written
    _write_plan(folder, planned, spec, record.study_name)
    if not todo:
        say(f"[hpwf] ensemble: all {len(planned.members)} members of the plan are trained already")
        return _aggregate_only(folder, source, spec)
    chosen = backend if isinstance(backend, Backend) else make_backend(backend, workers=workers)
    phase = ensemble_phase(wf, folder, chosen, workers, record.storage, source_name=record.study_name,
                            members=todo)
    phase.rebuild, phase.kept = True, len(planned.members) - len(todo)
    with run_umask(is_shared(folder)):
        return RunResult(*run_and_score([phase], chosen, progress, spec))


def _aggregate_only(folder: Path, study: optuna.Study, spec: Any) -> RunResult:
    """Select and score without training anything (an ensemble of trials, or nothing left to train)."""
    from hpwf.ensembles import aggregate

    done = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    summary = {"complete": done, "pruned": 0, "fail": 0, "session_wall_s": 0.0, "stop_reason": None,
               **{k: v for k, v in read_summary(folder).items() if k in ("best_value", "best_trial")}}
    return RunResult(folder, study, summary, aggregate(folder, spec))


def _write_plan(folder: Path, planned: Any, spec: Any, source_study: str | None) -> None:
    from hpwf.ensembles import write_selection

    write_selection(folder, {**planned.as_json(), "calibrate": spec.calibrate, "source_study": source_study})


def replay(source_run: str | Path, run_dir: str | Path, *, trial: int | None = None, backend: Any = "local",
           workers: int | None = None, progress: bool = True) -> RunResult:
    """Train one member from scratch along PBT's schedule of segment ``trial`` (default: the best final).

    Returns the `RunResult` of the new run (its study holds the replayed segments, each with its parent).

    Example:
        >>> result = hpwf.replay("runs/pbt", "runs/pbt-replay", workers=1)  # doctest: +SKIP
        >>> result.study.best_value  # doctest: +SKIP
    """
    from hpwf.engine.schedulers import replay_workflow

    return run(replay_workflow(source_run, trial), backend=backend, workers=workers, run_dir=run_dir,
               progress=progress, ensemble=False)
