"""``run``, ``resume``, ``ensemble`` and ``status``: the Python entry points behind the CLI.

A run has phases that share one set of agents: the search, then the ensemble (if declared).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.trial import TrialState

from hpwf._protocol import Setup
from hpwf.backends import Backend, make_backend
from hpwf.engine import Budget, Coordinator, Session
from hpwf.engine.pbt import lineage as pbt_lineage
from hpwf.engine.schedulers import PAUSED_ATTR
from hpwf.errors import ConfigError, RunError
from hpwf.progress import Progress, say
from hpwf.rundir import DEFAULT_JOURNAL, RunLock, RunRecord, load_study, open_storage, read_summary
from hpwf.search import Search
from hpwf.workflow import Workflow, load

ENSEMBLE_DIR = "ensemble"


@dataclass
class RunResult:
    """What a finished run gives back (the search phase's study and summary, if it had one)."""

    run_dir: Path
    study: optuna.Study
    summary: dict[str, Any]
    uq_metrics: dict[str, Any] | None = None


@dataclass
class _Phase:
    """One coordinator's work: a study in a (sub-)run directory, its budget and its agents' entry."""

    folder: Path
    record: RunRecord
    search: Search
    workflow: Workflow
    entry: str = "objective"
    fresh: bool = True
    members: list[dict[str, Any]] | None = None  # ensemble members to enqueue on a fresh study


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
) -> RunResult:
    """Run a workflow's search to its budget in a new run directory, then its ensemble if any.

    Args:
        workflow: a workflow file, or a `Workflow` made of Python objects.
        backend: "local" (a Dask LocalCluster), another backend name, or a `Backend` object.
        workers: agents for the local backend (default: the machine's cores).
        n_trials, timeout, storage, seed: override the workflow's `Search`.
        run_dir: where everything goes (default: ``runs/<name>-<time>``).

    Example:
        >>> result = hpwf.run("workflows/quickstart.py", workers=2)  # doctest: +SKIP
        >>> result.summary["complete"]  # doctest: +SKIP
    """
    wf = workflow if isinstance(workflow, Workflow) else load(workflow)
    chosen = backend if isinstance(backend, Backend) else make_backend(backend, workers=workers)
    folder = Path(run_dir) if run_dir else Path("runs") / f"{wf.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (folder / "run.json").exists():
        raise ConfigError(f"{folder}: already holds a run; continue it with `hpwf resume {folder}`")
    phases = []
    if wf.search is not None:
        search = _override(wf.search, {"n_trials": n_trials, "timeout": timeout, "storage": storage, "seed": seed})
        wf = dataclasses.replace(wf, search=search)
        phases.append(_Phase(folder, _record(wf.name, search, wf, chosen, workers), search, wf))
    if wf.ensemble is not None:
        phases.append(_ensemble_phase(wf, folder, chosen, workers, storage))
    _mkdir(folder)
    if wf.search is None:  # the run dir's own record points at the members' study
        root = dataclasses.replace(phases[0].record, options=dict(phases[0].record.options))
        root.storage = storage
        root.save(folder)
    return _run_phases(phases, chosen, progress)


def resume(
    run_dir: str | Path,
    *,
    workflow: Workflow | None = None,
    backend: str | Backend | None = None,
    workers: int | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
) -> RunResult:
    """Continue an interrupted (or finished) run to its budget; completed trials are kept.

    Trials a killed coordinator left RUNNING are failed and run again; finished ensemble
    members are never retrained.
    """
    folder = Path(run_dir)
    record = RunRecord.load(folder)
    if workflow is None:
        if record.workflow is None:
            raise ConfigError(f"{folder}: started from Python objects; resume it with hpwf.resume(..., workflow=...)")
        workflow = load(record.workflow)
    options = dict(record.options)
    options.update({k: v for k, v in {"n_trials": n_trials, "timeout": timeout, "workers": workers}.items() if v is not None})
    chosen = backend if isinstance(backend, Backend) else make_backend(backend or record.backend, workers=options.get("workers"))
    phases = []
    if workflow.search is not None:
        search = _override(workflow.search, {k: options.get(k) for k in ("n_trials", "timeout", "seed")} | {"storage": record.storage})
        record.options = options
        phases.append(_Phase(folder, record, search, dataclasses.replace(workflow, search=search), fresh=False))
    if workflow.ensemble is not None:
        sub = folder / ENSEMBLE_DIR
        if (sub / "run.json").exists():
            sub_record = RunRecord.load(sub)
            phases.append(_Phase(sub, sub_record, _member_search(workflow, sub_record.storage, sub_record.study_name),
                                 workflow, "ensemble", fresh=False))
        else:
            phases.append(_ensemble_phase(workflow, folder, chosen, options.get("workers"), record.storage))
    return _run_phases(phases, chosen, progress)


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
    """Train the workflow's ensemble from the top-k configurations of an existing search run."""
    wf = workflow if isinstance(workflow, Workflow) else load(workflow)
    if wf.ensemble is None:
        raise ConfigError(f"{wf.path or 'workflow'}: no `ensemble = hpwf.Ensemble(...)` defined")
    changes: dict[str, Any] = {k: v for k, v in {"top_k": top_k, "members": members}.items() if v is not None}
    if top_k is not None:
        changes["params"] = None
    wf = dataclasses.replace(wf, ensemble=dataclasses.replace(wf.ensemble, **changes))
    folder = Path(source_run)
    record = RunRecord.load(folder)
    chosen = backend if isinstance(backend, Backend) else make_backend(backend, workers=workers)
    sub = folder / ENSEMBLE_DIR
    if (sub / "run.json").exists():  # finished members are kept; the rest run now
        sub_record = RunRecord.load(sub)
        phase = _Phase(sub, sub_record, _member_search(wf, sub_record.storage, sub_record.study_name),
                       wf, "ensemble", fresh=False)
    else:
        phase = _ensemble_phase(wf, folder, chosen, workers, record.storage, source_name=record.study_name)
    return _run_phases([phase], chosen, progress)


def status(run_dir: str | Path) -> dict[str, Any]:
    """Counts by state, the best trial and its params, read from the study itself.

    Example:
        >>> hpwf.status("runs/quickstart")["complete"]  # doctest: +SKIP
        16
    """
    folder = Path(run_dir)
    study = load_study(folder)
    trials = study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in trials) for s in TrialState}
    paused = sum(t.state == TrialState.RUNNING and t.user_attrs.get(PAUSED_ATTR) not in (None, False) for t in trials)
    result: dict[str, Any] = {
        "study": study.study_name, "run_dir": str(folder),
        "complete": count[TrialState.COMPLETE], "pruned": count[TrialState.PRUNED],
        "fail": count[TrialState.FAIL], "running": count[TrialState.RUNNING] - paused, "paused": paused,
        "waiting": count[TrialState.WAITING], "n_trials": RunRecord.load(folder).options.get("n_trials"),
        "best_value": None, "best_trial": None, "best_params": None,
    }
    if len(study.directions) == 1 and count[TrialState.COMPLETE]:
        best = study.best_trial
        result.update(best_value=best.value, best_trial=best.number, best_params=best.params)
    elif count[TrialState.COMPLETE]:
        result["best_trials"] = [{"number": t.number, "values": t.values, "params": t.params} for t in study.best_trials]
    lineage = pbt_lineage(study)
    if lineage:
        result["pbt"] = lineage
    summary = read_summary(folder)
    result["elapsed_s"] = summary.get("elapsed_s")
    result["utilisation"] = summary.get("utilisation")
    result["stop_reason"] = summary.get("stop_reason")
    from hpwf.slurm import run_job_state

    result["slurm"] = run_job_state(folder)
    if (folder / ENSEMBLE_DIR / "run.json").exists():
        members = status(folder / ENSEMBLE_DIR)
        result["ensemble"] = {k: members[k] for k in ("complete", "fail", "running", "n_trials")}
    return result


# --- phases ------------------------------------------------------------------------------------
def _record(name: str, search: Search, wf: Workflow, backend: Backend, workers: int | None) -> RunRecord:
    return RunRecord(
        study_name=name, storage=search.storage, workflow=str(wf.path) if wf.path else None, backend=backend.name,
        options={"n_trials": search.n_trials, "timeout": search.timeout, "seed": search.seed,
                 "workers": workers, "max_failures": search.max_failures, "run_id": secrets.token_hex(6)},
    )


def _member_search(wf: Workflow, storage: str | None, name: str) -> Search:
    e = wf.ensemble
    return Search(direction=e.direction, n_trials=e.members, sampler="random", pruner="none",
                  ranks_per_trial=e.ranks_per_trial, seed=e.seed, name=name, storage=storage,
                  max_failures=e.members * e.max_retries, retries=e.max_retries)


def _ensemble_phase(wf: Workflow, folder: Path, backend: Backend, workers: int | None, storage: str | None,
                    source_name: str | None = None) -> _Phase:
    """The members' sub-run in RUN_DIR/ensemble, sharing the search's storage."""
    from hpwf.ensemble import plan

    shared = storage or f"journal:{(folder / DEFAULT_JOURNAL).resolve()}"
    name = f"{source_name or wf.name}-ensemble"
    search = _member_search(wf, shared, name)
    sub = folder / ENSEMBLE_DIR
    record = _record(name, search, wf, backend, workers)
    record.options["direction"] = wf.ensemble.direction
    phase = _Phase(sub, record, search, wf, "ensemble")
    if wf.ensemble.params is None:
        phase.members = []  # planned once the search phase has finished (top-k needs its results)
        phase.record.options["source_study"] = source_name or wf.name
    else:
        phase.members = plan(wf.ensemble, None)
    return phase


def _run_phases(phases: list[_Phase], backend: Backend, progress: bool) -> RunResult:
    for phase in phases:
        _check_fits(phase.search, backend)
    results: list[RunResult] = []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar speaks instead
    try:
        with Session(backend) as session:
            for phase in phases:
                results.append(_run_phase(phase, backend, session, progress))
                if str(results[-1].summary.get("stop_reason") or "").startswith("interrupted"):
                    break  # a signal (Ctrl-C, preemption, the walltime warning) starts no later phase
    finally:
        optuna.logging.set_verbosity(verbosity)
    uq = None
    if phases[-1].entry == "ensemble" and len(results) == len(phases):
        from hpwf.ensemble import aggregate

        uq = aggregate(phases[-1].folder.parent)
    first = results[0]
    return RunResult(phases[0].folder.parent if phases[0].entry == "ensemble" else first.run_dir,
                     first.study, first.summary, uq)


def _run_phase(phase: _Phase, backend: Backend, session: Session, progress: bool) -> RunResult:
    search, folder = phase.search, phase.folder
    _mkdir(folder)
    lock = RunLock(folder)
    lock.acquire()
    try:
        storage = open_storage(search.storage, folder)
        existing = _existing_trials(storage, phase.record.study_name)
        study = optuna.create_study(
            study_name=phase.record.study_name, storage=storage, directions=cast(Any, search.study_directions),
            sampler=search.make_sampler(None if search.seed is None else search.seed + existing),
            pruner=search.make_pruner(), load_if_exists=True,
        )
        if [d.name.lower() for d in study.directions] != search.study_directions:
            raise ConfigError(f"study {study.study_name!r} in that storage has directions "
                              f"{[d.name.lower() for d in study.directions]}, the workflow {search.study_directions}")
        if phase.fresh:
            phase.record.save(folder)
            if phase.members is not None and existing == 0:
                _enqueue_members(phase, study)
        wf = phase.workflow
        payload = None if wf.path else _pickle(wf.objective if phase.entry == "objective" else _member_objective(wf))
        setup = Setup(str(folder.resolve()), str(wf.path) if wf.path else None, payload, phase.entry, search.heartbeat,
                      n_objectives=len(search.study_directions))
        before = read_summary(folder) if not phase.fresh else {}
        budget = Budget(
            n_trials=search.n_trials, timeout=search.timeout,
            max_failures=search.max_failures if search.max_failures is not None else (search.n_trials or 100),
            elapsed_before=float(before.get("elapsed_s") or 0.0),
        )
        if phase.entry == "ensemble":
            say(f"[hpwf] ensemble: {search.n_trials} members in {folder}")
        coordinator = Coordinator(
            study, backend, setup, folder, budget, run_id=phase.record.options["run_id"], seed=search.seed,
            ranks_per_trial=search.ranks_per_trial, retries=search.retries, trial_timeout=search.trial_timeout,
            heartbeat=search.heartbeat, own_store=search.storage is None,
            progress=Progress(enabled=progress), scheduler=search.make_scheduler(study),
        )
        try:
            return RunResult(folder, study, coordinator.run(session))
        except OSError as exc:  # a full disk or quota: the store keeps what was told before
            where = exc.filename or search.storage or folder / DEFAULT_JOURNAL
            raise RunError(f"cannot write {where}: {exc.strerror or exc}; finished trials are kept, "
                           f"`hpwf resume {folder}` goes on once there is room") from None
    finally:
        lock.release()


def _enqueue_members(phase: _Phase, study: optuna.Study) -> None:
    from hpwf.ensemble import plan

    members = phase.members
    if not members:
        source = optuna.load_study(study_name=phase.record.options["source_study"],
                                   storage=open_storage(phase.search.storage, phase.folder))
        members = plan(phase.workflow.ensemble, source)
    for attrs in members:
        study.enqueue_trial({}, user_attrs=attrs)


def _member_objective(wf: Workflow) -> Any:
    from hpwf.ensemble import MemberObjective

    return MemberObjective(wf.ensemble.train)


def _override(search: Any, overrides: dict[str, Any]) -> Any:
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(search, **changes) if changes else search


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--run-dir {folder}: cannot create: {exc.strerror or exc}") from None


def _check_fits(search: Any, backend: Backend) -> None:
    """Refuse group sizes the backend can never hold; say when ranks will stay idle."""
    backend.check()
    biggest = max(search.rank_choices)
    if biggest > backend.slots:
        raise ConfigError(
            f"ranks_per_trial={biggest} needs more ranks than the {backend.slots} that --backend "
            f"{backend.name} runs trials on"
        )
    if len(search.rank_choices) == 1 and backend.slots % biggest:
        say(f"[hpwf] note: {backend.slots % biggest} of {backend.slots} ranks stay idle: "
            f"{backend.slots} is not a multiple of ranks_per_trial={biggest}")


def _existing_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def _pickle(objective: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(objective)
